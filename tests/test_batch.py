"""Batches of small chunks on a real storage server (``POST /chunks``, packed on the volume): round trip,
links, deletes and restarts; hostile batches that store nothing; a SIGKILL at the two worst moments of a
batch (after the pack's fsync, after the index commit); an index rebuilt from the packs; the scrubber
finding a flipped byte in a pack. Then ``GridClient.put_many`` on a whole grid: mixed sizes and
policies, a dead storage server, a refused commit that leaves no chunk behind."""

from __future__ import annotations

import json
import os
import secrets
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import xxhash

from gridfs.cli.local import LocalGrid
from gridfs.client.grid import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import AlreadyExists, ChecksumMismatch, GridError, NoSuchChunk, NoSuchContainer
from gridfs.common.failpoints import ENV, arm
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.storage.client import ChunkClient, legacy_chunk_url, parse_chunk_url
from tests.conftest import rawx_of, wait_for

REF = {"container": "acct/bkt", "path": "dir/obj", "content_id": "C0FFEE", "policy": "THREECOPIES", "pos": "0.0"}


def start(cfg: GridConfig, vol: Path, run: Path, points: Path | None = None) -> SpawnedService:
    return spawn_service("gridfs.storage", ["--config", str(cfg.path), "--volume", str(vol), "--location", "s.r.h.v"],
                         run, "rawx", env={ENV: str(points)} if points else None)


@pytest.fixture
def rawx(grid_config: GridConfig, tmp_path: Path) -> Iterator[tuple[SpawnedService, Path]]:
    vol = tmp_path / "vol"
    svc = start(grid_config, vol, tmp_path / "run")
    yield svc, vol
    svc.stop()


def chunks(svc: SpawnedService, n: int, size: int = 4096) -> list[tuple[str, bytes, str, dict]]:
    out = []
    for i in range(n):
        body = os.urandom(size + i)
        out.append((legacy_chunk_url(svc.addr, secrets.token_hex(32).upper()), body, xxhash.xxh3_64_hexdigest(body),
                    {**REF, "path": f"dir/obj{i}"}))
    return out


def readable(c: ChunkClient, batch: list[tuple[str, bytes, str, dict]]) -> list[bool]:
    out = []
    for url, body, _, _ in batch:
        try:
            out.append(bytes(c.get(url)) == body)
        except NoSuchChunk:
            out.append(False)
    return out


def info(cfg: GridConfig, svc: SpawnedService) -> dict:
    return requests.get(f"{svc.url}/info", headers={"X-Grid-Secret": cfg.secret}, timeout=10).json()


def test_batch_round_trip_links_deletes_and_restart(rawx: tuple[SpawnedService, Path], grid_config: GridConfig,
                                                    tmp_path: Path) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    batch = chunks(svc, 50)
    c.put_batch(batch)
    assert all(readable(c, batch))
    assert list((vol / "packs").glob("*.pack")) and not [p for p in vol.glob("???/*")], "packed, not one file each"
    url, body, digest, _ = batch[7]
    assert bytes(c.get(url, offset=100, length=50)) == body[100:150]
    head = c.head(url)
    assert head["x-grid-chunk-hash"] == digest and head["x-grid-content-path"] == "dir/obj7"
    c.link(url, "B" * 64, container="acct/other", path="copy")
    copy = legacy_chunk_url(svc.addr, "B" * 64)  # link answers the rawx:// form; this client has no resolver
    assert bytes(c.get(copy)) == body
    c.delete(url)
    with pytest.raises(NoSuchChunk):
        c.get(url)
    assert bytes(c.get(copy)) == body, "the link keeps the bytes its source shared"
    with pytest.raises(AlreadyExists):
        c.put_batch([batch[0]])
    listed = {e["chunk_id"]: e["ref"] for e in c.list_chunks(svc.addr, older_than=-60)}
    assert len(listed) == 50 and listed["B" * 64]["path"] == "copy" and listed["B" * 64]["container"] == "acct/other"
    before = info(grid_config, svc)
    assert before["chunks"] == 50
    svc.stop()
    svc = start(grid_config, vol, tmp_path / "run")
    try:
        assert info(grid_config, svc)["chunks"] == 50
        c2 = ChunkClient(grid_config.secret)
        moved = [(legacy_chunk_url(svc.addr, parse_chunk_url(u).chunk_id), b, d, r) for u, b, d, r in batch[8:]]
        assert all(readable(c2, moved))
        c2.put_batch(chunks(svc, 3))
        assert info(grid_config, svc)["chunks"] == 53
    finally:
        svc.stop()


def raw_batch(svc: SpawnedService, cfg: GridConfig, body: bytes, **headers: str) -> requests.Response:
    return requests.post(f"{svc.url}/chunks", data=body, headers={"X-Grid-Secret": cfg.secret, **headers}, timeout=10)


def encode(manifest: object, bodies: bytes = b"") -> bytes:
    m = json.dumps(manifest).encode()
    return struct.pack(">I", len(m)) + m + bodies


