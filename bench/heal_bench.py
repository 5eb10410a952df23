"""Healing benchmark: rebuild rate of a lost volume, and what the reverse index and the scrubber
cost ingest.

Two local grids (3 nodes x 3 volumes, the default EC policy) run side by side on the same disk:
``plain`` with the reverse index and the background scrubber off (``[heal] index = false``,
``scrub_rate = 0``), ``healing`` with both on and the scrubber never idle (a new pass every second
at its default capped rate). Ingest rounds alternate between them, so noise on these shared
machines falls on both alike; the cost figure is the median over rounds of each round's ratio
(healing / plain, measured seconds apart), beside the medians of the rates themselves.

Then, in a third grid (4 nodes x 3 volumes, default settings) of large EC 6+3 objects only, the
write rate of that policy is measured in rounds, and after some of them a storage server is SIGKILLed
and rebuilt with ``grid rebuild`` (two in all). Rebuild rate = chunk bytes rebuilt per second of the
job (as its record counts them), set beside the write rate (user bytes per second) of the same grid,
policy and objects in the rounds just before it. Each rebuilt byte of a 6+3 stripe costs 6 bytes
read and 1 written, each written user byte 1.5 bytes written; here every server shares the same two
cores and one disk. So after each rebuild the disk's own O_DIRECT read rate is measured on the same file
system (``odirect_probe.direct_read_rate``), and the report sets the rebuild against that ceiling (read
rate / k) and gives the best rebuild / write ratio the disk would allow. Targets (issue 11): rebuild at
least 50 % of the write rate; ingest slowed by at most 5 %.

Every phase reports its CPU budget per kind of process (bench/cpubudget.py), the rounds of each grid
added up: CPU-s per GB for large objects, the write rounds and each rebuild (per GB rebuilt; `grid
rebuild` runs as the client), CPU-ms per object for small ones.

    .venv/bin/python bench/heal_bench.py [--rounds 7] [--large-mib 384] [--small 300] [--rebuild-only] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from cpubudget import BudgetTable, CpuBudget, Phase
from odirect_probe import direct_read_rate
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.coding.policies import get_policy

console = Console()
MiB = 1 << 20
LARGE = 8 * MiB
OBJECT = 48 * MiB  # the rebuild phase's objects: one whole EC 6+3 metachunk of 8 MiB chunks
SMALL = 16 << 10
SMALL_THREADS = 16


def start_grid(folder: Path, heal: dict[str, Any]) -> LocalGrid:
    grid = LocalGrid(folder)
    grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None, settings={"heal": heal})
    return grid


def ingest_large(client: GridClient, tag: str, total: int, payload: bytes) -> float:
    """User MB/s of ``total`` bytes written as 8 MiB objects, two in flight."""
    keys = [f"large/{tag}/{i}" for i in range(max(1, total // LARGE))]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: client.put("bench", k, payload), keys))
    return len(keys) * LARGE / (time.perf_counter() - t0) / 1e6


def ingest_small(client: GridClient, tag: str, count: int, payload: bytes) -> float:
    """Small objects per second, SMALL_THREADS in flight (the events per byte are highest here)."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(SMALL_THREADS) as pool:
        list(pool.map(lambda i: client.put("bench", f"small/{tag}/{i}", payload), range(count)))
    return count / (time.perf_counter() - t0)


def wait_index_settled(grid: LocalGrid, timeout: float = 300.0) -> None:
    """Until the event agent has drained the outboxes (so a rebuild sees every chunk indexed)."""
    from gridfs.common.http import JsonClient

    cfg = grid.config()
    agent = next(s for s in grid.services(cfg) if s.type == "events")
    http = JsonClient(agent.url, cfg.secret)
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        handled = http.call("GET", "/v1/status")["handled"]
        if handled == last:
            return
        last = handled
        time.sleep(2.0)


