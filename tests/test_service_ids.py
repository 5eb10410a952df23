"""Stable service ids, with real processes: chunk URLs name storage servers by id, so a
server that comes back on another port serves every chunk it had, a stale address that
now belongs to another server is detected, old records (chunk URLs by address) still
read and can be upgraded, and reads do not wait on servers the conscience reports down."""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from pathlib import Path

import pytest
import requests
import xxhash
from conftest import rawx_of, run_grid_cli, volume

from gridfs.cli.local import LocalGrid, LocalService
from gridfs.client import GridClient
from gridfs.client.writer import ObjectWriter
from gridfs.common.errors import NotFound, ServiceUnavailable
from gridfs.common.names import new_chunk_id
from gridfs.common.service import spawn_service
from gridfs.conscience.client import CachedServices
from gridfs.directory.model import ObjectInfo
from gridfs.storage.client import ChunkClient, chunk_url, legacy_chunk_url, parse_chunk_url
from tests.conftest import held_chunks, wait_for


def service_id(svc: LocalService) -> str:
    return (volume(svc) / "service.id").read_text()



def listed_at(client: GridClient, sid: str) -> str | None:
    """Where the conscience lists a service now (None: not listed)."""
    return next((s["addr"] for s in client.conscience.services("rawx") if s["id"] == sid), None)


def urls_of(info: ObjectInfo) -> list[str]:
    return [c.url for mc in info.metachunks for c in mc.chunks]


def on_disk(grid: LocalGrid, chunk_ids: set[str]) -> set[str]:
    return set(held_chunks(grid.data)) & chunk_ids


def test_server_restarted_on_another_port_serves_everything_and_crawl_keeps_it(fresh_grid: LocalGrid) -> None:
    client = GridClient(fresh_grid.config_path)
    client.create_bucket("move")
    data = {"ec": os.urandom(20 << 20), "copies": os.urandom(300_000)}
    client.put("move", "ec", data["ec"], policy="EC63")
    client.put("move", "copies", data["copies"], policy="THREECOPIES")
    client.copy("move", "ec", "move", "ec-copy")  # hard links on every server
    copies = client.head("move", "copies", chunks=True)
    assert all(u.startswith("rawx://") for u in urls_of(copies))
    mover = rawx_of(fresh_grid, copies.metachunks[0].chunks[0].url)  # holds EC chunks and a copy
    sid, old_addr = service_id(mover), mover.addr
    # An orphan (a writer that died before its commit) with a chunk on every server, the mover too.
    writer = ObjectWriter(client.io, client.choose_policy("move", "EC63", None), new_chunk_id(), "never/committed",
                          container=f"{client.account}/move")
    orphans = set(writer.write(os.urandom(3 << 20)).chunk_urls())
    assert any(parse_chunk_url(u).service_id == sid for u in orphans)
    ids = {parse_chunk_url(u).chunk_id for key in ("ec", "ec-copy", "copies")
           for u in urls_of(client.head("move", key, chunks=True))}
    mine = {i for i in ids if (volume(mover) / i[:3] / i).exists()}
    assert mine

    moved = fresh_grid.restart(mover.name, same_port=False)
    assert moved.addr != old_addr
    wait_for("the conscience lists the server at its new address", lambda: listed_at(client, sid) == moved.addr)

    # The old client still has the old address cached: a refused connection makes it ask again.
    for url in urls_of(copies):
        assert bytes(client.io.chunks.get(url)) == data["copies"]
    fresh = GridClient(fresh_grid.config_path)
    for key, want in (("ec", data["ec"]), ("ec-copy", data["ec"]), ("copies", data["copies"])):
        assert client.get("move", key) == want and fresh.get("move", key) == want

    report = json.loads(run_grid_cli(fresh_grid.config_path, "crawl", "--older-than", "0", "--json").stdout)
    assert not report["unreachable"]
    assert set(report["orphans"]) == orphans  # the moved server was listed: its orphan is found too
    assert on_disk(fresh_grid, mine) == mine, "the crawler deleted referenced chunks of the moved server"
    for key, want in (("ec", data["ec"]), ("ec-copy", data["ec"]), ("copies", data["copies"])):
        assert fresh.get("move", key) == want


