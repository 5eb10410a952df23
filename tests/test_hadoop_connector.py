"""The grid:// Hadoop FileSystem (hadoop-connector/) against live grids, with real Java.

The Java suites run through the connector's own runner (org.gridfs.hadoop.TestRunner in the tests jar);
each test here asserts that every Java test it expects is named in the output and passed. Objects cross
between the Python client and the connector through a fixtures folder: Python writes objects with every
codec and Java reads them; Java writes objects and Python reads them back byte for byte. A grid of its own
then loses chunk files, gets corrupt chunks and a killed storage server, and Java must still read every
byte (rebuilding from parity). Last, the Hadoop shell (FsShell) on grid:// with a core-site.xml.

The grids run with 64 KiB chunks, so that files of a few hundred KiB span several metachunks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import crc32c
import pytest

from gridfs.cli.hadoop import FS_IMPL, connector_jar, fsshell, pyspark_jars, write_core_site
from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.failpoints import ENV, arm
from gridfs.fs import GridFileSystem as PyGridFS
from tests.conftest import corrupt_chunk, lose_chunk, rawx_of, volume, volume_holds, wait_for

REPO = Path(__file__).resolve().parents[1]
CHUNK = 64 << 10
TESTS_JAR = REPO / "hadoop-connector" / "build" / "gridfs-hadoop-tests.jar"

UNIT = {"chunkUrlsOfBothForms", "everyPatternOfMLostSharesDecodes", "isalParityMatchesIsaLAndHadoopsCoder",
        "jsonRoundTripsWhatTheServicesSend", "placementSpreadsOverHostsAndNeverRepeatsAVolume",
        "placementPassesOverALaggardWhileOthersSuffice",
        "policiesFromChunkMethods", "tomlReadsGridToml", "wideCodesUseSeveralTableGroups",
        "zfecParityMatchesThePythonZfec"}
CONTRACT = {"appendAndTruncateAreRefused", "compositeCrcChecksumIsHadoops", "concurrentReaders", "contentSummary",
            "createOverwriteOrNot", "createThenReadEverySizeAndPolicy", "deleteFilesAndDirectories",
            "fileStatusOfFilesDirectoriesAndRoot", "listFilesRecursiveOrNot", "listStatusAndItsIterator",
            "missingBucket", "mkdirsCreatesMarkers", "oddNamesRoundTrip", "openErrors",
            "racingCreatorsWithoutOverwriteOneWins",
            "renameDirectories", "renameFiles", "seekAndOddRanges", "smallFilesTakeTheSizeRulePolicy",
            "statisticsAreCounted", "timesPermissionsOwnersAreObjectProperties", "vectoredReads",
            "visibleOnCloseOnly"}


def start_grid(data: Path) -> LocalGrid:
    data.mkdir(parents=True)
    GridConfig(chunk_size=CHUNK).save(data / "grid.toml")  # grid up keeps the chunk size it finds
    grid = LocalGrid(data)
    grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None)
    return grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    g = start_grid(tmp_path_factory.mktemp("hadoop") / "grid")
    try:
        yield g
    finally:
        g.down()


@pytest.fixture
def damaged_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    g = start_grid(tmp_path / "grid")
    try:
        yield g
    finally:
        g.down()


def java_suite(expected: set[str], *suites: str, config: Path | None = None, bucket: str = "",
               fixtures: Path | None = None) -> str:
    """Run Java suites; every expected test must be reported, and pass."""
    classpath = os.pathsep.join([str(pyspark_jars() / "*"), str(connector_jar()), str(TESTS_JAR)])
    args = ["java", "-Xmx1g", "-cp", classpath, "org.gridfs.hadoop.TestRunner", *suites]
    if config is not None:
        args += ["--config", str(config), "--bucket", bucket, "--fixtures", str(fixtures or config.parent)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    passed = set(re.findall(r"^PASS \S+?\.(\w+) ", out, re.M))
    failed = re.findall(r"^FAIL .*$", out, re.M)
    assert not failed, f"Java tests failed:\n{out}\n{proc.stderr[-5000:]}"
    assert passed == expected, f"Java tests passed {sorted(passed)}, expected {sorted(expected)}:\n{out}"
    assert proc.returncode == 0, f"runner exited {proc.returncode}:\n{out}\n{proc.stderr[-5000:]}"
    assert re.search(rf"^{len(expected)} passed, 0 failed$", out, re.M), out
    return out


def test_connector_jars_are_built() -> None:
    """`make connector` (hadoop-connector/build.sh) built both jars, and the FileSystem registers grid://."""
    import zipfile

    with zipfile.ZipFile(connector_jar()) as jar:
        assert "org/gridfs/hadoop/GridFileSystem.class" in jar.namelist()
        assert jar.read("META-INF/services/org.apache.hadoop.fs.FileSystem").decode().strip() == FS_IMPL
    assert TESTS_JAR.is_file()


def test_java_unit_suite() -> None:
    java_suite(UNIT, "unit")


def test_java_contract_suite(grid: LocalGrid) -> None:
    with GridClient(grid.config_path) as client:
        client.create_bucket("contract", exist_ok=True)
    java_suite(CONTRACT, "contract", config=grid.config_path, bucket="contract")


