"""HDD profile benchmark (issue 12 item 5): the I/O pattern per GB ingested, and ingest beside a slow volume.

1. I/O pattern: on a fresh 3 x 3 grid, large objects (64 MiB, the grid's EC 6+3 policy) and small ones
   (4 KiB, three copies) are put; the storage servers' own counters (bench/iopattern.py) give fsyncs,
   directory fsyncs, files, write calls and their sizes per GB ingested and per object, with the CPU budget.
2. Slow volume: a 4 x 3 grid plus one more volume on node 1 throttled to ``--throttle`` MB/s (a busy disk).
   Once its cost per MiB has reached the conscience, rounds alternate: the slow volume locked (the
   baseline: what the other twelve volumes absorb) and unlocked (placement has to steer around it by
   score). The figure is the ratio of ingest rates, unlocked / locked, per round and its median; the
   target is at least 0.85. The slow volume's share of new chunks is reported beside its fair share.

    flock /tmp/bench.lock .venv/bin/python bench/hdd_bench.py [--large 4] [--small 2000] [--rounds 3]

Writes bench/results/hdd_bench.json.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import iopattern
from cpubudget import BudgetTable, CpuBudget
from rich.console import Console

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.service import SpawnedService, spawn_service
from gridfs.conscience.client import ConscienceClient

console = Console()
MiB = 1 << 20
RESULTS = Path(__file__).parent / "results" / "hdd_bench.json"


def put_all(client: GridClient, bucket: str, keys: list[str], data: bytes, threads: int,
            policy: str | None = None) -> float:
    """Seconds to put ``data`` under every key with ``threads`` puts in flight."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: client.put(bucket, k, data, policy=policy), keys))
    return time.perf_counter() - t0


def io_pattern(base: Path, large: int, small: int, budget_table: BudgetTable) -> dict[str, Any]:
    grid = LocalGrid(base / "pattern")
    cfg = grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None)
    try:
        client = GridClient(grid.config_path)
        client.create_bucket("hdd")
        budget = CpuBudget(grid)
        out: dict[str, Any] = {"policy_large": cfg.default_policy}
        for label, size, count, threads in (("large_64MiB", 64 * MiB, large, 2), ("small_4KiB", 4096, small, 16)):
            data = os.urandom(size)
            put_all(client, "hdd", [f"warm/{label}/{i}" for i in range(threads)], data, threads)
            before = iopattern.snapshot(cfg)
            with budget.measure() as phase:
                secs = put_all(client, "hdd", [f"{label}/{i}" for i in range(count)], data, threads)
            pattern = iopattern.per_gb(iopattern.delta(before, iopattern.snapshot(cfg)), size * count, count)
            pattern["put_seconds"] = round(secs, 3)
            pattern["cpu"] = budget_table.add(label, phase, nbytes=size * count if size > MiB else None,
                                              objects=None if size > MiB else count)
            out[label] = pattern
            console.print(f"{label}: {json.dumps({k: v for k, v in pattern.items() if k not in ('totals', 'cpu')})}")
        return out
    finally:
        grid.down()


def slow_volume(base: Path, rounds: int, objects: int, throttle: float) -> dict[str, Any]:
    grid = LocalGrid(base / "slow")
    cfg = grid.up(nodes=4, volumes=3, s3_port=None, webhdfs_port=None)
    slow: SpawnedService | None = None
    try:
        vol = grid.data / "node1" / "vol4"
        vol.mkdir(parents=True)
        slow = spawn_service("gridfs.storage", [
            "--config", str(grid.config_path), "--volume", str(vol), "--location", "site1.rack1.node1.vol4",
            "--throttle", str(throttle)], grid.run_dir, "rawx-slow")
        conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
        client = GridClient(grid.config_path)
        client.create_bucket("hdd")
        data = os.urandom(64 * MiB)
        policy = cfg.default_policy

        def entry() -> dict:
            return next(s for s in conscience.services("rawx") if s["addr"] == slow.addr)

        warm = 0
        deadline = time.monotonic() + 120
        while entry()["stats"].get("io_ms_per_mib", 0) <= 0 and time.monotonic() < deadline:
            put_all(client, "hdd", [f"warm/{warm}-{i}" for i in range(4)], data, 4, policy)
            warm += 1
        time.sleep(1.5)
        settled = entry()
        peers = sorted(s["score_put"] for s in conscience.services("rawx") if s["addr"] != slow.addr)
        console.print(f"slow volume settled: {settled['stats']['io_ms_per_mib']:.0f} ms/MiB, "
                      f"put score {settled['score_put']} (peers {peers})")
        rows = []
        for r in range(rounds):
            row: dict[str, Any] = {}
            for mode in ("locked", "unlocked"):
                (conscience.lock if mode == "locked" else conscience.unlock)(slow.addr)
                time.sleep(1.5)  # the client's cached service list follows within a second
                before = iopattern.info(cfg, slow.addr)["io"]
                secs = put_all(client, "hdd", [f"r{r}/{mode}/{i}" for i in range(objects)], data, 4, policy)
                got = iopattern.info(cfg, slow.addr)["io"]["files_created"] - before["files_created"]
                row[mode] = {"seconds": round(secs, 3), "mb_s": round(objects * len(data) / 1e6 / secs, 1),
                             "slow_chunks": got}
            row["ratio"] = round(row["unlocked"]["mb_s"] / row["locked"]["mb_s"], 3)
            rows.append(row)
            console.print(f"round {r}: {row}")
        stripes = objects * -(-len(data) // (6 * 8 * MiB))
        return {
            "grid": "4 nodes x 3 volumes + 1 throttled volume on node1", "policy": policy, "throttle_mb_s": throttle,
            "object_mib": 64, "objects_per_round": objects, "threads": 4,
            "baseline": "same grid, same round, slow volume locked (its share goes to the other 12)",
            "settled_ms_per_mib": settled["stats"].get("io_ms_per_mib", 0), "settled_score_put": settled["score_put"],
            "fair_chunks_per_round": round(stripes * 9 / 13, 1), "rounds": rows,
            "median_ratio": statistics.median(r["ratio"] for r in rows), "target_ratio": 0.85,
        }
    finally:
        if slow is not None:
            slow.stop()
        grid.down()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--large", type=int, default=4, help="64 MiB objects in the I/O-pattern phase")
    p.add_argument("--small", type=int, default=2000, help="4 KiB objects in the I/O-pattern phase")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--objects", type=int, default=16, help="64 MiB objects per slow-volume round and mode")
    p.add_argument("--throttle", type=float, default=2.0, help="MB/s of the slow volume")
    p.add_argument("--skip-pattern", action="store_true")
    args = p.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hdd-bench-"))
    budgets = BudgetTable("CPU budget, I/O-pattern phase")
    try:
        results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
        if not args.skip_pattern:
            results["io_pattern"] = io_pattern(base, args.large, args.small, budgets)
            budgets.print()
        results["slow_volume"] = slow_volume(base, args.rounds, args.objects, args.throttle)
        console.print(f"slow volume: median ingest ratio {results['slow_volume']['median_ratio']} (target >= 0.85)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