def test_stale_address_now_another_servers_is_refused_not_taken_for_a_missing_chunk(
    fresh_grid: LocalGrid, tmp_path: Path
) -> None:
    cfg = fresh_grid.config()
    client = GridClient(fresh_grid.config_path)
    victim = next(s for s in fresh_grid.services() if s.type == "rawx")
    sid, old_port = service_id(victim), victim.addr.rsplit(":", 1)[1]
    stale = ChunkClient.for_grid(cfg, CachedServices(client.conscience, ttl=3600))  # never refreshed by time
    url = chunk_url(sid, new_chunk_id())
    data = os.urandom(100_000)
    stale.put(url, data, chunk_hash=xxhash.xxh3_64_hexdigest(data))

    os.kill(victim.pid, signal.SIGKILL)
    intruder = spawn_service("gridfs.storage", ["--config", str(fresh_grid.config_path), "--volume",
                                                str(tmp_path / "intruder"), "--location", "site1.rack1.other.vol1",
                                                "--port", old_port], tmp_path / "run", "intruder")
    try:
        intruder_id = (tmp_path / "intruder" / "service.id").read_text()
        wait_for("the intruder registers at the victim's address",
                 lambda: listed_at(client, intruder_id) == victim.addr)
        assert listed_at(client, sid) is None  # the victim's entry at that address was dropped
        answer = requests.get(f"http://{victim.addr}/chunk/{parse_chunk_url(url).chunk_id}", timeout=5,
                              headers={"X-Grid-Secret": cfg.secret, "X-Grid-Service-Id": sid})
        assert answer.status_code == 421 and answer.json()["error"]["code"] == "WrongService"
        with pytest.raises(ServiceUnavailable) as caught:
            stale.get(url)  # not NoSuchChunk: a reaper or a repair must not take the chunk for gone
        assert not isinstance(caught.value, NotFound)

        moved = fresh_grid.restart(victim.name, same_port=False)
        wait_for("the victim registers at its new address", lambda: listed_at(client, sid) == moved.addr)
        assert bytes(stale.get(url)) == data
    finally:
        intruder.stop()


def test_old_form_records_read_and_grid_upgrade_names_ids(fresh_grid: LocalGrid) -> None:
    client = GridClient(fresh_grid.config_path)
    client.create_bucket("old")
    addr_of = {s["id"]: s["addr"] for s in client.conscience.services("rawx")}
    data: dict[str, bytes] = {}
    for key, policy, size in (("ec", "EC63", 10 << 20), ("copies", "THREECOPIES", 200_000)):
        # What a client from before service ids wrote: chunk URLs by address.
        pol = client.choose_policy("old", policy, None)
        writer = ObjectWriter(client.io, pol, new_chunk_id(), key, container=f"{client.account}/old")
        data[key] = os.urandom(size)
        result = writer.write(data[key])
        for mc in result.metachunks:
            for c in mc.chunks:
                ref = parse_chunk_url(c.url)
                c.url = legacy_chunk_url(addr_of[ref.service_id], ref.chunk_id)
        client.directory.commit_object(client.account, "old", ObjectInfo(
            account=client.account, bucket="old", key=key, content_id=writer.headers["X-Grid-Content-Id"],
            size=result.size, policy=pol.name, chunk_method=pol.chunk_method, hash=result.hash,
            metachunks=result.metachunks))
    client.put("old", "new", b"already by id")
    ids = {parse_chunk_url(u).chunk_id for key in data for u in urls_of(client.head("old", key, chunks=True))}
    for key, want in data.items():
        assert all(u.startswith("http://") for u in urls_of(client.head("old", key, chunks=True)))
        assert client.get("old", key) == want

    dry = json.loads(run_grid_cli(fresh_grid.config_path, "upgrade", "--dry-run", "--json").stdout)
    assert sorted(v.split("@")[0] for v in dry["upgraded"]) == ["old/copies", "old/ec"]
    assert all(u.startswith("http://") for u in urls_of(client.head("old", "ec", chunks=True)))
    done = json.loads(run_grid_cli(fresh_grid.config_path, "upgrade", "--json").stdout)
    assert done["upgraded"] == dry["upgraded"] and not done["kept"] and done["versions"] == 3
    for key, want in data.items():
        info = client.head("old", key, chunks=True)
        assert all(parse_chunk_url(u).service_id for u in urls_of(info)), urls_of(info)
        assert {parse_chunk_url(u).chunk_id for u in urls_of(info)} <= ids
        assert GridClient(fresh_grid.config_path).get("old", key) == want
    again = json.loads(run_grid_cli(fresh_grid.config_path, "upgrade", "--json").stdout)
    assert again["upgraded"] == []

    # Whatever events the rewrite produced have been handled once a later delete's chunks are reaped:
    # not one chunk of the upgraded objects may have been deleted.
    gone = client.put("old", "marker", os.urandom(100_000), policy="THREECOPIES")
    marker_ids = {parse_chunk_url(u).chunk_id for u in urls_of(client.head("old", "marker", chunks=True))}
    assert gone.size
    client.delete("old", "marker")
    wait_for("the event agent reaps a deleted object's chunks", lambda: not on_disk(fresh_grid, marker_ids), 30)
    assert on_disk(fresh_grid, ids) == ids, "an upgrade made the event agent delete live chunks"
    for key, want in data.items():
        assert GridClient(fresh_grid.config_path).get("old", key) == want


