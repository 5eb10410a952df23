"""The HDD profile of a storage server: its I/O counters count what a put does, and a volume throttled
to a slow disk's pace (``--throttle``) is steered around by placement once its cost per MiB is known,
so ingest does not wait for it. Real processes: a 3 x 3 grid plus one throttled volume on node 1."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import xxhash

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.http import SECRET_HEADER
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.conscience.client import ConscienceClient
from gridfs.conscience.placement import LAGGARD_FRACTION
from gridfs.storage.client import ChunkClient, legacy_chunk_url
from gridfs.storage.store import _supports_direct
from tests.conftest import wait_for

MiB = 1 << 20
THROTTLE_MB = 2.0
POLICY = "EC42"  # width 6 on 10 volumes: the slow one's fair share is 60 % of the stripes
OBJECT = 4 * MiB  # 1 MiB chunks: each takes half a second on the slow volume


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalGrid, SpawnedService]]:
    grid = LocalGrid(tmp_path_factory.mktemp("hdd"))
    grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None)
    slow: SpawnedService | None = None
    try:
        vol = grid.data / "node1" / "vol4"  # beside two healthy volumes: placement can pass it over
        vol.mkdir(parents=True)
        slow = spawn_service("gridfs.storage", [
            "--config", str(grid.config_path), "--volume", str(vol), "--location", "site1.rack1.node1.vol4",
            "--throttle", str(THROTTLE_MB)], grid.run_dir, "rawx-slow")
        yield grid, slow
    finally:
        if slow is not None:
            slow.stop()
        grid.down()


def io_of(grid: LocalGrid, addr: str) -> dict:
    req = urllib.request.Request(f"http://{addr}/info", headers={SECRET_HEADER: grid.config().secret})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["io"]


def rawx_addrs(grid: LocalGrid, slow: SpawnedService) -> list[str]:
    return [s.addr for s in grid.services() if s.type == "rawx"] + [slow.addr]


def test_io_counters_count_a_known_put(grid: tuple[LocalGrid, SpawnedService]) -> None:
    local, _ = grid
    addr = next(s.addr for s in local.services() if s.type == "rawx")
    chunks = ChunkClient(local.config().secret)
    size = 3 * MiB + 5
    data = os.urandom(size)
    before = io_of(local, addr)
    # Two chunks in one prefix folder the volume has never seen: the first also makes the folder and
    # fsyncs its name into the volume root (once), the second pays only its own folder's fsync.
    ids = ["ABC" + os.urandom(31).hex().upper()[:61] for _ in range(2)]
    for chunk_id in ids:
        chunks.put(legacy_chunk_url(addr, chunk_id), data, chunk_hash=xxhash.xxh3_64_hexdigest(data))
    after = io_of(local, addr)
    delta = {k: after[k] - before[k] for k in ("bytes_written", "direct_bytes_written", "write_calls", "fsyncs",
                                               "dir_fsyncs", "files_created", "renames", "xattr_writes", "bytes_read")}
    # The whole 4 KiB blocks of each chunk straight to the disk (O_DIRECT), the 5-byte tail through the cache.
    straight = _supports_direct(Path(next(s.args[1] for s in local.services() if s.addr == addr)))
    assert delta == {"bytes_written": 2 * size, "direct_bytes_written": 2 * 3 * MiB if straight else 0,
                     "write_calls": 8, "fsyncs": 2,
                     "dir_fsyncs": 3, "files_created": 2, "renames": 2, "xattr_writes": 8, "bytes_read": 0}
    hist = {k: after["write_sizes"].get(k, 0) - before["write_sizes"].get(k, 0) for k in after["write_sizes"]}
    assert {k: v for k, v in hist.items() if v} == {str(MiB): 6, "512": 2}  # three 1 MiB calls and a tail each
    got = chunks.get(legacy_chunk_url(addr, ids[0]))
    assert bytes(got) == data
    again = io_of(local, addr)
    # Read straight from the disk (O_DIRECT, as it was written) in one call into a buffer, verified there;
    # through the cache, verified a 1 MiB block at a time and sent with sendfile.
    assert (again["bytes_read"] - after["bytes_read"], again["read_calls"] - after["read_calls"]) == \
        (size, 1 if straight else -(-size // MiB))
    assert again["ms_per_mib"] is not None  # 3 MiB chunks are timed
    req = urllib.request.Request(f"http://{addr}/metrics", headers={SECRET_HEADER: local.config().secret})
    with urllib.request.urlopen(req, timeout=5) as resp:
        metrics = resp.read().decode()
    assert f"grid_rawx_io_fsyncs_total {float(again['fsyncs'])}" in metrics
    assert 'grid_rawx_io_write_size_bytes_bucket{le="1048576.0"}' in metrics


def test_slow_volume_gets_few_chunks_and_does_not_hold_ingest(grid: tuple[LocalGrid, SpawnedService]) -> None:
    local, slow = grid
    cfg = local.config()
    conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
    client = GridClient(local.config_path)
    client.create_bucket("hdd")
    data = os.urandom(OBJECT)
    put_many = ThreadPoolExecutor(4)

    chunks = ChunkClient(cfg.secret)
    block = os.urandom(MiB)
    numbers = iter(range(1000))

    def learned() -> bool:
        # The volume learns its own pace from any write it takes: 1 MiB chunks straight to it (placement
        # alone would hand it one only by chance while it ramps up), until the conscience knows what they
        # cost and its score is a laggard's, under a tenth of the best (placement then passes it over
        # while enough others remain).
        chunks.put(legacy_chunk_url(slow.addr, f"{next(numbers):064X}"), block,
                   chunk_hash=xxhash.xxh3_64_hexdigest(block))
        rows = conscience.services("rawx")
        best = max(r["score_put"] for r in rows)
        mine = next(r for r in rows if r["addr"] == slow.addr)
        return mine["stats"].get("io_ms_per_mib", 0) > 200 and mine["score_put"] < best * LAGGARD_FRACTION

    try:
        wait_for("the slow volume's cost per MiB to reach the conscience", learned, timeout=30, every=0.2)
        time.sleep(1.2)  # the client's cached service list is refreshed each second
        addrs = rawx_addrs(local, slow)
        before = {a: io_of(local, a) for a in addrs}
        t0 = time.monotonic()
        list(put_many.map(lambda i: client.put("hdd", f"obj/{i}", data, policy=POLICY), range(40)))
        elapsed = time.monotonic() - t0
        after = {a: io_of(local, a) for a in addrs}
    finally:
        put_many.shutdown()
    files = {a: after[a]["files_created"] - before[a]["files_created"] for a in addrs}
    written = sum(after[a]["bytes_written"] - before[a]["bytes_written"] for a in addrs)
    total = sum(files.values())
    assert total == 40 * 6
    fair = total / len(addrs)  # every volume equally free: 24 chunks each
    assert files[slow.addr] <= fair / 10, files  # a laggard: passed over while the others suffice
    # Its fair share of the bytes would take the slow volume this long alone; the grid took far less.
    slow_pace = written / len(addrs) / (THROTTLE_MB * 1e6)
    assert elapsed < slow_pace / 2, (elapsed, slow_pace)
