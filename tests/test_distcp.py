"""grid-distcp end to end: real `mpirun` (MPICH wheel), real rank processes, a live local grid."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from grid_distcp.lakegen import generate, write_table
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from tests.conftest import file_digest, object_digest

BIN = Path(sys.executable).parent
MiB = 1 << 20


def distcp(grid: LocalGrid, tmp: Path, *args: str, ranks: int = 4, name: str = "run",
           wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run grid-distcp under mpirun (or alone with ranks=0), with a JSON log and report."""
    env = {**os.environ, "GRID_CONFIG": str(grid.config_path), "XDG_CACHE_HOME": str(tmp / "cache"),
           "GRID_DISTCP_REPORT": str(tmp / f"{name}.report.json")}
    cmd = [str(BIN / "grid-distcp"), *args, "-log", str(tmp / f"{name}.log"), "-quiet"]
    if ranks:
        cmd = [str(BIN / "mpirun"), "-n", str(ranks), *cmd]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def log_lines(tmp: Path, name: str) -> list[dict]:
    path = tmp / f"{name}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def report(tmp: Path, name: str) -> dict:
    return json.loads((tmp / f"{name}.report.json").read_text())


def tree(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def assert_backup_matches(client: GridClient, bucket: str, prefix: str, root: Path) -> None:
    listed = {o.key[len(prefix) + 1:]: o for o in client.iter_list(bucket, prefix=prefix + "/")}
    files = tree(root)
    assert sorted(listed) == sorted(files)
    for rel, path in files.items():
        assert listed[rel].size == path.stat().st_size, rel
        stored = object_digest(client, bucket, f"{prefix}/{rel}", xxhash.xxh3_128)
        assert stored == file_digest(path, xxhash.xxh3_128), rel


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2 GiB: 150 small files, 8 of 8 MiB, one of 1 GiB and two of 480 MiB."""
    root = tmp_path_factory.mktemp("lake")
    generate(str(root), small=150, small_size=64 << 10, medium=8, medium_size=8 * MiB, big=2, big_size=480 * MiB)
    write_table(str(root / "events/day=2026-11-30/huge.parquet"), 1024 * MiB, __import__("numpy").random.default_rng(1))
    return root


@pytest.fixture
def client(local_grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(local_grid.config_path) as c:
        yield c


def test_backup_then_update_copies_nothing_then_applies_exactly_the_changes(
    local_grid: LocalGrid, lake: Path, client: GridClient, tmp_path: Path
) -> None:
    total = sum(p.stat().st_size for p in tree(lake).values())
    assert total >= 2 * 1024**3
    run = distcp(local_grid, tmp_path, str(lake), "grid://backup/lake", "-policy", "EC63", name="first")
    assert run.returncode == 0, run.stdout + run.stderr
    first = report(tmp_path, "first")
    assert first["files_copied"] == first["files_verified"] == len(tree(lake)) == 161
    assert first["bytes_copied"] == total
    assert_backup_matches(client, "backup", "lake", lake)

    # The 1 GiB file went as parts copied by several ranks at once, and reads back identical.
    parts = [r for r in log_lines(tmp_path, "first") if r["status"] == "PART" and r["path"].endswith("huge.parquet")]
    assert len(parts) >= 4 and len({r["rank"] for r in parts}) >= 2
    huge = (lake / "events/day=2026-11-30/huge.parquet").stat().st_size
    assert huge >= 1024 * MiB
    ranges = sorted(tuple(r["range"]) for r in parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == huge
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    info = client.head("backup", "lake/events/day=2026-11-30/huge.parquet")
    assert info.size == huge and "distcp.parts" in info.properties

    again = distcp(local_grid, tmp_path, str(lake), "grid://backup/lake", "-update", name="second")
    assert again.returncode == 0, again.stdout + again.stderr
    assert report(tmp_path, "second")["files_copied"] == 0
    assert "nothing to copy" in again.stderr
    assert not [r for r in log_lines(tmp_path, "second") if r["status"] in ("COPY", "PART")]

    # Change three files (one keeps its size, only its mtime moves), delete one.
    sales = sorted(k for k in tree(lake) if k.startswith("sales/"))
    changed = [sales[0], sales[5], "customers/region=1/chunk-001.parquet"]
    (lake / changed[0]).write_bytes(os.urandom(1000))
    (lake / changed[1]).write_bytes((lake / changed[1]).read_bytes()[::-1])
    os.utime(lake / changed[1], (time.time() + 60, time.time() + 60))
    with open(lake / changed[2], "r+b") as f:
        f.seek(4 * MiB)
        f.write(b"changed")
    gone = sales[9]
    (lake / gone).unlink()
    third = distcp(local_grid, tmp_path, str(lake), "grid://backup/lake", "-update", "-delete", name="third")
    assert third.returncode == 0, third.stdout + third.stderr
    lines = log_lines(tmp_path, "third")
    assert sorted(r["path"] for r in lines if r["status"] == "COPY") == sorted(changed)
    assert [r["key"] for r in lines if r["status"] == "DELETE"] == [f"lake/{gone}"]
    assert report(tmp_path, "third")["files_copied"] == 3
    assert_backup_matches(client, "backup", "lake", lake)


def _rank_pids(parent: int) -> dict[int, int]:
    """PMI rank -> pid of the rank processes started by one mpirun (``parent``): only its descendants, since
    another test's job may run beside this one (xdist) with ranks of the same numbers."""
    found: list[tuple[int, int]] = []
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if b"grid-distcp" not in cmd or b"mpirun" in cmd or b"hydra" in cmd:
            continue
        for var in env:
            if var.startswith(b"PMI_RANK="):
                found.append((int(var.split(b"=")[1]), int(entry.name)))

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == parent:
                return True
            pid = parents.get(pid, 0)
        return False

    return {rank: pid for rank, pid in found if descends(pid)}


def test_sigkilled_rank_then_rerun_copies_only_what_remained(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    generate(str(src), small=60, small_size=256 << 10, medium=0, big=1, big_size=300 * MiB, seed=3)
    args = (str(src), "grid://resume/lake", "-part-size", "48", "-split-size", "64")
    job = distcp(local_grid, tmp_path, *args, "-bandwidth", "25", "-threads", "2", name="killed", wait=False)
    deadline = time.time() + 60
    while time.time() < deadline and len(log_lines(tmp_path, "killed")) < 8:
        time.sleep(0.1)
    ranks = _rank_pids(job.pid)
    assert len(ranks) == 4, ranks
    os.kill(ranks[2], signal.SIGKILL)
    out, _ = job.communicate(timeout=120)
    assert job.returncode != 0, out
    before = log_lines(tmp_path, "killed")
    copied_before = {r["key"] for r in before if r["status"] == "COPY"}
    parts_before = {r["part"] for r in before if r["status"] == "PART"}
    assert copied_before and len(copied_before) < 61

    rerun = distcp(local_grid, tmp_path, *args, name="rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = log_lines(tmp_path, "rerun")
    copied_after = {r["key"] for r in after if r["status"] == "COPY"}
    assert not copied_after & (copied_before - {"lake/events/day=2026-11-01/big-00.parquet"})
    assert parts_before, "the kill came before any part was stored: the test proves nothing"
    assert not {r["part"] for r in after if r["status"] == "PART"} & parts_before  # stored parts are not resent
    if "lake/events/day=2026-11-01/big-00.parquet" not in copied_before:  # parts kept are checked against the source
        assert {r["part"] for r in after if r["status"] == "SKIP" and r.get("verified")} >= parts_before
    resumed = report(tmp_path, "rerun")
    assert resumed["files_verified"] == resumed["files_copied"] == len(copied_after)
    # Files stored just before the kill, whose log line never got written, are skipped as present.
    skipped_after = {r["key"] for r in after if r["status"] == "SKIP" and "part" not in r}
    assert copied_before <= skipped_after | {"lake/events/day=2026-11-01/big-00.parquet"}
    assert len(copied_after | skipped_after) == 61 and not copied_after & skipped_after
    assert_backup_matches(client, "resume", "lake", src)


def test_restore_from_the_grid_to_a_folder_with_one_rank_and_no_mpirun(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    # The big file (40 MiB) goes both ways straight from and to the disk (gridfs.common.fileio).
    generate(str(src), small=20, small_size=8 << 10, medium=2, medium_size=2 * MiB, big=1, big_size=40 * MiB)
    assert distcp(local_grid, tmp_path, f"file://{src}", "grid://restore/t", "-p", ranks=2, name="in").returncode == 0
    info = client.head("restore", "t/customers/region=0/chunk-000.parquet")
    assert info.properties["distcp.mode"] and info.properties["distcp.owner"]
    out = tmp_path / "out"
    back = distcp(local_grid, tmp_path, "grid://restore/t", str(out), ranks=0, name="out")
    assert back.returncode == 0, back.stdout + back.stderr
    assert report(tmp_path, "out")["files_verified"] == 23
    from gridfs.common.fileio import DIRECT_WRITE_MIN, cached
    from gridfs.storage.store import _supports_direct

    (big,) = [p for p in tree(out).values() if p.stat().st_size >= DIRECT_WRITE_MIN]
    fd = os.open(big, os.O_RDONLY)
    try:  # written (and verified) past the page cache: none of it is there
        assert cached(fd, 0) is not _supports_direct(out)
    finally:
        os.close(fd)
    assert {k: file_digest(p, xxhash.xxh3_128) for k, p in tree(out).items()} == {
        k: file_digest(p, xxhash.xxh3_128) for k, p in tree(src).items()}


def test_bad_input_missing_source_unreadable_files_missing_bucket_and_delete_limit(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    missing = distcp(local_grid, tmp_path, str(tmp_path / "nope"), "grid://bad/x", ranks=2, name="missing")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "bad" not in {b.bucket for b in client.list_buckets()}

    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    (src / "dangling").symlink_to(src / "gone")
    os.mkfifo(src / "a-fifo")  # reading it would block forever: must be refused, not read
    no_create = distcp(local_grid, tmp_path, str(src), "grid://not-there/x", "-no-create", ranks=2, name="nc")
    assert no_create.returncode == 2 and "does not exist" in no_create.stderr
    assert "not-there" not in {b.bucket for b in client.list_buckets()}

    partial = distcp(local_grid, tmp_path, str(src), "grid://bad2/x", ranks=2, name="partial")
    assert partial.returncode == 1
    failed = {r["path"]: r["error"] for r in log_lines(tmp_path, "partial") if r["status"] == "FAIL"}
    assert set(failed) == {"dangling", "a-fifo"} and "not a regular file" in failed["a-fifo"]
    assert "dangling" in partial.stderr and "a-fifo" in partial.stderr
    assert len(client.list("bad2", prefix="x/").objects) == 10

    (src / "dangling").unlink()
    (src / "a-fifo").unlink()
    for i in range(4):
        (src / f"f{i}.bin").unlink()
    refused = distcp(local_grid, tmp_path, str(src), "grid://bad2/x", "-delete", "-max-delete", "3", ranks=2,
                     name="refused")
    assert refused.returncode == 2 and "max-delete" in refused.stderr
    assert len(client.list("bad2", prefix="x/").objects) == 10


def test_grid_dying_mid_job_stops_with_a_clear_error_and_the_rerun_resumes(
    fresh_grid: LocalGrid, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    generate(str(src), small=80, small_size=512 << 10, medium=0, big=0)
    args = (str(src), "grid://dying/lake")
    job = distcp(fresh_grid, tmp_path, *args, "-bandwidth", "8", "-threads", "1", ranks=2, name="dying", wait=False)
    deadline = time.time() + 60
    while time.time() < deadline and len(log_lines(tmp_path, "dying")) < 5:
        time.sleep(0.1)
    directory = [s for s in fresh_grid.services() if s.type in ("meta0", "meta1", "meta2")]
    for svc in directory:
        os.kill(svc.pid, signal.SIGKILL)
    out, _ = job.communicate(timeout=180)
    assert job.returncode == 3, out
    assert "unreachable" in out and "resume" in out
    for svc in directory:
        fresh_grid.restart(svc.name)
    rerun = distcp(fresh_grid, tmp_path, *args, ranks=2, name="resumed")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with GridClient(fresh_grid.config_path) as c:
        assert_backup_matches(c, "dying", "lake", src)


def test_s3_source_into_the_grid_and_restore_to_s3(local_grid: LocalGrid, client: GridClient, tmp_path: Path) -> None:
    """An s3:// source (s3fs, endpoint from AWS_ENDPOINT_URL) read through the grid's own S3 gateway."""
    import boto3

    from gridfs.gateways.s3.users import UserStore

    user = UserStore(local_grid.config_path).create("distcp-s3")
    endpoint = local_grid.config().extra["s3"]["url"]
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=user.access_key,
                      aws_secret_access_key=user.secret_key, region_name="us-east-1")
    s3.create_bucket(Bucket="s3-source")
    blobs = {f"lake/d{i % 2}/f{i}.bin": os.urandom(1000 * i + 1) for i in range(12)}
    for key, data in blobs.items():
        s3.put_object(Bucket="s3-source", Key=key, Body=data)
    env_keys = {"AWS_ACCESS_KEY_ID": user.access_key, "AWS_SECRET_ACCESS_KEY": user.secret_key,
                "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(env_keys)
    try:
        run = distcp(local_grid, tmp_path, "s3://s3-source/lake", "grid://from-s3/lake", ranks=2, name="s3")
        back = distcp(local_grid, tmp_path, "grid://from-s3/lake", "s3://s3-restored/lake", ranks=2, name="back")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert run.returncode == 0, run.stdout + run.stderr
    assert report(tmp_path, "s3")["files_verified"] == 12
    for key, data in blobs.items():
        assert client.get("from-s3", key) == data
    # ... and back out to another S3 bucket (created by the restore), byte for byte.
    assert back.returncode == 0, back.stdout + back.stderr
    assert report(tmp_path, "back")["files_verified"] == 12
    for key, data in blobs.items():
        assert s3.get_object(Bucket="s3-restored", Key=key)["Body"].read() == data


def test_dry_run_filters_atomic_and_overwrite(local_grid: LocalGrid, client: GridClient, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ("keep/a.bin", "keep/b.bin", "tmp/scratch.bin", "keep/c.tmp"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(3000))
    filters = tmp_path / "filters.txt"
    filters.write_text("# skip scratch data\n^tmp/\n\\.tmp$\n")

    manifest = tmp_path / "manifest.jsonl"
    dry = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-dry-run", "-manifest", str(manifest),
                 ranks=2, name="dry")
    assert dry.returncode == 0 and "would copy 4 files" in dry.stderr
    listed = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(r["path"] for r in listed) == ["keep/a.bin", "keep/b.bin", "keep/c.tmp", "tmp/scratch.bin"]
    assert all(r["size"] == 3000 and r["mtime"] > 0 for r in listed)
    assert "options" not in {b.bucket for b in client.list_buckets()}  # a dry run creates nothing

    run = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-filters", str(filters), "-atomic",
                 ranks=2, name="atomic")
    assert run.returncode == 0, run.stderr
    keys = sorted(o.key for o in client.iter_list("options"))
    assert keys == ["x/keep/a.bin", "x/keep/b.bin"]  # filtered out, and nothing left under the staging prefix

    (src / "keep/a.bin").write_bytes(b"new content")
    default = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-filters", str(filters), ranks=2,
                     name="default")
    assert default.returncode == 0 and report(tmp_path, "default")["files_copied"] == 0  # exists: skipped
    over = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-filters", str(filters), "-overwrite",
                  ranks=2, name="over")
    assert over.returncode == 0 and report(tmp_path, "over")["files_copied"] == 2
    assert client.get("options", "x/keep/a.bin") == b"new content"

    # Same size and mtime, other bytes: -update trusts the metadata, -update -verify reads and recopies.
    b = src / "keep/b.bin"
    st = b.stat()
    b.write_bytes(bytes(x ^ 1 for x in b.read_bytes()))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    trusting = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-filters", str(filters), "-update",
                      ranks=2, name="trusting")
    assert trusting.returncode == 0 and report(tmp_path, "trusting")["files_copied"] == 0
    checking = distcp(local_grid, tmp_path, str(src), "grid://options/x", "-filters", str(filters), "-update",
                      "-verify", ranks=2, name="checking")
    assert checking.returncode == 0
    verify_report = report(tmp_path, "checking")
    assert verify_report["files_copied"] == 1 and verify_report["files_skipped"] == 1
    assert client.get("options", "x/keep/b.bin") == b.read_bytes()
