"""Rebuild of a lost storage volume: by the rebuilder service on its own after the grace period,
and by ``grid rebuild`` killed in the middle and run again.

Real processes throughout (4 nodes x 3 volumes: EC63 needs 9 distinct volumes and a rebuilt
chunk must find one away from its stripe's 8 survivors). The chunk layouts read from the
directory before and after say what the rebuild touched.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridfs.cli.local import LocalGrid, LocalService
from gridfs.client import GridClient
from gridfs.common.failpoints import ENV as FAILPOINT_ENV
from gridfs.common.failpoints import arm
from gridfs.common.http import JsonClient
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import parse_chunk_url
from tests.conftest import run_grid_cli, volume, wait_for

BUCKET = "heal"
OBJECTS = 40
Layout = dict[str, dict[str, str]]  # key -> "metachunk.position" -> chunk URL


def start_grid(data: Path, heal: dict) -> LocalGrid:
    """A 4 x 3 grid whose ``[heal]`` settings are in place before the services start."""
    grid = LocalGrid(data)
    grid.up(nodes=4, volumes=3, s3_port=None, webhdfs_port=None, settings={"heal": heal})
    return grid


@pytest.fixture
def auto_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    grid = start_grid(tmp_path / "grid", {"rebuild_grace": 3.0, "rebuild_check": 0.5})
    try:
        yield grid
    finally:
        grid.down()


@pytest.fixture
def manual_grid(tmp_path: Path) -> Iterator[LocalGrid]:
    # The rebuilder service looks once at start, then not for an hour: the command line alone
    # runs (and resumes) the rebuild.
    grid = start_grid(tmp_path / "grid", {"rebuild_check": 3600.0})
    try:
        yield grid
    finally:
        grid.down()


def write_objects(client: GridClient, policy: str) -> dict[str, bytes]:
    client.create_bucket(BUCKET, policy=policy)
    rng = random.Random(11)
    objects = {f"obj-{i:03d}": rng.randbytes(rng.randint(100 << 10, 300 << 10)) for i in range(OBJECTS)}
    for key, data in objects.items():
        client.put(BUCKET, key, data)
    return objects


def layout(client: GridClient, keys: list[str]) -> Layout:
    out = {}
    for key in keys:
        info = client.head(BUCKET, key, chunks=True)
        assert not any(mc.missing for mc in info.metachunks), f"{key} was written short"
        out[key] = {f"{mc.pos}.{c.sub}": c.url for mc in info.metachunks for c in mc.chunks}
    return out


def service_id(svc: LocalService) -> str:
    return (volume(svc) / "service.id").read_text().strip()


def on_volume(before: Layout, sid: str) -> dict[str, set[str]]:
    """key -> positions whose chunk is on volume ``sid``."""
    out: dict[str, set[str]] = {}
    for key, chunks in before.items():
        held = {pos for pos, url in chunks.items() if parse_chunk_url(url).service == sid}
        if held:
            out[key] = held
    return out


def victim(grid: LocalGrid, client: GridClient, keys: list[str]) -> tuple[LocalService, str, Layout, dict]:
    """The storage server holding the most chunks, once the reverse index lists all of them."""
    before = layout(client, keys)
    rawx = {service_id(s): s for s in grid.services() if s.type == "rawx"}
    counts = {sid: sum(len(p) for p in on_volume(before, sid).values()) for sid in rawx}
    sid = max(counts, key=lambda s: counts[s])
    rdir = RdirClient.for_grid(grid.config())
    wait_for(f"the reverse index to list the {counts[sid]} chunks of {sid}",
             lambda: rdir.count(sid) == counts[sid], timeout=20)
    return rawx[sid], sid, before, on_volume(before, sid)


def check_rebuilt(client: GridClient, before: Layout, sid: str, held: dict[str, set[str]]) -> None:
    """Every chunk on ``sid`` moved elsewhere, away from its stripe; nothing else changed."""
    after = layout(client, list(before))
    for key in before:
        changed = {pos for pos in before[key] if before[key][pos] != after[key].get(pos)}
        assert set(after[key]) == set(before[key]), f"{key}: positions changed"
        assert changed == held.get(key, set()), f"{key}: rebuilt {changed}, had {held.get(key)} on {sid}"
        services = [parse_chunk_url(url).service for url in after[key].values()]
        assert sid not in services, f"{key} still has a chunk on {sid}"
        assert len(set(services)) == len(services), f"{key}: two chunks of one stripe on one volume"


def read_back(client: GridClient, objects: dict[str, bytes]) -> None:
    bad = [key for key, data in objects.items() if client.get(BUCKET, key) != data]
    assert not bad, f"{len(bad)} objects read back wrong: {bad[:5]}"


def test_rebuilder_rebuilds_a_silent_volume_then_three_more_can_die(auto_grid: LocalGrid) -> None:
    cfg = auto_grid.config()
    with GridClient(cfg) as client:
        objects = write_objects(client, cfg.default_policy)
        assert cfg.default_policy.startswith("EC63")
        svc, sid, before, held = victim(auto_grid, client, list(objects))
        assert 0 < len(held) < OBJECTS, "the victim should hold chunks of some objects, not all"
        os.kill(svc.pid, signal.SIGKILL)
        killed_at = time.time()

        rdir = RdirClient.for_grid(cfg)
        record = wait_for("the rebuilder to rebuild the lost volume",
                          lambda: (j := rdir.job(sid)) and j.get("state") != "running" and j, timeout=45)
        assert record["kind"] == "rebuild" and record["state"] == "done", record
        # Not before the grace period: a server restarting must not be rebuilt.
        assert record["started"] >= killed_at + 3.0 - 1.0, (record["started"] - killed_at)
        assert record["chunks_done"] == sum(len(p) for p in held.values())
        assert record["objects_touched"] == len(held)
        assert record["lost"] == 0 and record["objects_lost"] == []
        check_rebuilt(client, before, sid, held)
        assert rdir.count(sid) == 0

        # The garbage of the rebuild (the dead volume's chunks) is left, not retried forever.
        health = run_grid_cli(auto_grid.config_path, "health", "--json", check=False)
        report = json.loads(health.stdout)
        assert health.returncode == 0 and report["ok"], report
        assert any(sid in note for note in report["notes"]), report

        others = [s for s in auto_grid.services() if s.type == "rawx" and s.name != svc.name]
        for s in random.Random(5).sample(others, 3):
            os.kill(s.pid, signal.SIGKILL)
        read_back(client, objects)


def test_grid_rebuild_killed_mid_job_resumes_and_loses_nothing(manual_grid: LocalGrid, tmp_path: Path) -> None:
    cfg = manual_grid.config()
    with GridClient(cfg) as client:
        objects = write_objects(client, cfg.default_policy)
        svc, sid, before, held = victim(manual_grid, client, list(objects))
        total = sum(len(p) for p in held.values())
        os.kill(svc.pid, signal.SIGKILL)

        failpoints = tmp_path / "failpoints"
        failpoints.mkdir()
        # The first page is recorded, then the process dies: the worst moment, work done and unsaid.
        arm(failpoints, "heal.after_batch", "kill")
        crash = subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(manual_grid.config_path),
                                "rebuild", svc.name, "--batch", "5", "--json"], capture_output=True, timeout=60,
                               env={**os.environ, FAILPOINT_ENV: str(failpoints)})
        assert crash.returncode == -signal.SIGKILL, crash.stderr

        rdir = RdirClient.for_grid(cfg)
        crashed = rdir.job(sid)
        assert crashed["state"] == "running" and crashed["marker"], crashed
        assert 0 < crashed["chunks_done"] < total, crashed

        again = run_grid_cli(manual_grid.config_path, "rebuild", svc.name, "--batch", "5", "--json", check=False)
        assert again.returncode == 0, again.stderr
        record = json.loads(again.stdout)
        assert record["state"] == "done" and record["resumes"] == 1, record
        assert record["chunks_done"] == total and record["lost"] == 0, record
        check_rebuilt(client, before, sid, held)
        read_back(client, objects)

        # A rebuild run again once done has nothing left to do.
        third = json.loads(run_grid_cli(manual_grid.config_path, "rebuild", sid, "--json").stdout)
        assert third["chunks_done"] == 0 and third["state"] == "done", third
        agent = JsonClient(next(s.url for s in manual_grid.services() if s.name == "events"), cfg.secret)
        assert agent.call("GET", "/v1/status")["dead"] == 0
