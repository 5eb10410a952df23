"""Small files through the front ends go in ``put_many`` batches, against a live grid: fsspec's ``pipe`` of a dict
and ``put`` of a folder store every file exactly, the small ones in batches (the storage servers count the requests:
a batch is one ``POST /chunks`` per server, a single put one ``PUT`` per chunk), the large ones alone; callbacks,
listings and ``mode="create"`` behave as fsspec says, and a batch the grid refuses is written again file by file so
one bad file fails alone. Then grid-distcp's worker, in process against the same grid: a reply of small files, and
one with a bad key."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import xxhash
from fsspec.callbacks import Callback

from grid_distcp.coordinator import Coordinator
from grid_distcp.endpoints import GridDestination, LocalSource
from grid_distcp.journal import Journal, JsonLog
from grid_distcp.options import Options
from grid_distcp.tasks import COPIED, COPY, FAILED, Task
from grid_distcp.transport import LocalQueue
from grid_distcp.worker import Worker
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.client.batch import fits_batch
from gridfs.common.errors import InvalidName
from gridfs.fs import GridFileSystem

MiB = 1 << 20
BUCKET = "frontends"


class ChunkRequests:
    """Chunk writes the storage servers answered while the block ran: batches (POST) and single chunks (PUT)."""

    def __init__(self, grid: LocalGrid) -> None:
        self.grid = grid
        self.batches = self.singles = 0

    def _counts(self) -> Counter[str]:
        out: Counter[str] = Counter()
        secret = self.grid.config().secret
        for svc in self.grid.services():
            if svc.type == "rawx":
                text = requests.get(f"{svc.url}/metrics", headers={"X-Grid-Secret": secret}, timeout=5).text
                for method, value in re.findall(
                        r'^grid_requests_total\{method="(\w+)",route="/chunks?(?:/\{id\})?",status="2\d\d"\} (\S+)$',
                        text, re.M):
                    out[method] += int(float(value))
        return out

    def __enter__(self) -> ChunkRequests:
        self.before = self._counts()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._counts()
        self.batches, self.singles = after["POST"] - self.before["POST"], after["PUT"] - self.before["PUT"]


def chunk_count(client: GridClient, bucket: str, keys: list[str]) -> int:
    return sum(len(mc.chunks) for key in keys for mc in client.head(bucket, key, chunks=True).metachunks)


def batchable(client: GridClient, size: int) -> bool:
    return fits_batch(client.choose_policy(BUCKET, None, size), size, client.config.chunk_size)


@pytest.fixture
def fs(local_grid: LocalGrid) -> GridFileSystem:
    fs = GridFileSystem(config=str(local_grid.config_path), skip_instance_cache=True)
    fs.makedirs(BUCKET, exist_ok=True)
    return fs


@pytest.fixture
def client(local_grid: LocalGrid) -> Iterator[GridClient]:
    with GridClient(local_grid.config_path) as c:
        yield c


def test_pipe_of_a_dict_stores_small_objects_in_batches_and_large_ones_alone(
    local_grid: LocalGrid, fs: GridFileSystem, client: GridClient
) -> None:
    assert fs.ls(BUCKET) is not None  # a cached listing the writes must invalidate
    small = {f"{BUCKET}/pipe/s/{i:04d}": os.urandom(i * 211) for i in range(300)}  # 0 B to 62 KiB
    small[f"{BUCKET}/pipe/s/one-mib"] = os.urandom(MiB)  # the largest THREECOPIES object a batch takes
    small[f"{BUCKET}/pipe/s/ec"] = os.urandom(2 * MiB)  # EC by size: one stripe of chunks under 1 MiB
    large = {f"{BUCKET}/pipe/l/{i}": os.urandom(7 * MiB + i) for i in range(3)}  # several stripes
    assert all(batchable(client, len(v)) for v in small.values())
    assert not any(batchable(client, len(v)) for v in large.values())
    with ChunkRequests(local_grid) as sent:
        fs.pipe({**small, **large})
    for path, data in {**small, **large}.items():
        assert fs.cat_file(path) == data, path
    assert {f"{BUCKET}/pipe"} <= set(fs.ls(BUCKET, detail=False))
    assert sorted(fs.find(f"{BUCKET}/pipe")) == sorted([*small, *large])
    assert fs.info(f"{BUCKET}/pipe/s/0007")["size"] == 7 * 211
    # Only the large objects' chunks went one request each; the small ones' in a few batches (9 servers).
    assert sent.singles == chunk_count(client, BUCKET, [p.split("/", 1)[1] for p in large])
    assert 0 < sent.batches <= 9 * 4

    # Written again: the new bytes win.
    again = {p: os.urandom(100) for p in list(small)[:50]}
    fs.pipe(again)
    assert all(fs.cat_file(p) == v for p, v in again.items())

    # mode="create" keeps to single puts with if_none_match: an existing key is refused, a new one stored.
    with pytest.raises(FileExistsError):
        fs.pipe({f"{BUCKET}/pipe/s/0001": b"no"}, mode="create")
    fs.pipe({f"{BUCKET}/pipe/created": b"yes"}, mode="create")
    assert fs.cat_file(f"{BUCKET}/pipe/s/0001") == again[f"{BUCKET}/pipe/s/0001"]
    assert fs.cat_file(f"{BUCKET}/pipe/created") == b"yes"


def test_a_refused_batch_is_written_file_by_file_so_one_bad_key_fails_alone(
    fs: GridFileSystem, client: GridClient
) -> None:
    good = {f"{BUCKET}/refused/{i:03d}": os.urandom(1000 + i) for i in range(40)}
    bad = f"{BUCKET}/refused/nul\x00key"
    with pytest.raises(InvalidName):
        fs.pipe({**dict(list(good.items())[:20]), bad: b"x", **dict(list(good.items())[20:])})
    for path, data in good.items():
        assert fs.cat_file(path) == data, path
    assert len(client.list(BUCKET, prefix="refused/").objects) == 40


class Recorder(Callback):
    """fsspec's callback protocol: the parent counts files, each child (branch) the bytes of its file."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.children: dict[str, Callback] = {}

    def branch(self, path_1: str, path_2: str, kwargs: dict[str, Any]) -> None:
        child = Callback()
        self.children[path_1] = child
        kwargs["callback"] = child