# -- Python and Java on the same objects ------------------------------------------------------------

SIZES = [0, 1, 5000, 6 * CHUNK - 1, 6 * CHUNK, 6 * CHUNK + 1, 2 * 6 * CHUNK + 3 * CHUNK + 17]


def write_python_objects(client: GridClient, bucket: str, fixtures: Path, policies: list[str],
                         sizes: list[int]) -> list[dict]:
    """Objects written by the Python client, their bytes in ``fixtures``, listed in manifest.json."""
    client.create_bucket(bucket, exist_ok=True)
    entries = []
    for policy in policies:
        for size in sizes:
            key = f"from-python/{policy}/{size}"
            data = os.urandom(size)
            client.put(bucket, key, data, policy=policy)
            name = f"py-{policy}-{size}.bin"
            (fixtures / name).write_bytes(data)
            entries.append({"key": key, "file": name, "policy": policy})
    (fixtures / "manifest.json").write_text(json.dumps(entries))
    return entries


def test_python_objects_read_by_java_and_java_objects_read_by_python(grid: LocalGrid, tmp_path: Path) -> None:
    with GridClient(grid.config_path) as client:
        entries = write_python_objects(client, "interop", tmp_path,
                                       ["EC63", "EC63-ISAL", "EC42", "THREECOPIES", "SINGLE"], SIZES)
        # A multipart upload: metachunks of uneven sizes, one part's after another's.
        parts = [os.urandom(n) for n in (6 * CHUNK + 1, 17, 2 * 6 * CHUNK - 5)]
        upload = client.create_multipart("interop", "from-python/multipart", policy="EC63-ISAL")
        for number, data in enumerate(parts, 1):
            client.upload_part("interop", "from-python/multipart", upload.upload_id, number, data)
        client.complete_multipart("interop", "from-python/multipart", upload.upload_id, [1, 2, 3])
        (tmp_path / "multipart.bin").write_bytes(b"".join(parts))
        entries.append({"key": "from-python/multipart", "file": "multipart.bin", "policy": "EC63-ISAL"})
        (tmp_path / "manifest.json").write_text(json.dumps(entries))
        java_suite({"everyPythonObjectReadsByteForByte", "concurrentReadersOfEveryObject", "writeObjectsForPython"},
                   "interop-read", "interop-write", config=grid.config_path, bucket="interop", fixtures=tmp_path)
        written = json.loads((tmp_path / "java-manifest.json").read_text())
        assert len(written) == 36
        for e in written:
            data = (tmp_path / e["file"]).read_bytes()
            info = client.head("interop", e["key"], chunks=True)
            assert client.get("interop", e["key"]) == data, e["key"]
            assert info.size == len(data)
            assert info.crc32c == e["crc32c"] == f"{crc32c.crc32c(data):08x}", e["key"]
            assert info.hash == ""  # the connector leaves the xxh3-128 unknown
            if e["policy"]:
                assert info.policy == e["policy"]
            # Every chunk record carries the xxh3_64 the storage server computed and verifies on reads.
            for mc in info.metachunks:
                assert mc.missing == []
                for chunk in mc.chunks:
                    assert re.fullmatch(r"[0-9a-f]{16}", chunk.hash)
                    assert client.io.chunks.head(chunk.url)["x-grid-chunk-hash"] == chunk.hash