def rebuild(grid: LocalGrid, dead: set[str], workers: int | None = None) -> dict[str, Any]:
    """SIGKILL the live storage server holding the most chunks, then time ``grid rebuild`` of it."""
    from gridfs.rdir.client import RdirClient

    cfg = grid.config()
    rdir = RdirClient.for_grid(cfg)
    counts = {row["volume"]: row["chunks"] for row in rdir.volumes()}
    ids = {s.name: (Path(s.args[1]) / "service.id").read_text().strip() for s in grid.services(cfg) if s.type == "rawx"}
    victim = max((s for s in grid.services(cfg) if s.type == "rawx" and s.name not in dead),
                 key=lambda s: counts.get(ids[s.name], 0))
    dead.add(victim.name)
    volume_id = ids[victim.name]
    os.kill(victim.pid, signal.SIGKILL)
    # Reaped now, before the CPU budget's first look: a dead child's CPU moves into its parent's (this
    # process's, counted as the client) when it is reaped, and reaped mid-phase it made the storage
    # servers' figure fall to nothing and the client's jump.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(victim.pid, 0)
    t0 = time.perf_counter()
    with CpuBudget(grid).measure() as cpu:
        proc = subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path),
                               "rebuild", volume_id, "--json",
                               *(["--workers", str(workers)] if workers else [])], capture_output=True, text=True)
    command_seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"grid rebuild failed ({proc.returncode}): {proc.stderr[-2000:]}")
    job = rdir.job(volume_id) or {}
    # The job's own seconds leave out the command's start-up (imports, locking the volume).
    seconds = float(job.get("seconds") or command_seconds)
    return {"volume": volume_id, "chunks_indexed_before": counts.get(volume_id, 0), "seconds": round(seconds, 2),
            "command_seconds": round(command_seconds, 2), "chunks": job.get("chunks_done", 0),
            "bytes": job.get("bytes_done", 0), "objects_lost": job.get("lost", len(job.get("objects_lost", []))),
            "mb_s": job.get("bytes_done", 0) / seconds / 1e6 if seconds else 0.0, "cpu": cpu}


