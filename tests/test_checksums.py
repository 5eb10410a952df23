"""The object CRC32C: computed while writing on every path, combined for multipart uploads,
kept by copies, shown by ``grid stat``, fsspec and the S3 gateway, and equal to the COMPOSITE_CRC
that Hadoop's own classes compute for the same bytes. Against a live local grid and real clients."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import crc32c
import numpy as np
import pytest
from botocore.config import Config

from gridfs.cli.local import LocalGrid, pid_alive
from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.crc import check_crc32c, combine_hex, crc32c_combine, crc32c_hex
from gridfs.common.errors import BadRequest
from gridfs.common.names import container_id
from gridfs.directory.meta2db import Meta2
from gridfs.directory.model import ObjectInfo, PartInfo
from gridfs.fs import GridFileSystem
from gridfs.gateways.s3.users import UserStore
from tests.conftest import run_grid_cli

KiB, MiB = 1 << 10, 1 << 20
SMALL_CHUNK = 64 * KiB  # EC63 metachunks of 384 KiB, copies of 64 KiB: many metachunks in little data
BIN = Path(sys.executable).parent
CONNECTOR = Path(__file__).resolve().parent.parent / "hadoop-connector"


def crc_of(data: bytes) -> str:
    return crc32c_hex(crc32c.crc32c(data))


def blob(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.fixture(scope="module")
def client(local_grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(local_grid.config_path) as c:
        c.create_bucket("crc", exist_ok=True)
        yield c


@pytest.fixture(scope="module")
def small_chunks(local_grid: LocalGrid, client: GridClient) -> Iterator[GridClient]:
    """A client writing 64 KiB chunks, so that an object of a few hundred KiB spans many metachunks."""
    cfg = GridConfig.load(local_grid.config_path)
    cfg.chunk_size = SMALL_CHUNK
    with GridClient(cfg) as c:
        yield c


# -- combining CRCs: the arithmetic alone ------------------------------------------------------


def test_combine_equals_the_crc_of_the_concatenation() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a, b = rng.randbytes(rng.randrange(0, 5000)), rng.randbytes(rng.randrange(0, 5000))
        assert crc32c_combine(crc32c.crc32c(a), crc32c.crc32c(b), len(b)) == crc32c.crc32c(a + b)
    assert crc32c_combine(0x12345678, 0, 0) == 0x12345678  # B empty: A's CRC
    assert crc32c_combine(0, 0xCAFEBABE, 17) == 0xCAFEBABE  # A empty: B's CRC


def test_combine_holds_for_lengths_past_the_32_powers_zlib_tabulates() -> None:
    """Lengths of 2^29 bytes and more need x^(2^32) and up (zlib wraps at 2^31 bits); checked against
    the CRC of a real gigabyte of zeros after a prefix, streamed without holding it."""
    prefix = b"head of the object"
    zeros = bytes(MiB)
    n = 1024 + 3  # MiB blocks, plus a tail: 2^30 + bytes
    whole = crc32c.crc32c(prefix)
    alone = 0
    for _ in range(n):
        whole = crc32c.crc32c(zeros, whole)
        alone = crc32c.crc32c(zeros, alone)
    tail = b"\x00" * 12345
    whole, alone = crc32c.crc32c(tail, whole), crc32c.crc32c(tail, alone)
    assert crc32c_combine(crc32c.crc32c(prefix), alone, n * MiB + len(tail)) == whole


def test_combine_hex_is_unknown_when_any_piece_is() -> None:
    pieces = [b"one", b"", b"three" * 1000]
    assert combine_hex((crc_of(p), len(p)) for p in pieces) == crc_of(b"".join(pieces))
    assert combine_hex([(crc_of(b"one"), 3), ("", 5), (crc_of(b"x"), 1)]) == ""
    assert combine_hex([]) == crc_of(b"") == "00000000"
    check_crc32c("")
    check_crc32c("0a1b2c3d")
    for bad in ("0A1B2C3D", "123", "0a1b2c3d0", "xyzxyzxy", None):
        with pytest.raises(BadRequest):
            check_crc32c(bad)  # type: ignore[arg-type]


# -- the client library: put, copy, rename, multipart --------------------------------------------


@pytest.mark.parametrize("policy", ["EC63", "THREECOPIES"])
def test_put_records_the_crc_of_the_bytes(small_chunks: GridClient, policy: str) -> None:
    meta = small_chunks.policies()[policy].metachunk_size(SMALL_CHUNK)
    for n, size in enumerate([0, 1, 4097, meta - 1, meta, meta + 1, 4 * meta + 13]):
        data = blob(size, n)
        key = f"put/{policy}/{size}"
        info = small_chunks.put("crc", key, data, policy=policy)
        assert info.crc32c == crc_of(data), size
        head = small_chunks.head("crc", key, chunks=True)
        assert head.crc32c == crc_of(data) and len(head.metachunks) == -(-size // meta)
    assert small_chunks.head("crc", f"put/{policy}/0").crc32c == "00000000"
    listed = {o.key: o.crc32c for o in small_chunks.iter_list("crc", prefix=f"put/{policy}/")}
    assert listed[f"put/{policy}/{4 * meta + 13}"] == crc_of(blob(4 * meta + 13, 6))


def test_every_kind_of_source_gives_the_same_crc(client: GridClient, tmp_path: Path) -> None:
    data = blob(3 * MiB + 5, 11)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    pieces = (data[i:i + 100_000] for i in range(0, len(data), 100_000))  # unknown size: a stream
    with open(path, "rb") as f:
        infos = [client.put("crc", "src/bytes", data, policy="EC63"), client.put_file("crc", "src/path", path),
                 client.put("crc", "src/file", f), client.put("crc", "src/stream", pieces)]
    assert {i.crc32c for i in infos} == {crc_of(data)}


def test_copy_and_rename_keep_the_crc(client: GridClient) -> None:
    data = blob(200_000, 3)
    client.put("crc", "keep/src", data)
    assert client.copy("crc", "keep/src", "crc", "keep/copy").crc32c == crc_of(data)
    assert client.rename("crc", "keep/copy", "keep/moved").crc32c == crc_of(data)
    assert client.head("crc", "keep/moved").crc32c == crc_of(data)


def test_multipart_combines_the_parts_crcs_in_order(small_chunks: GridClient) -> None:
    sizes = {1: 1_000_003, 2: 65_536, 3: 3, 4: 400_000}
    parts = {n: blob(size, 100 + n) for n, size in sizes.items()}
    up = small_chunks.create_multipart("crc", "mp/obj", policy="EC63")
    for n in (4, 2, 1, 3):  # in any order
        part = small_chunks.upload_part("crc", "mp/obj", up.upload_id, n, parts[n])
        assert part.crc32c == crc_of(parts[n])
    parts[2] = blob(70_001, 999)  # a part sent again replaces the first one, and its CRC with it
    small_chunks.upload_part("crc", "mp/obj", up.upload_id, 2, parts[2])
    listed = small_chunks.list_parts("crc", up.upload_id)
    assert [(p.part_number, p.crc32c) for p in listed] == [(n, crc_of(parts[n])) for n in (1, 2, 3, 4)]
    info = small_chunks.complete_multipart("crc", "mp/obj", up.upload_id, [1, 2, 4])  # part 3 left out
    whole = parts[1] + parts[2] + parts[4]
    assert info.crc32c == crc_of(whole) and info.size == len(whole)
    assert small_chunks.get("crc", "mp/obj") == whole
    assert small_chunks.head("crc", "mp/obj").crc32c == crc_of(whole)


def test_grid_stat_prints_the_crc(local_grid: LocalGrid, client: GridClient) -> None:
    client.put("crc", "stat/x", b"checksummed")
    out = json.loads(run_grid_cli(local_grid.config_path, "stat", "crc/stat/x").stdout)
    assert out["crc32c"] == crc_of(b"checksummed") == "{:08x}".format(crc32c.crc32c(b"checksummed"))


# -- fsspec ------------------------------------------------------------------------------------


def test_fsspec_writes_carry_the_crc_and_checksum_answers_it(local_grid: LocalGrid, client: GridClient) -> None:
    fs = GridFileSystem(config=str(local_grid.config_path), skip_instance_cache=True)
    small = blob(1000, 21)
    fs.pipe("crc/fs/small", small)
    assert fs.info("crc/fs/small")["crc32c"] == crc_of(small)
    assert fs.checksum("crc/fs/small") == crc32c.crc32c(small)
    big = blob(12 * MiB + 7, 22)
    with fs.open("crc/fs/big", "wb", block_size=5 * MiB) as f:  # streamed in three parts
        for i in range(0, len(big), 3 * MiB):
            f.write(big[i:i + 3 * MiB])
    assert not client.head("crc", "fs/big").hash  # a multipart object: no whole-object xxh3
    assert fs.info("crc/fs/big")["crc32c"] == crc_of(big)
    assert fs.checksum("crc/fs/big") == crc32c.crc32c(big)
    assert fs.ls("crc/fs", detail=True)[0]["crc32c"] == crc_of(big)


# -- the S3 gateway -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_client(local_grid: LocalGrid) -> Callable[..., object]:
    """boto3 clients of one gateway user, with the given botocore settings."""
    user = UserStore(local_grid.config_path).create("crc-user")

    def make(**config: object) -> object:
        return boto3.client("s3", endpoint_url=local_grid.config().extra["s3"]["url"], region_name="us-east-1",
                            aws_access_key_id=user.access_key, aws_secret_access_key=user.secret_key,
                            config=Config(**config))
    return make


@pytest.fixture(scope="module")
def s3(s3_client: Callable[..., object]) -> object:
    """A client that sends no checksum unless told to, and checks none unless told to."""
    client = s3_client(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    client.create_bucket(Bucket="s3crc")
    return client


def test_s3_put_records_the_crc_and_get_answers_it_when_none_was_sent(s3: object, s3_client: Callable[..., object],
                                                                      client: GridClient) -> None:
    data = blob(2 * MiB + 3, 31)
    s3.put_object(Bucket="s3crc", Key="plain", Body=data)  # no checksum sent
    assert client.head("s3crc", "plain").crc32c == crc_of(data)
    expected = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    got = s3.get_object(Bucket="s3crc", Key="plain", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32C"] == expected and got["Body"].read() == data
    assert s3.head_object(Bucket="s3crc", Key="plain", ChecksumMode="ENABLED")["ChecksumCRC32C"] == expected
    assert "ChecksumCRC32C" not in s3.get_object(Bucket="s3crc", Key="plain")  # only when asked
    ranged = s3.get_object(Bucket="s3crc", Key="plain", ChecksumMode="ENABLED", Range="bytes=0-99")
    assert "ChecksumCRC32C" not in ranged  # a whole-object checksum does not describe a range

    # A checksum the client sent is the one S3 answers; the grid still records its own CRC32C.
    s3.put_object(Bucket="s3crc", Key="sent", Body=data, ChecksumAlgorithm="CRC32")
    sent = s3.head_object(Bucket="s3crc", Key="sent", ChecksumMode="ENABLED")
    assert sent["ChecksumCRC32"] and "ChecksumCRC32C" not in sent
    assert client.head("s3crc", "sent").crc32c == crc_of(data)

    # boto3 checking the body against the answered CRC32C itself (it raises on a mismatch).
    checking = s3_client(response_checksum_validation="when_supported")
    assert checking.get_object(Bucket="s3crc", Key="plain", ChecksumMode="ENABLED")["Body"].read() == data


def test_s3_multipart_records_the_combined_crc_but_answers_no_whole_object_crc(s3: object,
                                                                              client: GridClient) -> None:
    parts = [blob(5 * MiB, 41), blob(5 * MiB + 1, 42), blob(123, 43)]
    up = s3.create_multipart_upload(Bucket="s3crc", Key="multi")
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="s3crc", Key="multi", UploadId=up["UploadId"],
                                                     PartNumber=n, Body=p)["ETag"]}
            for n, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket="s3crc", Key="multi", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": done})
    assert client.head("s3crc", "multi").crc32c == crc_of(b"".join(parts))
    head = s3.head_object(Bucket="s3crc", Key="multi", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"') and "ChecksumCRC32C" not in head  # S3's would be a checksum of checksums


# -- grid-distcp ---------------------------------------------------------------------------------


def test_distcp_copies_carry_the_crc(local_grid: LocalGrid, client: GridClient, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"empty": b"", "small": blob(777, 51), "sub/medium": blob(300_001, 52), "split": blob(3 * MiB + 99, 53)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    cfg = local_grid.config()
    cfg.chunk_size = 256 * KiB  # parts are whole metachunks: 1 MiB parts of THREECOPIES
    cfg.save(tmp_path / "grid.toml")
    env = {**os.environ, "GRID_CONFIG": str(tmp_path / "grid.toml"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run([str(BIN / "mpirun"), "-n", "2", str(BIN / "grid-distcp"), str(src), "grid://crc/distcp",
                          "-policy", "THREECOPIES", "-split-size", "1", "-part-size", "1", "-log",
                          str(tmp_path / "log"), "-quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    log = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert len([r for r in log if r["status"] == "PART" and r["path"].endswith("split")]) == 4
    for rel, data in files.items():
        assert client.head("crc", f"distcp/{rel}").crc32c == crc_of(data), rel


# -- Hadoop: COMPOSITE_CRC computed by Hadoop's own classes ---------------------------------------


@pytest.fixture(scope="module")
def composite_crc_tool(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The java command running CompositeCrcTool, compiled against the Hadoop jars of the pyspark wheel."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    api = sorted(jars.glob("hadoop-client-api-*.jar"))
    assert api, f"no hadoop-client-api jar in {jars}"
    out = tmp_path_factory.mktemp("crctool")
    subprocess.run(["javac", "-d", str(out), "-cp", str(api[-1]),
                    str(CONNECTOR / "src/test/java/org/gridfs/hadoop/CompositeCrcTool.java")],
                   check=True, capture_output=True, timeout=120)
    return ["java", "-cp", f"{out}:{jars}/*", "org.gridfs.hadoop.CompositeCrcTool"]


def hadoop_crcs(tool: list[str], block_size: int, paths: list[Path]) -> dict[str, str]:
    run = subprocess.run([*tool, str(block_size), "512", *map(str, paths)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    out = {}
    for line in run.stdout.splitlines():
        path, crc, checksum = line.split(" ", 2)
        assert checksum.startswith("COMPOSITE-CRC32C:0x" if crc != "crc32c=none" else "MD5-of-0MD5-of-0CRC32")
        out[Path(path).name] = crc.removeprefix("crc32c=")
    return out


def test_the_grid_crc_equals_hadoops_composite_crc(composite_crc_tool: list[str], small_chunks: GridClient,
                                                  tmp_path: Path) -> None:
    sizes = [1, 511, 512, 513, 3 * 512 + 5, MiB - 1, MiB, MiB + 1, 2 * MiB + 513, 3 * MiB + 777]
    files = []
    for i, size in enumerate(sizes):
        data = blob(size, 60 + i)
        files.append(tmp_path / f"f{size}")
        files[-1].write_bytes(data)
        small_chunks.put("crc", f"hadoop/f{size}", data, policy="EC63" if i % 2 else "THREECOPIES")
    # One object assembled from parts whose sizes are multiples of neither 512 nor the block size.
    parts = [blob(700_001, 70), blob(1_234_567, 71)]
    up = small_chunks.create_multipart("crc", "hadoop/multipart", policy="EC63")
    for n, p in enumerate(parts, 1):
        small_chunks.upload_part("crc", "hadoop/multipart", up.upload_id, n, p)
    small_chunks.complete_multipart("crc", "hadoop/multipart", up.upload_id, [1, 2])
    files.append(tmp_path / "multipart")
    files[-1].write_bytes(b"".join(parts))

    grid = {f.name: small_chunks.head("crc", f"hadoop/{f.name}").crc32c for f in files}
    for block_size in (MiB, 64 * KiB):  # block-size independent: the same CRC for 1 MiB and 64 KiB blocks
        assert hadoop_crcs(composite_crc_tool, block_size, files) == grid

    # An empty file has no block: HDFS answers its MD5-of-CRCs "magic" then, in every mode, while
    # the grid records the CRC32C of no bytes. A Hadoop-facing getFileChecksum must special-case it.
    (tmp_path / "empty").write_bytes(b"")
    assert hadoop_crcs(composite_crc_tool, MiB, [tmp_path / "empty"]) == {"empty": "none"}


# -- databases from before the column ---------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE props (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE objects (
    key TEXT NOT NULL, version INTEGER NOT NULL, content_id TEXT NOT NULL, size INTEGER NOT NULL,
    mtime REAL NOT NULL, policy TEXT NOT NULL, chunk_method TEXT NOT NULL, hash TEXT NOT NULL,
    mime_type TEXT NOT NULL, properties TEXT NOT NULL, delete_marker INTEGER NOT NULL,
    null_version INTEGER NOT NULL, metachunks TEXT NOT NULL,
    PRIMARY KEY (key, version)) WITHOUT ROWID;
CREATE TABLE latest (key TEXT PRIMARY KEY, version INTEGER NOT NULL, live INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX latest_live ON latest (live, key);
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY, key TEXT NOT NULL, policy TEXT NOT NULL, mime_type TEXT NOT NULL,
    properties TEXT NOT NULL, initiated REAL NOT NULL);
CREATE TABLE parts (
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    mtime REAL NOT NULL, chunk_method TEXT NOT NULL, metachunks TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number));
"""