def test_directories_look_the_same_from_python(grid: LocalGrid, tmp_path: Path) -> None:
    """mkdirs markers and implied directories written by Java, seen through fsspec's grid://."""
    conf = write_core_site(tmp_path / "conf", {"fs.grid.impl": FS_IMPL, "fs.grid.config": str(grid.config_path)})
    with GridClient(grid.config_path) as client:
        client.create_bucket("trees", exist_ok=True)
    run = lambda *a: subprocess.run(fsshell(conf, *a), capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("-mkdir", "-p", "grid://trees/a/empty", "grid://trees/a/full").returncode == 0
    local = tmp_path / "f.txt"
    local.write_text("hello")
    assert run("-put", str(local), "grid://trees/a/full/f.txt").returncode == 0
    fs = PyGridFS(config=str(grid.config_path), skip_instance_cache=True)
    assert sorted(fs.ls("trees/a", detail=False)) == ["trees/a/empty", "trees/a/full"]
    assert fs.isdir("trees/a/empty") and fs.ls("trees/a/empty", detail=False) == []
    assert fs.cat("trees/a/full/f.txt") == b"hello"
    fs.pipe("trees/py/made/here.txt", b"x")
    listing = run("-ls", "-R", "grid://trees/py")
    assert "grid://trees/py/made/here.txt" in listing.stdout, listing


# -- missing, corrupt and unreachable chunks ----------------------------------------------------------

def on_volume(grid: LocalGrid, url: str) -> tuple[Path, str]:
    """The volume holding a chunk, and the chunk's id."""
    return volume(rawx_of(grid, url)), url.rsplit("/", 1)[-1]


def test_java_reads_around_lost_corrupt_and_unreachable_chunks(damaged_grid: LocalGrid, tmp_path: Path) -> None:
    grid = damaged_grid
    with GridClient(grid.config_path) as client:
        entries = write_python_objects(client, "damaged", tmp_path, ["EC63", "EC63-ISAL", "THREECOPIES"],
                                       [6 * CHUNK + 1, 3 * 6 * CHUNK + 999])
        for e in entries:
            info = client.head("damaged", e["key"], chunks=True)
            m0, m1 = info.metachunks[0], info.metachunks[1]
            if e["policy"] == "THREECOPIES":
                lose_chunk(*on_volume(grid, m0.chunks[0].url))
            else:
                # Two data chunks of the first metachunk gone, one data chunk of the second corrupt (the
                # storage server then answers 422 and never serves it).
                for c in sorted(m0.chunks, key=lambda c: c.sub)[1:3]:
                    lose_chunk(*on_volume(grid, c.url))
                corrupt_chunk(*on_volume(grid, sorted(m1.chunks, key=lambda c: c.sub)[0].url))
                e["expect_rebuild"] = True
        (tmp_path / "manifest.json").write_text(json.dumps(entries))
    # And one storage server killed outright: still listed by the conscience for a while, then down.
    victim = next(s for s in grid.services() if s.type == "rawx")
    os.kill(victim.pid, signal.SIGKILL)
    java_suite({"damagedObjectsAreRebuiltFromParityOrCopies", "writesGoAroundLostServers"}, "degraded",
               config=grid.config_path, bucket="damaged", fixtures=tmp_path)


# -- a commit whose answer is lost -------------------------------------------------------------------

def test_java_commit_answered_after_the_directory_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """meta2 SIGKILLs itself right after applying the connector's commit; restarted, it answers the re-sent
    commit (same op id: the content id) with the recorded result, and nothing is committed twice or lost."""
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    monkeypatch.setenv(ENV, str(failpoints))
    grid = start_grid(tmp_path / "grid")
    try:
        with GridClient(grid.config_path) as client:
            client.create_bucket("crash")
            client.put("crash", "crash/k", b"old")
            victim = next(s for s in grid.services() if s.name == "meta2-1")
            arm(failpoints, "meta2.after_commit", "kill")

            def restart_when_dead() -> None:
                wait_for("meta2 killed by its failpoint", lambda: not pid_alive(victim.pid))
                grid.restart("meta2-1")

            restarter = threading.Thread(target=restart_when_dead)
            restarter.start()
            try:
                java_suite({"commitAnsweredAfterTheDirectoryRestarts"}, "crash", config=grid.config_path,
                           bucket="crash", fixtures=tmp_path)
            finally:
                restarter.join()
            assert not (failpoints / "meta2.after_commit").exists(), "the failpoint never fired"
            assert client.get("crash", "crash/k") == (tmp_path / "crash.bin").read_bytes()
            versions = client.list_versions("crash", prefix="crash/k")["versions"]
            assert len([v for v in versions if v.is_latest]) == 1
            info = client.head("crash", "crash/k", chunks=True)
            assert all(volume_holds(*on_volume(grid, c.url)) for mc in info.metachunks for c in mc.chunks)
    finally:
        grid.down()


# -- the Hadoop shell ---------------------------------------------------------------------------------

def test_hadoop_shell_on_grid(grid: LocalGrid, tmp_path: Path) -> None:
    conf = write_core_site(tmp_path / "conf", {"fs.grid.impl": FS_IMPL, "fs.grid.config": str(grid.config_path)})
    with GridClient(grid.config_path) as client:
        client.create_bucket("shell", exist_ok=True)

    def shell(*args: str) -> str:
        proc = subprocess.run(fsshell(conf, *args), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"hadoop fs {' '.join(args)}: {proc.stderr[-3000:]}"
        return proc.stdout

    src = tmp_path / "in"
    src.mkdir()
    big = os.urandom(3 * 6 * CHUNK + 123)
    (src / "big.bin").write_bytes(big)
    (src / "small.txt").write_text("small\n")
    shell("-mkdir", "-p", "grid://shell/data/in")
    shell("-put", str(src / "big.bin"), str(src / "small.txt"), "grid://shell/data/in/")
    listing = shell("-ls", "-R", "grid://shell/data")
    assert re.search(rf"^-.*\s{len(big)} .* grid://shell/data/in/big\.bin$", listing, re.M), listing
    assert re.search(r"^d.* grid://shell/data/in$", listing, re.M), listing
    shell("-get", "grid://shell/data/in/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big
    shell("-mv", "grid://shell/data/in", "grid://shell/data/moved")
    checksum = shell("-checksum", "grid://shell/data/moved/big.bin")
    assert f"COMPOSITE-CRC32C\t{crc32c.crc32c(big):08x}" in checksum, checksum
    assert shell("-cat", "grid://shell/data/moved/small.txt") == "small\n"
    shell("-rm", "-r", "grid://shell/data/moved")
    assert "moved" not in shell("-ls", "grid://shell/data")
    with GridClient(grid.config_path) as client:
        assert [o.key for o in client.iter_list("shell", prefix="data/moved")] == []