def rebuild_phase(folder: Path, rounds: int, mib: int, victims: int) -> dict[str, Any]:
    """The rebuild rate against the write rate of the same policy, in one grid: 4 nodes x 3 volumes
    (a rebuilt EC 6+3 stripe still finds 9 volumes after two losses), the default healing settings,
    ``rounds`` rounds of ``mib`` MiB written as 48 MiB objects (one whole metachunk each: 8 MiB chunks),
    a storage server killed and rebuilt after some of them. Each rebuild is set beside the write rounds
    just before it (these machines are shared: load moves within minutes), and the figure is the mean of
    those paired ratios."""
    folder.mkdir(parents=True)
    grid = LocalGrid(folder)
    grid.up(nodes=4, volumes=3, s3_port=None, webhdfs_port=None)
    try:
        client = GridClient(grid.config_path)
        client.create_bucket("rebuild")
        payload = np.random.default_rng(12).bytes(OBJECT)
        writes, budget, write_cpu = [], CpuBudget(grid), Phase()
        # Rounds before each rebuild: the first one gets the rest (its volume must hold enough to measure).
        split = [rounds // victims] * victims
        split[0] += rounds - sum(split)
        dead: set[str] = set()
        rebuilds, ratios = [], []
        for v, count in enumerate(split):
            before = []
            for r in range(count):
                keys = [f"v{v}r{r}/{i}" for i in range(max(1, mib * MiB // OBJECT))]
                with budget.measure() as cpu:
                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(2) as pool:
                        list(pool.map(lambda k: client.put("rebuild", k, payload), keys))
                    before.append(len(keys) * OBJECT / (time.perf_counter() - t0) / 1e6)
                write_cpu += cpu
            writes += before
            wait_index_settled(grid)
            rebuilds.append(rebuild(grid, dead))
            ratios.append(rebuilds[-1]["mb_s"] / statistics.median(before))
            # The disk's own read rate, measured seconds after the rebuild on the same file system: every
            # rebuilt byte of a k+m stripe needs k bytes read from it, so no rebuild can beat rate / k here.
            rebuilds[-1]["disk_read_mb_s"] = direct_read_rate(folder)
            console.print(f"rebuild {v + 1}: {rebuilds[-1]['mb_s']:.0f} MB/s against writes of "
                          f"{', '.join(f'{w:.0f}' for w in before)} MB/s just before: {ratios[-1]:.1%}; "
                          f"the disk reads {rebuilds[-1]['disk_read_mb_s']:.0f} MB/s")
        policy = client.head("rebuild", "v0r0/0").policy
        k = get_policy(policy).k
    finally:
        grid.down()
    write = statistics.median(writes)
    rate = statistics.median(r["mb_s"] for r in rebuilds)
    for r, before_ratio in zip(rebuilds, ratios, strict=True):
        r["ceiling_mb_s"] = r["disk_read_mb_s"] / k
        r["of_ceiling"] = r["mb_s"] / r["ceiling_mb_s"]
        # The ratio this disk would allow at the same write rate, were the rebuild free of any other cost.
        r["best_ratio_disk_allows"] = before_ratio / r["of_ceiling"]
    return {"k": k, "policy": policy, "write_mb_s_rounds": writes, "write_mb_s": write, "rebuilds": rebuilds,
            "write_cpu": write_cpu, "write_bytes": rounds * max(1, mib * MiB // OBJECT) * OBJECT,
            "rebuild_mb_s": rate, "paired_ratios": ratios, "rebuild_to_write": statistics.mean(ratios)}


def paired_ratio(figures: dict[str, dict[str, list[float]]], what: str) -> float:
    """Median over rounds of healing / plain: each pair was measured seconds apart."""
    return statistics.median(h / p for h, p in zip(figures["healing"][what], figures["plain"][what], strict=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--large-mib", type=int, default=384, help="user MiB written per large round")
    p.add_argument("--small", type=int, default=300, help="small objects per small round")
    p.add_argument("--rebuild-rounds", type=int, default=5, help="write rounds of the rebuild phase")
    p.add_argument("--rebuild-mib", type=int, default=768,
                   help="user MiB per write round of the rebuild phase (each lost volume then holds enough to "
                        "time a rebuild past its start-up: 40 to 80 chunks)")
    p.add_argument("--no-scrub", action="store_true", help="healing grid: the index only (to tell the costs apart)")
    p.add_argument("--no-index", action="store_true", help="healing grid: the scrubber only")
    p.add_argument("--skip-rebuild", action="store_true")
    p.add_argument("--rebuild-only", action="store_true", help="the rebuild phase alone")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    healing: dict[str, Any] = {"index": not args.no_index, "scrub_start": 0, "scrub_period": 1}
    if args.no_scrub:
        healing["scrub_rate"] = 0
    figures: dict[str, dict[str, list[float]]] = {"plain": {"large_mb_s": [], "small_per_s": []},
                                                 "healing": {"large_mb_s": [], "small_per_s": []}}
    spent = {name: {"large": Phase(), "small": Phase()} for name in figures}
    with tempfile.TemporaryDirectory(prefix="heal-bench-") as tmp:
        if not args.rebuild_only:
            ingest_phase(args, Path(tmp), healing, figures, spent)
        rebuilt = None if args.skip_rebuild else rebuild_phase(Path(tmp) / "rebuild", args.rebuild_rounds,
                                                               args.rebuild_mib, victims=2)
    report(args, figures, spent, rebuilt)


def ingest_phase(args: argparse.Namespace, tmp: Path, healing: dict[str, Any],
                 figures: dict[str, dict[str, list[float]]], spent: dict[str, dict[str, Phase]]) -> None:
    """Ingest rounds alternated between a grid with the index and scrubber off and one with them on."""
    rng = np.random.default_rng(11)
    large, small = rng.bytes(LARGE), rng.bytes(SMALL)
    grids = {
        "plain": start_grid(tmp / "plain", {"index": False, "scrub_rate": 0}),
        "healing": start_grid(tmp / "healing", healing),
    }
    try:
        clients = {name: GridClient(g.config_path) for name, g in grids.items()}
        for client in clients.values():
            # A whole unmeasured round first: connections, buffers, the scrubber's first listing.
            client.create_bucket("bench")
            ingest_large(client, "warm", args.large_mib * MiB, large)
            ingest_small(client, "warm", args.small, small)
        budgets = {name: CpuBudget(g) for name, g in grids.items()}
        for r in range(args.rounds):
            order = list(grids) if r % 2 == 0 else list(reversed(grids))
            for name in order:
                with budgets[name].measure() as cpu:
                    figures[name]["large_mb_s"].append(ingest_large(clients[name], f"r{r}",
                                                                    args.large_mib * MiB, large))
                spent[name]["large"] += cpu
            for name in order:
                with budgets[name].measure() as cpu:
                    figures[name]["small_per_s"].append(ingest_small(clients[name], f"r{r}", args.small, small))
                spent[name]["small"] += cpu
            console.print(f"round {r + 1}: " + ", ".join(
                f"{n} {f['large_mb_s'][-1]:.0f} MB/s {f['small_per_s'][-1]:.0f} obj/s" for n, f in figures.items()))
    finally:
        for g in grids.values():
            g.down()


def report(args: argparse.Namespace, figures: dict[str, dict[str, list[float]]],
           spent: dict[str, dict[str, Phase]], rebuilt: dict[str, Any] | None) -> None:
    ingested = bool(figures["plain"]["large_mb_s"])
    med = {n: {k: statistics.median(v) for k, v in f.items() if v} for n, f in figures.items()}
    budget = BudgetTable()
    for name, phases in spent.items() if ingested else ():
        budget.add(f"{name} 8 MiB", phases["large"], nbytes=args.rounds * max(1, args.large_mib * MiB // LARGE) * LARGE)
    for name, phases in spent.items() if ingested else ():
        budget.add(f"{name} 16 KiB", phases["small"], objects=args.rounds * args.small)
    if rebuilt is not None:
        budget.add(f"write {OBJECT // MiB} MiB", rebuilt.pop("write_cpu"), nbytes=rebuilt["write_bytes"])
        for i, r in enumerate(rebuilt["rebuilds"], 1):
            r["cpu"] = budget.add(f"rebuild {i}", r["cpu"], nbytes=r["bytes"] or None)
    result = {
        "rounds": figures, "medians": med,
        "ingest_ratio_large": paired_ratio(figures, "large_mb_s") if ingested else None,
        "ingest_ratio_small": paired_ratio(figures, "small_per_s") if ingested else None,
        "rebuild": rebuilt, "load_at_end": os.getloadavg()[0], "cpu": budget.json(),
    }
    table = Table("figure", "value", "target", title="healing benchmark (medians; ratios paired per round)")
    if ingested:
        table.add_row("ingest 8 MiB objects, index + scrub on / off",
                      f"{result['ingest_ratio_large']:.1%} ({med['healing']['large_mb_s']:.0f} / "
                      f"{med['plain']['large_mb_s']:.0f} MB/s)", ">= 95 %")
        table.add_row("ingest 16 KiB objects, index + scrub on / off",
                      f"{result['ingest_ratio_small']:.1%} ({med['healing']['small_per_s']:.0f} / "
                      f"{med['plain']['small_per_s']:.0f} per s)", ">= 95 %")
    if rebuilt is not None:
        for r in rebuilt["rebuilds"]:
            table.add_row(f"rebuild of a lost volume ({rebuilt['policy']})",
                          f"{r['mb_s']:.0f} MB/s ({r['chunks']} chunks, {r['bytes'] / 1e6:.0f} MB in "
                          f"{r['seconds']:.1f} s, {r['objects_lost']} objects lost)", "")
        table.add_row(f"write rate, same grid and policy, {OBJECT // MiB} MiB objects",
                      f"{rebuilt['write_mb_s']:.0f} MB/s", "")
        table.add_row("rebuild / write rate (mean of each rebuild / the writes just before it)",
                      f"{rebuilt['rebuild_to_write']:.1%} ("
                      + ", ".join(f"{r:.1%}" for r in rebuilt["paired_ratios"]) + ")", ">= 50 %")
        for i, r in enumerate(rebuilt["rebuilds"], 1):
            table.add_row(f"rebuild {i} / what the disk allows (its O_DIRECT read rate / k={rebuilt['k']})",
                          f"{r['of_ceiling']:.0%} ({r['mb_s']:.0f} / {r['ceiling_mb_s']:.0f} MB/s; the disk read "
                          f"{r['disk_read_mb_s']:.0f} MB/s)", "")
            table.add_row(f"rebuild {i}: best rebuild / write ratio this disk allows",
                          f"{r['best_ratio_disk_allows']:.1%}", "")
    console.print(table)
    budget.print()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