def make_old_database(path: Path) -> None:
    """A container database as meta2 wrote them before objects and parts carried a CRC32C."""
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany("INSERT INTO props VALUES (?, ?)", [("account", '"default"'), ("bucket", '"old"')])
    db.execute("INSERT INTO objects VALUES ('k', 1, 'C1', 3, 1.0, 'SINGLE', 'copies/n=1', 'h', "
               "'application/octet-stream', '{}', 0, 1, '[]')")
    db.execute("INSERT INTO latest VALUES ('k', 1, 1)")
    db.execute("INSERT INTO uploads VALUES ('u1', 'mp', 'SINGLE', 'application/octet-stream', '{}', 1.0)")
    db.execute("INSERT INTO parts VALUES ('u1', 1, 10, 'e1', 1.0, 'copies/n=1', '[]')")
    db.commit()
    db.close()


def test_an_old_database_opens_reads_and_completes_with_an_unknown_crc(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_old_database(path)
    m = Meta2(path)
    assert m.get("k").crc32c == "" and m.get("k").size == 3
    assert [o.crc32c for o in m.list("", "", "", "", 10).objects] == [""]
    assert m.list_versions("", "", "", None, 10)["versions"][0]["crc32c"] == ""
    assert [p.crc32c for p in m.list_parts("u1")] == [""]
    m.commit_part("u1", PartInfo("u1", 2, 5, "e2", crc32c=crc_of(b"12345")), "copies/n=1")
    done, _ = m.complete_upload("u1", [(1, ""), (2, "")], "")
    assert done.crc32c == "" and m.get("mp").crc32c == ""  # part 1 has none: the object has none
    m.commit(ObjectInfo(account="", bucket="", key="n", size=2, crc32c=crc_of(b"ab")))
    assert m.get("n").crc32c == crc_of(b"ab")
    m.close()
    again = Meta2(path)  # opened once more: the columns are there, once
    for table in ("objects", "parts"):
        cols = [c[1] for c in again.db.execute(f"PRAGMA table_info({table})")]
        assert cols.count("crc32c") == 1
    assert again.get("n").crc32c == crc_of(b"ab") and again.get("k").crc32c == ""
    with pytest.raises(BadRequest):
        again.commit(ObjectInfo(account="", bucket="", key="bad", crc32c="NOT-HEX!"))
    again.close()


def test_a_grid_whose_meta2_database_predates_the_column(local_grid: LocalGrid, client: GridClient) -> None:
    """The meta2 service reopens a container database whose column was dropped (the old schema): old objects
    and parts read with no CRC, new writes get theirs. (Last in the module: it restarts meta2.)"""
    client.create_bucket("legacy")
    old = blob(500_000, 80)
    client.put("legacy", "before", old)
    up = client.create_multipart("legacy", "mp")
    client.upload_part("legacy", "mp", up.upload_id, 1, old[:200_000])
    meta2 = next(s for s in local_grid.services() if s.name == "meta2-1")
    os.kill(meta2.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(meta2.pid):
        assert time.monotonic() < deadline, "meta2 did not stop"
        time.sleep(0.05)
    (path,) = (local_grid.data / "meta2-1").rglob(f"{container_id(client.account, 'legacy')}.db")
    db = sqlite3.connect(path)
    for table in ("objects", "parts"):  # rebuilt without the column, rows kept
        db.execute(f"ALTER TABLE {table} DROP COLUMN crc32c")
    db.commit()
    db.close()
    local_grid.restart("meta2-1")
    assert client.head("legacy", "before").crc32c == "" and client.get("legacy", "before") == old
    client.upload_part("legacy", "mp", up.upload_id, 2, old[200_000:])
    assert client.complete_multipart("legacy", "mp", up.upload_id, [1, 2]).crc32c == ""
    assert client.get("legacy", "mp") == old
    assert client.put("legacy", "after", old).crc32c == crc_of(old)
    assert client.head("legacy", "after").crc32c == crc_of(old)
