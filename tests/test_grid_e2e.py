"""The grid core end to end: real processes started by `grid up`, the real CLI."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import held_chunks, rawx_of, run_grid_cli, volume

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient


def random_file(path: Path, size: int, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(rng.bytes(n))
            left -= n
    return path


def rawx_services(grid: LocalGrid) -> list:
    return [s for s in grid.services() if s.type == "rawx"]


def volume_of(grid: LocalGrid, url: str) -> Path:
    return volume(rawx_of(grid, url))


def chunk_path(grid: LocalGrid, url: str) -> Path:
    chunk_id = url.rsplit("/", 1)[1]
    return volume_of(grid, url) / chunk_id[:3] / chunk_id


def test_ec63_gigabyte_survives_three_dead_servers_not_four(fresh_grid: LocalGrid, tmp_path: Path) -> None:
    cfg = fresh_grid.config_path
    src = random_file(tmp_path / "big.bin", 1 << 30)
    run_grid_cli(cfg, "mb", "big")
    run_grid_cli(cfg, "put", str(src), "big/one.bin", "--policy", "EC63")

    where = json.loads(run_grid_cli(cfg, "locate", "big/one.bin", "--json").stdout)
    assert where["prefix"] == where["cid"][:4]
    metachunks = where["object"]["metachunks"]
    assert sum(mc["size"] for mc in metachunks) == 1 << 30
    for mc in metachunks:
        assert sorted(c["sub"] for c in mc["chunks"]) == list(range(9))
        assert len({volume_of(fresh_grid, c["url"]) for c in mc["chunks"]}) == 9

    out = tmp_path / "out.bin"
    run_grid_cli(cfg, "get", "big/one.bin", str(out))
    assert filecmp.cmp(src, out, shallow=False)
    out.unlink()

    victims = rawx_services(fresh_grid)[:4]
    for svc in victims[:3]:
        os.kill(svc.pid, signal.SIGKILL)
    run_grid_cli(cfg, "get", "big/one.bin", str(out))
    assert filecmp.cmp(src, out, shallow=False)
    out.unlink()

    os.kill(victims[3].pid, signal.SIGKILL)
    failed = run_grid_cli(cfg, "get", "big/one.bin", str(out), check=False)
    assert failed.returncode != 0
    message = failed.stderr.decode()
    assert "big/one.bin" in message
    assert "positions" in message
    assert not out.exists()
    assert not list(tmp_path.glob(".out.bin*")), "a partial download was left behind"


def test_corrupt_chunk_is_rebuilt_from_parity_and_reported(local_grid: LocalGrid, tmp_path: Path) -> None:
    cfg = local_grid.config_path
    src = random_file(tmp_path / "c.bin", 20 << 20, seed=2)
    run_grid_cli(cfg, "mb", "corrupt")
    run_grid_cli(cfg, "put", str(src), "corrupt/c.bin", "--policy", "EC63")
    where = json.loads(run_grid_cli(cfg, "locate", "corrupt/c.bin", "--json").stdout)
    chunk = next(c for c in where["object"]["metachunks"][0]["chunks"] if c["sub"] == 1)
    path = chunk_path(local_grid, chunk["url"])
    with open(path, "r+b") as f:
        f.seek(1000)
        good = f.read(16)
        f.seek(1000)
        f.write(bytes(b ^ 0xFF for b in good))

    out = tmp_path / "back.bin"
    result = run_grid_cli(cfg, "-v", "get", "corrupt/c.bin", str(out))
    assert filecmp.cmp(src, out, shallow=False)
    assert "corrupt" in result.stderr.decode()
    assert chunk["url"].rsplit("/", 1)[1] in result.stderr.decode()


def test_new_node_takes_writes_at_once_and_nothing_moves(fresh_grid: LocalGrid) -> None:
    client = GridClient(fresh_grid.config_path)
    client.create_bucket("spread")
    for i in range(20):
        client.put("spread", f"before/{i}", os.urandom(4096))
    before = {cid: h.identity for cid, h in held_chunks(fresh_grid.data).items()}
    assert before

    t0 = time.monotonic()
    run_grid_cli(fresh_grid.config_path, "node", "add", "--volumes", "3")
    rows = json.loads(run_grid_cli(fresh_grid.config_path, "status", "--json").stdout)
    assert time.monotonic() - t0 < 15  # three server start-ups on a shared 2-core host, no data moved
    new = [r for r in rows if r["type"] == "rawx" and ".node4." in r["location"]]
    assert len(new) == 3 and all(r["score_put"] > 0 for r in new)

    time.sleep(3.5)  # past the score ramp-up of a new service
    for i in range(120):
        client.put("spread", f"after/{i}", os.urandom(4096), policy="SINGLE")
    held = held_chunks(fresh_grid.data)
    added = [cid for cid in held if cid not in before]
    on_new = [cid for cid in added if held[cid].volume.parent.name == "node4"]
    assert len(added) == 120
    assert len(on_new) >= 120 * 0.12, f"the new node (1/4 of the volumes) took only {len(on_new)} of 120 chunks"
    for cid, ident in before.items():
        assert held[cid].identity == ident, f"chunk {cid} was moved or rewritten"


def test_silent_locked_and_full_servers_get_no_new_chunks(fresh_grid: LocalGrid) -> None:
    from gridfs.storage.client import ChunkClient

    cfg = fresh_grid.config()
    client = GridClient(fresh_grid.config_path)
    client.create_bucket("avoid")
    silent, locked = rawx_services(fresh_grid)[:2]
    (full,) = fresh_grid.add_node(volumes=1, rawx_args=["--max-bytes", str(2 << 20)])

    # Fill `full` past 90 % through the storage API, then check it still serves reads.
    chunks = ChunkClient(cfg.secret)
    import xxhash

    filler = os.urandom(1_950_000)
    filler_url = f"{full.url}/chunk/{'F' * 64}"
    chunks.put(filler_url, filler, chunk_hash=xxhash.xxh3_64_hexdigest(filler))
    run_grid_cli(fresh_grid.config_path, "lock", locked.addr)
    os.kill(silent.pid, signal.SIGSTOP)
    try:
        time.sleep(6.5)  # the conscience's silence timeout is 5 s; heartbeats are every second
        rows = {r["addr"]: r for r in fresh_grid.status_rows()}
        assert rows[silent.addr]["score_put"] == 0
        assert rows[locked.addr]["score_put"] == 0 and rows[locked.addr]["locked"]
        assert rows[full.addr]["score_put"] == 0 and rows[full.addr]["score_get"] > 0
        before = set(held_chunks(fresh_grid.data))
        for i in range(60):
            client.put("avoid", f"k{i}", os.urandom(2048), policy="SINGLE")
        held = held_chunks(fresh_grid.data)
        new = set(held) - before
        assert len(new) == 60
        avoided = {volume(s) for s in (silent, locked, full)}
        assert not [cid for cid in new if held[cid].volume in avoided]
        assert bytes(chunks.get(filler_url)) == filler  # full, yet readable
    finally:
        os.kill(silent.pid, signal.SIGCONT)
        run_grid_cli(fresh_grid.config_path, "unlock", locked.addr)


def test_full_volume_refuses_and_client_places_chunk_elsewhere(fresh_grid: LocalGrid) -> None:
    from gridfs.conscience.client import CachedServices
    from gridfs.storage.client import ChunkClient

    cfg = fresh_grid.config()
    (small,) = fresh_grid.add_node(volumes=1, rawx_args=["--max-bytes", str(1 << 20)])
    others = [s for s in rawx_services(fresh_grid) if s.addr != small.addr]
    for s in others:
        run_grid_cli(fresh_grid.config_path, "lock", s.addr)
    client = GridClient(fresh_grid.config_path)
    client.create_bucket("full")
    # This client's view of the grid is stale on purpose: it believes `small` is the only writable server.
    client.io.services = CachedServices(client.conscience, "rawx", ttl=3600)
    client.io.services.get()
    for s in others:
        run_grid_cli(fresh_grid.config_path, "unlock", s.addr)
    data = os.urandom(1_500_000)  # larger than the small volume's free space
    info = client.put("full", "big", data, policy="SINGLE")
    (chunk,) = info.metachunks[0].chunks
    assert rawx_of(fresh_grid, chunk.url).name != small.name
    assert client.get("full", "big") == data
    refused = ChunkClient(cfg.secret)
    import xxhash

    from gridfs.common.errors import VolumeFull

    with pytest.raises(VolumeFull):
        refused.put(f"{small.url}/chunk/{'E' * 64}", data, chunk_hash=xxhash.xxh3_64_hexdigest(data))


def test_directory_killed_after_ack_keeps_the_object(local_grid: LocalGrid) -> None:
    client = GridClient(local_grid.config_path)
    client.create_bucket("durable", exist_ok=True)
    data = os.urandom(3 << 20)
    client.put("durable", "acked", data)
    directory = [s for s in local_grid.services() if s.type in ("meta0", "meta1", "meta2")]
    for svc in directory:
        os.kill(svc.pid, signal.SIGKILL)
    for svc in directory:
        local_grid.restart(svc.name)
    fresh = GridClient(local_grid.config_path)
    assert fresh.get("durable", "acked") == data
    assert client.get("durable", "acked") == data  # the old client's caches still resolve


def test_interrupted_put_leaves_no_object_and_no_partial_chunk(local_grid: LocalGrid, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = random_file(tmp_path / "slow.bin", 600 << 20, seed=3)
    run_grid_cli(local_grid.config_path, "mb", "cut")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridfs.cli.main", "--config", str(local_grid.config_path), "put", str(src), "cut/x"]
    )
    time.sleep(1.2)
    assert proc.poll() is None, "the upload finished before it could be cut off: use a larger file"
    proc.kill()
    proc.wait()
    client = GridClient(local_grid.config_path)
    assert not client.exists("cut", "x")
    deadline = time.monotonic() + 5
    while list(local_grid.data.glob("node*/vol*/*/*.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(local_grid.data.glob("node*/vol*/*/*.tmp-*")), "a cut-off chunk upload left a temp file"


def test_grid_down_then_up_keeps_every_object_readable(tmp_path: Path) -> None:
    """Chunk URLs name service ids: storage servers come back on any port, every other service on its own."""
    grid = LocalGrid(tmp_path / "grid")
    grid.up(nodes=3, volumes=3, s3_port=None)
    try:
        added = grid.add_node(volumes=1)
        with GridClient(grid.config_path) as client:
            client.create_bucket("keep")
            small, big = os.urandom(5000), os.urandom(40 << 20)
            client.put("keep", "small", small)
            client.put("keep", "big", big, policy="EC63")
        before = {s.name: s for s in grid.services()}
    finally:
        grid.down()
    grid.up(nodes=3, volumes=3, s3_port=None)
    try:
        after = {s.name: s for s in grid.services()}
        assert set(after) == set(before) and added[0].name in after
        assert {n: s.url for n, s in after.items() if s.type != "rawx"} == {
            n: s.url for n, s in before.items() if s.type != "rawx"}
        with GridClient(grid.config_path) as client:
            assert client.get("keep", "small") == small
            assert client.get("keep", "big") == big
    finally:
        grid.down()


def test_repair_rebuilds_dead_corrupt_and_missing_chunks_elsewhere(fresh_grid: LocalGrid, tmp_path: Path) -> None:
    cfg = fresh_grid.config_path
    big = random_file(tmp_path / "ec.bin", 70 << 20, seed=5)  # two EC 6+3 metachunks
    small = os.urandom(70_000)
    client = GridClient(cfg)
    client.create_bucket("fix")
    client.put("fix", "ec.bin", big, policy="EC63")
    client.put("fix", "small", small, policy="THREECOPIES")
    ec, copies = client.head("fix", "ec.bin", chunks=True), client.head("fix", "small", chunks=True)

    # Two servers die (one holds a copy of the small object), one EC chunk on a live server is corrupted.
    def server(url: str) -> str:
        return rawx_of(fresh_grid, url).name

    dead = {server(ec.metachunks[0].chunks[0].url), server(copies.metachunks[0].chunks[0].url)}
    if len(dead) == 1:
        dead.add(server(ec.metachunks[1].chunks[4].url))
    for svc in rawx_services(fresh_grid):
        if svc.name in dead:
            os.kill(svc.pid, signal.SIGKILL)
    victim = next(c for c in ec.metachunks[1].chunks if server(c.url) not in dead)
    with open(chunk_path(fresh_grid, victim.url), "r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 32)
    report = json.loads(run_grid_cli(cfg, "repair", "fix", "--json").stdout)
    rebuilt = {r["key"]: set(r["rebuilt"]) for r in report}
    assert f"1.{victim.sub}" in rebuilt["ec.bin"]
    expected_dead = {f"{mc.pos}.{c.sub}" for mc in ec.metachunks for c in mc.chunks if server(c.url) in dead}
    assert expected_dead <= rebuilt["ec.bin"]
    assert rebuilt["small"] == {f"0.{c.sub}" for c in copies.metachunks[0].chunks if server(c.url) in dead}
    assert all(not r["lost"] for r in report)

    fresh = GridClient(cfg)
    for key, width in (("ec.bin", 9), ("small", 3)):
        info = fresh.head("fix", key, chunks=True)
        for mc in info.metachunks:
            assert sorted(c.sub for c in mc.chunks) == list(range(width)) and not mc.missing
            for c in mc.chunks:  # every chunk is on a live server and reads back verified, no rebuild needed
                assert server(c.url) not in dead
                assert fresh.io.chunks.get(c.url).nbytes == c.size
    assert fresh.get("fix", "ec.bin") == big.read_bytes() and fresh.get("fix", "small") == small
    again = json.loads(run_grid_cli(cfg, "repair", "fix", "--json").stdout)
    assert all(not r["rebuilt"] and not r["lost"] for r in again)


def test_crawl_deletes_only_orphans_and_keeps_copies_renames_versions_and_parts(fresh_grid: LocalGrid) -> None:
    from gridfs.client.writer import ObjectWriter
    from gridfs.common.errors import NotFound
    from gridfs.common.names import new_chunk_id

    cfg = fresh_grid.config_path
    client = GridClient(cfg)
    client.create_bucket("live")
    client.create_bucket("other")
    client.create_bucket("history", versioning=True)
    data = {name: os.urandom(size) for name, size in (("ec", 9 << 20), ("small", 5000), ("mp1", 6 << 20))}
    client.put("live", "ec", data["ec"], policy="EC63")
    client.put("live", "small", data["small"])
    client.copy("live", "ec", "other", "copied-ec")  # hard links, referenced by another container
    client.put("live", "to-rename", data["small"])
    client.rename("live", "to-rename", "renamed")
    client.put("history", "k", b"version one")
    client.put("history", "k", b"version two")
    done = client.create_multipart("live", "assembled")
    client.upload_part("live", "assembled", done.upload_id, 1, data["mp1"])
    client.upload_part("live", "assembled", done.upload_id, 2, b"tail")
    client.complete_multipart("live", "assembled", done.upload_id, [1, 2])
    pending = client.create_multipart("live", "in-progress")
    client.upload_part("live", "in-progress", pending.upload_id, 1, data["mp1"])

    # Orphans: what a writer killed before its commit leaves, in a live bucket and in a dropped one.
    orphans = set()
    for bucket in ("live", "doomed"):
        if bucket == "doomed":
            client.create_bucket("doomed")
        writer = ObjectWriter(client.io, client.choose_policy("live", "EC63", None), new_chunk_id(), "never/committed",
                              container=f"{client.account}/{bucket}")
        orphans |= set(writer.write(os.urandom(3 << 20)).chunk_urls())
    client.delete_bucket("doomed")

    dry = json.loads(run_grid_cli(cfg, "crawl", "--older-than", "0", "--dry-run", "--json").stdout)
    assert set(dry["orphans"]) == orphans and not dry["unreachable"]
    assert all(client.io.chunks.get(url) is not None for url in orphans)  # a dry run deletes nothing
    young = json.loads(run_grid_cli(cfg, "crawl", "--json").stdout)  # default grace: a day
    assert young["orphans"] == []
    real = json.loads(run_grid_cli(cfg, "crawl", "--older-than", "0", "--json").stdout)
    assert set(real["orphans"]) == orphans
    for url in orphans:
        with pytest.raises(NotFound):
            client.io.chunks.get(url)

    fresh = GridClient(cfg)
    assert fresh.get("live", "ec") == data["ec"] and fresh.get("other", "copied-ec") == data["ec"]
    assert fresh.get("live", "small") == data["small"] and fresh.get("live", "renamed") == data["small"]
    assert fresh.get("live", "assembled") == data["mp1"] + b"tail"
    versions = fresh.list_versions("history")["versions"]
    assert sorted(fresh.get("history", "k", version=v.version) for v in versions) == [b"version one", b"version two"]
    fresh.complete_multipart("live", "in-progress", pending.upload_id, [1])  # its stored part survived
    assert fresh.get("live", "in-progress") == data["mp1"]
    again = json.loads(run_grid_cli(cfg, "crawl", "--older-than", "0", "--json").stdout)
    assert again["orphans"] == []


def test_a_local_grid_counts_its_own_capacity_not_the_shared_disks(local_grid: LocalGrid) -> None:
    """Every volume and directory service of a local grid shares one disk. Judged by that disk's used
    fraction, the whole grid would stop taking writes at once when the machine's disk passed 90 % for any
    reason (as on a CI machine whose other tenants filled it): each counts a capacity of its own instead."""
    from gridfs.cli.local import LOCAL_VOLUME_BYTES
    from gridfs.conscience.client import ConscienceClient

    cfg = local_grid.config()
    listed = ConscienceClient(cfg.conscience_url, cfg.secret).services()
    sized = [s for s in listed if s["type"] in ("rawx", "meta0", "meta1", "meta2")]
    assert len(sized) == 9 + 3
    disk = os.statvfs(local_grid.data)
    for s in sized:
        assert s["stats"]["total_bytes"] == LOCAL_VOLUME_BYTES, s
        free = s["stats"]["free_bytes"]
        assert free <= min(LOCAL_VOLUME_BYTES, disk.f_bavail * disk.f_frsize + (256 << 20)), s


def test_grid_up_buffered_writes_reaches_every_storage_server_and_later_nodes(tmp_path: Path) -> None:
    """`grid up --buffered-writes` (chunk files through the page cache, docs/HDD.md) holds for the nodes
    started with the grid and for those added after it; by default chunks go straight to the disk."""
    import requests

    from gridfs.storage.store import _supports_direct

    grid = LocalGrid(tmp_path / "g")
    run_grid_cli(grid.config_path, "up", "--data", str(grid.data), "--nodes", "1", "--volumes", "3",
                 "--buffered-writes", "--s3-port", "-1", "--webhdfs-port", "-1", "--console-port", "-1")
    try:
        added = next(s for s in grid.add_node(volumes=1) if s.type == "rawx")  # (with the node's function runner)
        client = GridClient(grid.config_path)
        client.create_bucket("buf")
        for i in range(8):
            client.put("buf", f"k{i}", os.urandom(3 << 20), policy="THREECOPIES")
        cfg = grid.config()
        written = {}
        for s in rawx_services(grid):
            io = requests.get(f"{s.url}/info", headers={"X-Grid-Secret": cfg.secret}, timeout=5).json()["io"]
            written[s.name] = (io["bytes_written"], io["direct_bytes_written"])
        assert added.name in written and all(n > 0 for n, _ in written.values()), written
        assert all(direct == 0 for _, direct in written.values()), written
        assert _supports_direct(tmp_path)  # else this test would show nothing: the default is direct anyway
        # Started by the command line, the services run with one BLAS thread (gridfs/common/procenv.py).
        for s in grid.services():
            assert b"OPENBLAS_NUM_THREADS=1\0" in Path(f"/proc/{s.pid}/environ").read_bytes(), s.name
    finally:
        grid.down()
