"""The scrubber of a storage server, as a real process: it finds corrupt chunks (data and parity, a
flipped byte anywhere, a cut or grown file, lost metadata, hard links), touches none of them, keeps
to its rate, resumes a pass after a SIGKILL, and in a whole grid finds missing chunks through the
reverse index, whose events get every finding repaired with no operator."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import xxhash

from gridfs.cli.local import LocalGrid
from gridfs.client.grid import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.conscience.client import ConscienceClient
from gridfs.directory.model import ChunkInfo
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import ChunkClient, legacy_chunk_url, parse_chunk_url
from tests.conftest import rawx_of, run_grid_cli, volume, wait_for

MiB = 1 << 20


def cid(first: str, n: int) -> str:
    """A chunk id that sorts where the test wants it (the scrubber walks ids in order)."""
    return (first + f"{n:X}").ljust(64, "0")


def start_rawx(cfg: GridConfig, vol: Path, run: Path) -> SpawnedService:
    """A storage server keeping every chunk in a file of its own, as these tests damage files (packed
    chunks: tests/test_batch.py)."""
    return spawn_service("gridfs.storage", ["--config", str(cfg.path), "--volume", str(vol),
                                            "--location", "s.r.h.v", "--pack-below", "0"], run, "rawx")


@pytest.fixture
def rawx(grid_config: GridConfig, tmp_path: Path) -> Iterator[tuple[SpawnedService, Path]]:
    vol = tmp_path / "vol"
    svc = start_rawx(grid_config, vol, tmp_path / "run")
    yield svc, vol
    svc.stop()


def put(cfg: GridConfig, svc: SpawnedService, chunk_id: str, data: bytes, **ref: str) -> Path:
    headers = {f"X-Grid-Content-{k.capitalize()}": v for k, v in ref.items()}
    ChunkClient(cfg.secret).put(legacy_chunk_url(svc.addr, chunk_id), data, chunk_hash=xxhash.xxh3_64_hexdigest(data),
                                headers=headers)
    args = svc.process.args
    return Path(args[args.index("--volume") + 1]) / chunk_id[:3] / chunk_id


def scrub(cfg: GridConfig, svc: SpawnedService, body: Any = None, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{svc.url}/scrub", headers={"X-Grid-Secret": cfg.secret}, timeout=10,
                            **({} if body is None else {"json": body}))


def finished(cfg: GridConfig, svc: SpawnedService, pass_id: str, timeout: float = 30.0) -> dict:
    """The record of pass ``pass_id`` once it is complete."""
    def done() -> dict | None:
        last = scrub(cfg, svc, method="GET").json()["last"]
        return last if last and last["id"] == pass_id else None
    return wait_for(f"scrub pass {pass_id}", done, timeout, every=0.1)


def snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int, int]]:
    """Bytes, mtime and inode change time of files: the scrubber must change none of them."""
    out = {}
    for p in paths:
        st = p.stat()
        out[p] = (p.read_bytes(), st.st_mtime_ns, st.st_ctime_ns)
    return out


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_scrub_finds_every_corruption_and_changes_nothing(rawx: tuple[SpawnedService, Path],
                                                         grid_config: GridConfig) -> None:
    svc, vol = rawx
    cfg = grid_config
    ref = {"container": "acct/b", "path": "obj", "version": "7", "id": "C0FFEE", "policy": "EC63"}
    sound = {cid("0", i): os.urandom(MiB + i) for i in range(4)}
    paths = [put(cfg, svc, k, v, **ref) for k, v in sound.items()]
    paths.append(put(cfg, svc, cid("1", 0), b""))  # an empty chunk is sound too
    late = put(cfg, svc, cid("2", 0), os.urandom(3 * MiB + 5), **ref)  # flipped in its last window
    cut = put(cfg, svc, cid("3", 0), os.urandom(MiB + MiB // 2))
    grown = put(cfg, svc, cid("4", 0), os.urandom(1000))
    bare = put(cfg, svc, cid("5", 0), os.urandom(2000))
    linked = put(cfg, svc, cid("6", 0), os.urandom(2 * MiB))
    ChunkClient(cfg.secret).link(legacy_chunk_url(svc.addr, cid("6", 0)), cid("7", 0), container="acct/b", path="copy")
    flip(late, 3 * MiB + 2)
    os.truncate(cut, MiB)
    with open(grown, "ab") as f:
        f.write(b"x")
    os.removexattr(bare, "user.grid.blocks")
    flip(linked, 10)
    files = [p for p in vol.glob("*/*") if p.is_file()]
    before = snapshot(files)

    r = scrub(cfg, svc, {"rate": 0})
    assert r.status_code == 202, r.text
    last = finished(cfg, svc, r.json()["current"]["id"])

    found = {f["chunk_id"]: f["detail"] for f in last["findings"]}
    assert set(found) == {cid(c, 0) for c in "234567"}, found
    assert "checksum" in found[cid("2", 0)] and "size" in found[cid("3", 0)] and "size" in found[cid("4", 0)]
    assert "checksums are lost" in found[cid("5", 0)]
    assert last["corrupt"] == 6 and last["missing"] == 0
    assert last["chunks"] == 11
    assert last["missing_check"].startswith("skipped")  # this grid has no reverse index
    assert snapshot(files) == before  # nothing deleted, rewritten or even touched
    # No reverse index to take them: the findings are kept for it, on disk too.
    state = json.loads((vol / "scrub.json").read_text())
    assert {f["chunk_id"] for f in state["pending"]} == set(found)
    assert next(f for f in state["pending"] if f["chunk_id"] == cid("2", 0))["ref"] == {
        "container": "acct/b", "path": "obj", "version": "7", "content_id": "C0FFEE"}
    assert scrub(cfg, svc, method="GET").json()["pending"] == 6

    for bad in ({"rate": -1}, {"rate": "fast"}, {"rate": True}, {"rat": 1}, [1]):
        r = scrub(cfg, svc, bad)
        assert r.status_code == 400, (bad, r.text)
    assert requests.get(f"{svc.url}/scrub", timeout=5).status_code == 401


def test_scrub_keeps_its_rate_and_an_operator_can_lift_it(rawx: tuple[SpawnedService, Path],
                                                          grid_config: GridConfig) -> None:
    svc, _ = rawx
    cfg = grid_config
    total = 0
    for i in range(12):
        total += len(data := os.urandom(MiB))
        put(cfg, svc, cid("A", i), data)
    r = scrub(cfg, svc, {"rate": 1})
    assert r.status_code == 202
    pass_id = r.json()["current"]["id"]
    t0 = time.monotonic()
    time.sleep(2.0)
    current = scrub(cfg, svc, method="GET").json()["current"]
    elapsed = time.monotonic() - t0
    assert current["id"] == pass_id
    # 1 MB/s: what the elapsed time allows, plus the one second's bucket and one 4 MiB read ahead.
    assert 0 < current["bytes"] <= (elapsed + 1) * 1_000_000 + 4 * MiB
    assert current["bytes"] < total
    again = scrub(cfg, svc, {})  # asked again: the running pass answers, at its rate
    assert again.status_code == 200 and again.json()["current"]["id"] == pass_id
    assert again.json()["current"]["rate"] == 1
    lifted = scrub(cfg, svc, {"rate": 0})
    assert lifted.status_code == 200 and lifted.json()["current"]["rate"] == 0
    last = finished(cfg, svc, pass_id, timeout=10)
    assert last["bytes"] == total and last["chunks"] == 12 and last["corrupt"] == 0
    # Uncapped, the last 8+ MB took well under the 8 s the first rate would have needed.
    assert time.monotonic() - t0 < 2 + elapsed + 6


def test_a_pass_resumes_after_sigkill_without_counting_twice(grid_config: GridConfig, tmp_path: Path) -> None:
    cfg = grid_config
    vol, run = tmp_path / "vol", tmp_path / "run"
    svc = start_rawx(cfg, vol, run)
    try:
        for i in range(10):
            put(cfg, svc, cid("B", i), os.urandom(MiB))
        flip(vol / cid("B", 1)[:3] / cid("B", 1), 0)
        pass_id = scrub(cfg, svc, {"rate": 1}).json()["current"]["id"]

        def cursor() -> str:  # the progress saved on the volume (every few seconds)
            try:
                current = json.loads((vol / "scrub.json").read_text()).get("current") or {}
            except FileNotFoundError:
                return ""
            return current.get("cursor", "") if current.get("corrupt") else ""
        saved = wait_for("a saved cursor past the corrupt chunk", cursor, 20)
        os.kill(svc.process.pid, signal.SIGKILL)
        svc.process.wait()
        svc = start_rawx(cfg, vol, run)
        state = scrub(cfg, svc, method="GET").json()
        assert state["running"] and state["current"]["id"] == pass_id
        assert state["current"]["cursor"] >= saved
        assert scrub(cfg, svc, {"rate": 0}).status_code == 200
        last = finished(cfg, svc, pass_id)
        assert last["chunks"] == 10 and last["bytes"] == 10 * MiB
        assert last["corrupt"] == 1 and [f["chunk_id"] for f in last["findings"]] == [cid("B", 1)]
    finally:
        svc.stop()


def test_background_passes_keep_to_their_start_delay_and_period(grid_config: GridConfig, tmp_path: Path) -> None:
    cfg = grid_config
    cfg.extra["heal"] = {"scrub_rate": 20, "scrub_start": 1, "scrub_period": 4}
    cfg.save()
    vol, run = tmp_path / "vol", tmp_path / "run"
    t0 = time.time()
    svc = start_rawx(cfg, vol, run)
    try:
        for i in range(3):
            put(cfg, svc, cid("C", i), os.urandom(MiB))
        flip(vol / cid("C", 2)[:3] / cid("C", 2), MiB - 1)

        def last() -> dict | None:
            return scrub(cfg, svc, method="GET").json()["last"]
        first = wait_for("the first background pass", last, 10, every=0.1)
        assert first["trigger"] == "background" and first["rate"] == 20
        assert first["started"] >= t0 + 1  # not before scrub_start
        assert first["chunks"] == 3 and first["corrupt"] == 1
        second = wait_for("the second background pass", lambda: (x := last()) and x["id"] != first["id"] and x, 10,
                          every=0.1)
        assert second["started"] - first["started"] >= 4 - 0.05  # a pass starts every scrub_period
        assert second["corrupt"] == 1  # nothing repairs it here: found again
        svc.stop()
        svc = start_rawx(cfg, vol, run)  # the schedule survives a restart: no pass at once
        assert last()["id"] == second["id"]
        third = wait_for("a pass after the restart", lambda: (x := last()) and x["id"] != second["id"] and x, 10,
                         every=0.1)
        assert third["started"] - second["started"] >= 4 - 0.05
    finally:
        svc.stop()


# -- a whole grid: scrubber -> reverse index -> event agent -> repair ---------------------------------


@pytest.fixture
def heal_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    """3 nodes x 3 volumes with the reverse index, the agent's repair handler, and no background pass
    (the test asks for its passes); an indexed chunk found absent is checked again after 1 s, not 5."""
    grid = LocalGrid(tmp_path / "grid")
    grid.data.mkdir(parents=True)
    GridConfig(secret=secrets.token_hex(16), extra={"heal": {"scrub_rate": 0, "scrub_recheck": 1}}).save(
        grid.config_path)
    grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None)
    try:
        yield grid
    finally:
        grid.down()


def chunk_path(grid: LocalGrid, url: str) -> Path:
    chunk_id = parse_chunk_url(url).chunk_id
    return volume(rawx_of(grid, url)) / chunk_id[:3] / chunk_id


def chunk_ids(client: GridClient, key: str) -> dict[str, ChunkInfo]:
    return {parse_chunk_url(c.url).chunk_id: c
            for mc in client.head("scrub", key, chunks=True).metachunks for c in mc.chunks}


def scrub_grid(grid: LocalGrid) -> dict[str, dict]:
    """``grid scrub --now``, uncapped: per volume, its last pass."""
    out = run_grid_cli(grid.config_path, "scrub", "--now", "--rate", "0", "--json", "--timeout", "60", timeout=90)
    return {row["volume"]: row["scrub"]["last"] for row in json.loads(out.stdout)}


def test_flipped_bytes_and_a_lost_chunk_are_found_and_repaired_without_an_operator(heal_grid: LocalGrid) -> None:
    grid = heal_grid
    cfg = grid.config()
    blobs = {key: os.urandom(size) for key, size in
             [("data", 3 * MiB + 11), ("parity", 3 * MiB + 22), ("both", 2 * MiB + 33), ("gone", 2 * MiB + 44),
              ("copies", 300_000), ("clean", 2 * MiB + 55)]}
    with GridClient(cfg) as client:
        client.create_bucket("scrub", policy=cfg.default_policy)  # EC63, whatever the size
        for key, data in blobs.items():
            client.put("scrub", key, data, policy="THREECOPIES" if key == "copies" else None)
        before = {key: chunk_ids(client, key) for key in blobs}
        k = int(client.head("scrub", "data").chunk_method.split("k=")[1].split(",")[0])
        total = sum(len(c) for c in before.values())
        rdir = RdirClient.for_grid(cfg)
        wait_for("the reverse index to hold every chunk", lambda: sum(v["chunks"] for v in rdir.volumes()) == total)

        def pick(key: str, parity: bool) -> str:
            return next(i for i, c in sorted(before[key].items()) if (c.sub >= k) == parity)
        corrupt = {pick("data", False), pick("parity", True), pick("both", False), pick("both", True),
                   next(iter(before["copies"]))}
        for chunk_id in corrupt:
            key = next(key for key, ids in before.items() if chunk_id in ids)
            path = chunk_path(grid, before[key][chunk_id].url)
            flip(path, path.stat().st_size // 2)
        lost = pick("gone", False)
        chunk_path(grid, before["gone"][lost].url).unlink()

        t0 = time.monotonic()
        found = {f["chunk_id"]: f["kind"] for last in scrub_grid(grid).values() for f in last["findings"]}
        print(f"scrub of 9 volumes: {time.monotonic() - t0:.1f} s")
        assert found == {**dict.fromkeys(corrupt, "corrupt"), lost: "missing"}

        damaged = {key for key, ids in before.items() if set(ids) & (corrupt | {lost})}

        def repaired() -> bool:
            return all(not set(chunk_ids(client, key)) & (corrupt | {lost}) for key in damaged)
        wait_for("every damaged object to be repaired by the agent", repaired, 45, every=0.5)
        print(f"found and repaired: {time.monotonic() - t0:.1f} s")
        for key in blobs:
            assert client.get("scrub", key) == blobs[key], key
        assert chunk_ids(client, "clean") == before["clean"]  # only damaged objects were rewritten
        for key in damaged:  # and only their damaged chunks
            assert set(before[key]) - set(chunk_ids(client, key)) == set(before[key]) & (corrupt | {lost})

        # The repairs' garbage events delete the corrupt files and close the findings.
        wait_for("the corrupt chunk files to be deleted",
                 lambda: not any(chunk_path(grid, before[key][i].url).exists()
                                 for key in damaged for i in before[key] if i in corrupt), 30)
        wait_for("the reverse index to close every finding", lambda: sum(v["findings"] for v in rdir.volumes()) == 0)
        again = scrub_grid(grid)
        assert all(last["corrupt"] == 0 and last["missing"] == 0 and last["missing_check"] == "done"
                   for last in again.values()), again
        assert sum(last["chunks"] for last in again.values()) == total  # the lost one rebuilt, no corrupt one left

        def tags() -> list[dict]:
            rows = ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx")
            finished = {str(last["finished"]) for last in again.values()}
            return rows if all(r["tags"].get("scrub_last") in finished for r in rows) else []
        rows = wait_for("heartbeats to carry the last pass", tags, 10)
        assert {r["tags"]["scrub_findings"] for r in rows} == {"0"}