def test_hostile_batches_store_nothing(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    good = chunks(svc, 3)
    bad_hash = [*good[:2], (good[2][0], good[2][1], "0" * 16, good[2][3])]
    with pytest.raises(ChecksumMismatch):
        c.put_batch(bad_hash)
    with pytest.raises(GridError, match="given twice"):
        c.put_batch([good[0], good[0]])
    big = os.urandom((1 << 20) + 1)
    with pytest.raises(GridError, match="at most"):
        c.put_batch([good[0], (good[1][0], big, xxhash.xxh3_64_hexdigest(big), {})])
    body = b"x" * 10
    entry = {"id": "A" * 64, "size": 10, "hash": xxhash.xxh3_64_hexdigest(body), "ref": {}}
    hostile = [
        b"",  # no manifest length
        b"\xff\xff\xff\xff{}",  # a manifest longer than the body
        struct.pack(">I", 3) + b"{x}",  # not JSON
        encode([]),  # empty
        encode({"id": "A" * 64}),  # not a list
        encode([{**entry, "id": "../../etc/passwd"}], body),
        encode([{**entry, "id": "A" * 63 + "\x00"}], body),
        encode([{**entry, "id": "A" * 640}], body),
        encode([{**entry, "size": -1}], body),
        encode([{**entry, "size": "10"}], body),
        encode([{**entry, "hash": "zz"}], body),
        encode([{**entry, "ref": ["x"]}], body),
        encode([entry], body + b"extra"),  # sizes that do not add up
        encode([entry], body[:5]),
    ]
    for payload in hostile:
        r = raw_batch(svc, grid_config, payload)
        assert r.status_code == 400, (payload[:60], r.status_code, r.text)
        assert r.json()["error"], r.text
    assert raw_batch(svc, grid_config, encode([entry], body), **{"X-Grid-Secret": "wrong"}).status_code == 403
    r = raw_batch(svc, grid_config, encode([entry], body), **{"X-Grid-Service-Id": "rawx-someoneelse"})
    assert r.status_code == 421
    assert not any(readable(c, good)) and info(grid_config, svc)["chunks"] == 0
    assert not (vol / "packs").exists() or not any(p.stat().st_size for p in (vol / "packs").glob("*.pack"))
    assert not [p for p in vol.rglob("*") if "passwd" in p.name]
    # A ref field the server does not keep is dropped, not stored.
    c.put_batch([(good[0][0], good[0][1], good[0][2], {**REF, "evil": "x" * 100})])
    assert "evil" not in c.list_chunks(svc.addr, older_than=-60)[0]["ref"]


@pytest.mark.parametrize("moment", ["rawx.batch_after_pack_fsync", "rawx.batch_after_index_commit"])
def test_sigkill_mid_batch(grid_config: GridConfig, tmp_path: Path, moment: str) -> None:
    """Killed after the pack is durable but before the index names it, the batch never happened; killed
    after the index commit (the answer lost), every chunk of it is there after a restart."""
    vol, points = tmp_path / "vol", tmp_path / "points"
    points.mkdir()
    svc = start(grid_config, vol, tmp_path / "run", points)
    c = ChunkClient(grid_config.secret)
    try:
        first = chunks(svc, 20)
        c.put_batch(first)
        doomed = chunks(svc, 20)
        arm(points, moment)
        with pytest.raises(GridError):
            c.put_batch(doomed)
        assert wait_for("the storage server to die", lambda: svc.process.poll() is not None, 10)
        svc = start(grid_config, vol, tmp_path / "run", points)
        c = ChunkClient(grid_config.secret)

        def moved(batch: list) -> list:
            return [(legacy_chunk_url(svc.addr, parse_chunk_url(u).chunk_id), b, d, r) for u, b, d, r in batch]

        assert all(readable(c, moved(first)))
        kept = readable(c, moved(doomed))
        assert kept == [moment.endswith("index_commit")] * 20
        assert info(grid_config, svc)["chunks"] == 20 + sum(kept)
        after = chunks(svc, 5)
        c.put_batch(after)  # the pack goes on after the dead batch's bytes
        assert all(readable(c, after)) and all(readable(c, moved(first)))
    finally:
        svc.stop()


def test_lost_index_is_rebuilt_from_the_packs(rawx: tuple[SpawnedService, Path], grid_config: GridConfig,
                                             tmp_path: Path) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    batch = chunks(svc, 30)
    c.put_batch(batch[:15])
    c.put_batch(batch[15:])
    svc.stop()
    for p in (vol / "packs").glob("index.db*"):
        p.unlink()
    with open(next((vol / "packs").glob("*.pack")), "ab") as f:
        f.write(b"GPK1\x00\x00\x01\x00{torn")  # a torn record at the tail is ignored
    svc = start(grid_config, vol, tmp_path / "run")
    try:
        moved = [(legacy_chunk_url(svc.addr, parse_chunk_url(u).chunk_id), b, d, r) for u, b, d, r in batch]
        assert all(readable(ChunkClient(grid_config.secret), moved))
        assert info(grid_config, svc)["chunks"] == 30
    finally:
        svc.stop()


def test_scrub_finds_a_flipped_byte_in_a_pack(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    c = ChunkClient(grid_config.secret)
    batch = chunks(svc, 10)
    c.put_batch(batch)
    pack = next((vol / "packs").glob("*.pack"))
    victim = batch[4][1]
    data = bytearray(pack.read_bytes())
    at = data.index(victim) + 1000
    data[at] ^= 0xFF
    pack.write_bytes(bytes(data))
    with pytest.raises(GridError):
        c.get(batch[4][0])
    headers = {"X-Grid-Secret": grid_config.secret}
    r = requests.post(f"{svc.url}/scrub", json={"rate": 0}, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    pass_id = r.json()["current"]["id"]

    def last() -> dict | None:
        got = requests.get(f"{svc.url}/scrub", headers=headers, timeout=10).json()["last"]
        return got if got and got["id"] == pass_id else None

    done = wait_for("the scrub pass", last, 30)
    assert [f["chunk_id"] for f in done["findings"]] == [parse_chunk_url(batch[4][0]).chunk_id]
    assert done["chunks"] == 10 and done["corrupt"] == 1
    assert all(readable(c, batch[:4] + batch[5:]))


# -- put_many on a whole grid ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    g = LocalGrid(tmp_path_factory.mktemp("batchgrid"))
    g.up(nodes=3, volumes=3)
    try:
        yield g
    finally:
        g.down()


def test_put_many_mixed_sizes_and_policies(grid: LocalGrid) -> None:
    client = GridClient(grid.config_path)
    client.create_bucket("mixed", exist_ok=True)
    items: list = [(f"small/{i}", os.urandom(i * 37)) for i in range(300)]
    items += [("big", os.urandom(5 << 20)), ("props", b"p" * 100, {"owner": "me"})]
    records = client.put_many("mixed", items)
    assert [r.key for r in records] == [i[0] for i in items]
    assert client.head("mixed", "props").properties == {"owner": "me"}
    for key, data, *_ in items:
        assert client.get("mixed", key) == data, key
    ec = [(f"ec/{i}", os.urandom(60_000 + i)) for i in range(20)]
    for r in client.put_many("mixed", ec, policy="EC63"):
        assert r.policy == "EC63" and len(r.metachunks[0].chunks) == 9 and not r.metachunks[0].missing
    for key, data in ec:
        assert client.get("mixed", key) == data
    assert client.head("mixed", "small/0").size == 0


def test_put_many_goes_around_a_dead_server_and_a_refused_commit_leaves_nothing(grid: LocalGrid) -> None:
    client = GridClient(grid.config_path)
    client.create_bucket("around", exist_ok=True)
    first = client.put_many("around", [(f"warm/{i}", os.urandom(4096)) for i in range(30)])
    victim = rawx_of(grid, first[0].metachunks[0].chunks[0].url)
    os.kill(victim.pid, signal.SIGKILL)
    try:
        items = [(f"k/{i}", os.urandom(4096)) for i in range(200)]
        records = client.put_many("around", items)
        for (key, data), rec in zip(items, records, strict=True):
            assert len(rec.metachunks[0].chunks) == 3, key
            assert client.get("around", key) == data
    finally:
        grid.restart(victim.name)
    packed_before = count_packed(grid)
    assert packed_before >= 3 * 230
    with pytest.raises(NoSuchContainer):
        client.put_many("no-such-bucket", [(f"x{i}", b"y" * 10) for i in range(5)], policy="THREECOPIES")
    assert count_packed(grid) == packed_before, "the chunks of a refused commit are deleted"


def count_packed(grid: LocalGrid) -> int:
    import sqlite3

    total = 0
    for db in grid.data.glob("node*/vol*/packs/index.db"):
        with sqlite3.connect(db) as conn:
            total += conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    return total



def test_a_delete_emptying_the_pack_does_not_unlink_it_under_a_batch_being_indexed(grid_config: GridConfig,
                                                                                   tmp_path: Path) -> None:
    """The last chunk of the pack in use is deleted while a batch, already fsynced into that pack, waits for its
    index commit: the pack must stay (unlinking it lost the batch's acknowledged chunks)."""
    import threading

    vol, points = tmp_path / "vol", tmp_path / "points"
    points.mkdir()
    svc = start(grid_config, vol, tmp_path / "run", points)
    try:
        c = ChunkClient(grid_config.secret)
        (lone,) = chunks(svc, 1)
        c.put_batch([lone])
        batch = chunks(svc, 10)
        arm(points, "rawx.batch_after_pack_fsync", "sleep 2")
        writer = threading.Thread(target=c.put_batch, args=(batch,))
        writer.start()
        wait_for("the batch to be fsynced into the pack", lambda: not (points / "rawx.batch_after_pack_fsync").exists())
        ChunkClient(grid_config.secret).delete(lone[0])  # the pack's only indexed chunk
        writer.join(30)
        assert all(readable(c, batch)), "chunks of an acknowledged batch are gone with their pack"
    finally:
        svc.stop()
