"""grid-distcp's small files in ``put_many`` batches, end to end: real `mpirun`, real ranks, a live grid.

A lake of 300 small files (0 B to 900 KiB, and a few of 2 MiB that EC stores in one stripe) and a few large ones
(one split into parts) is backed up: every object reads back identical, each file has its own verified result and
log line, the small ones went in batches (the storage servers count the requests: one ``POST /chunks`` per server and
batch instead of a ``PUT`` per chunk) and the large ones as before. A job killed in the middle is resumed: what it
stored is skipped (journal), whole batches or nothing were committed, and the rerun copies only the rest. And the
coordinator's side of a rank storing two replies at once: asking ahead, it gets small files or waits, never a stop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xxhash

from grid_distcp.coordinator import Coordinator
from grid_distcp.tasks import COMPLETE, COPIED, COPY, FAILED, PART, FileEntry, Result, Task
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from tests.conftest import file_digest, object_digest
from tests.test_batch_frontends import ChunkRequests, chunk_count
from tests.test_distcp import _rank_pids, assert_backup_matches, distcp, log_lines, report, tree

MiB = 1 << 20


def write_lake(root: Path, small: int, seed: int = 5) -> dict[str, int]:
    """``small`` files of assorted small sizes under a few folders, and three large ones."""
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 4096, 64 << 10, 900 << 10, 2 * MiB]
    files = {f"part={i % 7}/f{i:04d}.bin": sizes[i % len(sizes)] if i < 24 else int(rng.integers(1, 96 << 10))
             for i in range(small)}
    files |= {"big/a.bin": 9 * MiB, "big/b.bin": 13 * MiB + 7, "big/split.bin": 40 * MiB + 3}
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rng.bytes(size))
    return files


@pytest.fixture
def client(local_grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(local_grid.config_path) as c:
        yield c


def test_small_files_go_in_batches_and_every_object_is_exact(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = write_lake(src, 300)
    args = (str(src), "grid://batched/lake", "-p", "-split-size", "32", "-part-size", "8")
    with ChunkRequests(local_grid) as sent:
        run = distcp(local_grid, tmp_path, *args, ranks=2, name="first")
    assert run.returncode == 0, run.stdout + run.stderr
    first = report(tmp_path, "first")
    assert first["files_copied"] == first["files_verified"] == len(files) == 303
    assert first["files_failed"] == 0 and first["bytes_copied"] == sum(files.values())
    assert_backup_matches(client, "batched", "lake", src)

    lines = log_lines(tmp_path, "first")
    copied = {r["path"]: r for r in lines if r["status"] == "COPY"}
    assert set(copied) == set(files) and not [r for r in lines if r["status"] == "FAIL"]
    for rel, line in copied.items():
        if rel != "big/split.bin":  # assembled from parts: its line counts the parts
            assert line["checksum"] == file_digest(src / rel, xxhash.xxh3_128), rel
            assert line["bytes"] == files[rel] and line["verified"], rel
    assert len({r["rank"] for r in copied.values()}) == 2
    for rel in ("part=0/f0000.bin", "part=3/f0010.bin", "part=5/f0299.bin"):
        props = client.head("batched", f"lake/{rel}").properties
        st = (src / rel).stat()
        assert props["distcp.mode"] == f"{st.st_mode & 0o7777:o}" and float(props["distcp.mtime"]) == pytest.approx(
            st.st_mtime, abs=1e-6)

    # Only the large files' chunks went one request each; the 300 small files' in a few batches per server.
    large = ["lake/big/a.bin", "lake/big/b.bin", "lake/big/split.bin"]
    assert sent.singles == chunk_count(client, "batched", large)
    assert 0 < sent.batches < 300
    assert not list((tmp_path / "cache" / "grid-distcp").glob("*")), "a finished job leaves no journal"

    again = distcp(local_grid, tmp_path, *args, "-update", ranks=2, name="again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert report(tmp_path, "again")["files_copied"] == 0


def test_a_killed_job_is_resumed_and_skips_what_its_batches_stored(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for i in range(300):
        (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 4}/f{i:03d}").write_bytes(os.urandom(32 << 10))
    args = (str(src), "grid://resumed/lake")
    # 1 MB/s per rank: the first replies (a quarter of the files each) take seconds to read.
    job = distcp(local_grid, tmp_path, *args, "-bandwidth", "1", ranks=2, name="killed", wait=False)
    deadline = time.time() + 60
    while time.time() < deadline and not log_lines(tmp_path, "killed"):
        time.sleep(0.05)
    ranks = _rank_pids(job.pid)
    assert len(ranks) == 2, ranks
    os.kill(ranks[1], signal.SIGKILL)
    out, _ = job.communicate(timeout=120)
    assert job.returncode != 0, out
    copied_before = {r["key"] for r in log_lines(tmp_path, "killed") if r["status"] == "COPY"}
    assert copied_before and len(copied_before) < 300, len(copied_before)

    # What the killed job committed is whole: batches are committed all or none, every object exact.
    present = {o.key for o in client.iter_list("resumed", prefix="lake/")}
    assert copied_before <= present and len(present) < 300
    for key in present:
        assert object_digest(client, "resumed", key, xxhash.xxh3_128) == file_digest(
            src / key.removeprefix("lake/"), xxhash.xxh3_128), key

    rerun = distcp(local_grid, tmp_path, *args, ranks=2, name="rerun")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = log_lines(tmp_path, "rerun")
    copied_after = {r["key"] for r in after if r["status"] == "COPY"}
    skipped = {r["key"]: r.get("error", "") for r in after if r["status"] == "SKIP"}
    assert not copied_after & present
    assert all(skipped[k] == "stored by an earlier run of this job" for k in copied_before)
    assert set(skipped) == present and len(copied_after) + len(present) == 300
    resumed = report(tmp_path, "rerun")
    assert resumed["files_copied"] == resumed["files_verified"] == len(copied_after)
    assert_backup_matches(client, "resumed", "lake", src)
    assert len(tree(src)) == 300


def test_a_rank_asking_ahead_gets_small_files_or_waits_and_is_stopped_only_once_it_has_reported() -> None:
    """The coordinator alone: a rank still storing a reply (``busy``) may take more small files, but never parts
    and never a stop, since the results of the reply it holds are still to come."""
    def entry(name: str, size: int) -> FileEntry:
        return FileEntry(0, f"/src/{name}", name, size, 0.0)

    small = [Task(COPY, entry(f"s{i}", 1000), f"s{i}") for i in range(40)]
    part = Task(PART, entry("big", 600 * MiB), "big", part=1, length=300 * MiB, parts=1)
    coord = Coordinator([*small, part], nranks=1)
    assert coord.next(0, [], busy=True).wait, "a part at the head is not handed out ahead"
    first = coord.next(0, [])
    assert [t.kind for t in first.tasks] == [PART]
    ahead = coord.next(0, [], busy=True)
    assert ahead.tasks and all(t.kind == COPY for t in ahead.tasks)
    handed = list(ahead.tasks)
    while (reply := coord.next(0, [], busy=True)).tasks:
        handed += reply.tasks
    assert reply.wait and not reply.stop and len(handed) == 40
    done = [Result(t, COPIED, nbytes=t.entry.size) for t in handed]
    assert coord.next(0, done, busy=True).wait  # results taken while busy; still no stop
    complete = coord.next(0, [Result(first.tasks[0], COPIED)])  # the last part stored: its assembly comes next
    assert [t.kind for t in complete.tasks] == [COMPLETE]
    assert coord.next(0, [Result(complete.tasks[0], COPIED)]).stop
    assert coord.counts()[COPIED] == 41

    aborted = Coordinator([Task(COPY, entry(f"a{i}", 1000), f"a{i}") for i in range(10)], nranks=1)
    handed = aborted.next(0, []).tasks
    fatal = Result(handed[0], FAILED, error="unreachable", fatal=True)
    assert aborted.next(0, [fatal], busy=True).wait and aborted.next(0, []).stop