def test_put_of_a_folder_batches_small_files_with_callbacks_and_listings(
    local_grid: LocalGrid, fs: GridFileSystem, client: GridClient, tmp_path: Path
) -> None:
    src = tmp_path / "folder"
    files: dict[str, bytes] = {}
    for i in range(250):
        files[f"d{i % 5}/sub{i % 3}/f{i:03d}.bin"] = os.urandom(4096 + 97 * i)
    files["empty"] = b""
    files["large/a.bin"] = os.urandom(9 * MiB)
    files["large/b.bin"] = os.urandom(7 * MiB + 12345)
    assert not batchable(client, len(files["large/a.bin"])) and batchable(client, 4096 + 97 * 249)
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    (src / "an-empty-dir").mkdir()

    assert not fs.exists(f"{BUCKET}/put-dst")
    cb = Recorder()
    with ChunkRequests(local_grid) as sent:
        fs.put(str(src) + "/", f"{BUCKET}/put-dst", recursive=True, callback=cb)
    assert cb.size == cb.value == len(files)
    for rel, data in files.items():
        child = cb.children[str(src / rel)]
        assert child.size == child.value == len(data), rel
    assert sorted(fs.find(f"{BUCKET}/put-dst")) == sorted(f"{BUCKET}/put-dst/{rel}" for rel in files)
    assert fs.exists(f"{BUCKET}/put-dst") and fs.isdir(f"{BUCKET}/put-dst/d0")
    for rel, data in files.items():
        stored = client.get(BUCKET, f"put-dst/{rel}")
        assert xxhash.xxh3_128_hexdigest(stored) == xxhash.xxh3_128_hexdigest(data), rel
        assert fs.info(f"{BUCKET}/put-dst/{rel}")["checksum"] == xxhash.xxh3_128_hexdigest(data), rel
    assert sent.singles == chunk_count(client, BUCKET, ["put-dst/large/a.bin", "put-dst/large/b.bin"])
    assert 0 < sent.batches <= 9 * 6

    # A list of files to a list of keys, and a single file, go the same way.
    fs.put([str(src / "d1/sub1/f001.bin"), str(src / "empty")], [f"{BUCKET}/list/x", f"{BUCKET}/list/y"])
    fs.put(str(src / "d2/sub2/f002.bin"), f"{BUCKET}/list/z")
    assert fs.cat_file(f"{BUCKET}/list/x") == files["d1/sub1/f001.bin"]
    assert fs.cat_file(f"{BUCKET}/list/y") == b""
    assert fs.cat_file(f"{BUCKET}/list/z") == files["d2/sub2/f002.bin"]
    with pytest.raises(FileExistsError):
        fs.put_file(str(src / "empty"), f"{BUCKET}/list/x", mode="create")
    assert fs.cat_file(f"{BUCKET}/list/x") == files["d1/sub1/f001.bin"]