def _read_seconds(config: Path, bucket: str, key: str, want: bytes, runs: int = 3) -> float:
    """Median time of a whole-object read by a fresh client (so no connection is reused)."""
    times = []
    for _ in range(runs):
        with GridClient(config) as client:
            t0 = time.perf_counter()
            got = client.get(bucket, key)
            times.append(time.perf_counter() - t0)
        assert got == want
    return statistics.median(times)


def test_ec63_read_with_three_dead_servers_costs_well_under_a_second_more(fresh_grid: LocalGrid) -> None:
    config = fresh_grid.config_path
    client = GridClient(config)
    client.create_bucket("timing")
    # One EC 6+3 metachunk (six 2 MiB data chunks): small enough that the decode itself stays far below
    # the second the test allows on two busy cores; what is measured is waiting on dead servers.
    data = os.urandom(12 << 20)
    client.put("timing", "obj", data, policy="EC63")
    info = client.head("timing", "obj", chunks=True)
    # The servers of data positions 0, 1 and 2 of the first metachunk: every read must rebuild.
    victims = [rawx_of(fresh_grid, c.url) for c in sorted(info.metachunks[0].chunks, key=lambda c: c.sub)[:3]]
    ids = [service_id(v) for v in victims]

    def marked_down() -> bool:
        rows = {s["id"]: s for s in client.conscience.services("rawx")}
        return all(not rows[i]["up"] for i in ids)

    all_up = _read_seconds(config, "timing", "obj", data)
    for v in victims:
        os.kill(v.pid, signal.SIGKILL)
    killed_unnoticed = _read_seconds(config, "timing", "obj", data)  # refused connections, conscience unaware
    wait_for("the conscience marks the killed servers down", marked_down)
    killed = _read_seconds(config, "timing", "obj", data)

    stopped = [fresh_grid.restart(v.name) for v in victims]
    wait_for("the restarted servers are up", lambda: all(s["up"] for s in client.conscience.services("rawx")))
    for v in stopped:
        os.kill(v.pid, signal.SIGSTOP)  # they accept connections and never answer
    try:
        wait_for("the conscience marks the stopped servers down", marked_down)
        sigstopped = _read_seconds(config, "timing", "obj", data)
    finally:
        for v in stopped:
            os.kill(v.pid, signal.SIGCONT)
    print(f"\nEC63 read of 12 MiB (median of 3): all up {all_up:.3f} s; 3 servers SIGKILLed, not yet noticed "
          f"{killed_unnoticed:.3f} s, marked down {killed:.3f} s; 3 servers SIGSTOPped and marked down "
          f"{sigstopped:.3f} s")
    for label, seconds in (("killed, unnoticed", killed_unnoticed), ("killed", killed), ("stopped", sigstopped)):
        assert seconds - all_up < 1.0, f"{label}: {seconds:.3f} s against {all_up:.3f} s with all up"