def test_distcp_worker_stores_a_reply_in_one_batch_and_a_bad_key_fails_alone(
    local_grid: LocalGrid, client: GridClient, tmp_path: Path
) -> None:
    """The worker in process (real grid, real destination): a reply of small files is stored by one batch, each
    file checked against its source's checksum and journaled; in a reply with a key the grid refuses, the batch is
    written again file by file: the others are stored, that one fails with its own error."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:02d}").write_bytes(os.urandom(5000 + i))
    entries = sorted(LocalSource(str(src)).top()[0], key=lambda e: e.rel)
    first = [Task(COPY, e, f"w/{e.rel}") for e in entries[:30]]
    second = [Task(COPY, e, f"w/{e.rel}") for e in entries[30:]]
    second[7].key = "w/bad\x00key"
    opts = Options(sources=[str(src)], destination=f"grid://{BUCKET}/w", preserve=True)
    dest = GridDestination(opts.destination, str(local_grid.config_path))
    journal = Journal(str(tmp_path / "journal"), 0)
    log = JsonLog(str(tmp_path / "log.jsonl"))
    worker = Worker(0, opts, dest, LocalQueue(Coordinator([], 1)), journal, log)
    try:
        with ChunkRequests(local_grid) as batched:
            results = worker.execute_all(first)
        with ChunkRequests(local_grid) as alone:
            results += worker.execute_all(second)
    finally:
        worker.pool.shutdown()
        journal.close()
        log.close()
    by_key = {r.task.key: r for r in results}
    assert len(by_key) == 60 and by_key["w/bad\x00key"].status == FAILED
    assert "InvalidName" in by_key["w/bad\x00key"].error and not by_key["w/bad\x00key"].fatal
    done = Journal.load(str(tmp_path / "journal"))
    logged = {r["key"]: r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())}
    assert len(logged) == 60 and logged["w/bad\x00key"]["status"] == FAILED
    for t in first + second:
        if t.key == "w/bad\x00key":
            assert t.key not in done
            continue
        r = by_key[t.key]
        data = Path(t.entry.url).read_bytes()
        assert r.status == COPIED and r.checksum == xxhash.xxh3_128_hexdigest(data) and r.verified, t.key
        assert logged[t.key]["status"] == COPIED and logged[t.key]["checksum"] == r.checksum
        assert client.get(BUCKET, t.key) == data
        props = client.head(BUCKET, t.key).properties
        assert props["distcp.mode"] == f"{t.entry.mode:o}" and props["distcp.owner"] == t.entry.owner
        assert float(props["distcp.mtime"]) == pytest.approx(t.entry.mtime, abs=1e-6)
        assert done[t.key] == (t.entry.size, t.entry.mtime)
    assert batched.singles == 0 and 0 < batched.batches <= 9  # the first reply: one batch
    assert alone.batches == 0 and alone.singles == 3 * 29  # the second: each good file on its own (3 copies)
