"""Chunk files through the page cache or straight to the disk (O_DIRECT): `grid put` and `grid get` of
1 GiB, in one run.

Two local grids (3 nodes x 3 volumes) run side by side on the same disk: ``buffered``, whose storage
servers write chunk files through the page cache (``--buffered-writes``, the way of before), and
``direct``, the default. Rounds alternate between them, so the noise of these shared machines falls on
both alike; each round is `grid put` of the same 1 GiB file (EC63 with zfec, then EC63-ISAL) and `grid get`
of it to /dev/null, each a process of its own as a user runs them. Every round reports MB/s and the CPU
budget per kind of process (bench/cpubudget.py: the command line as the client), and the whole machine's
busy cores and system share from /proc/stat, which counts the kernel's own writeback threads too.

    flock /tmp/bench.lock .venv/bin/python bench/direct_bench.py [--rounds 3] [--size-mib 1024] [--json out.json]

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from cpubudget import CpuBudget
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid

console = Console()
MODES = {"buffered": ["--buffered-writes"], "direct": []}
POLICIES = ("EC63", "EC63-ISAL")


def machine() -> tuple[float, list[int]]:
    """(now, the cumulative CPU tick counters of /proc/stat's first line)."""
    with open("/proc/stat") as f:
        return time.perf_counter(), [int(x) for x in f.readline().split()[1:]]


def machine_since(start: tuple[float, list[int]]) -> dict[str, float]:
    """Busy cores (user, nice, system, irq, softirq, steal) and the system share since ``start``."""
    now, ticks = machine()
    d = [b - a for a, b in zip(start[1], ticks, strict=True)]
    wall = (now - start[0]) * 100  # ticks per second
    return {"cores_busy": round((d[0] + d[1] + d[2] + d[5] + d[6] + d[7]) / wall, 2),
            "cores_system": round((d[2] + d[5] + d[6]) / wall, 2), "cores_iowait": round(d[4] / wall, 2)}


def timed(grid: LocalGrid, nbytes: int, *args: str) -> dict[str, Any]:
    """Run ``grid ARGS`` against ``grid``: MB/s of ``nbytes``, its CPU budget, the machine's load."""
    cmd = [sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), *args]
    start = machine()
    with CpuBudget(grid).measure() as cpu:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
    per_gb = {k: round(v, 3) for k, v in cpu.per_gb(nbytes).items()}
    return {"mb_s": round(nbytes / seconds / 1e6, 1), "cpu_s_per_gb": per_gb, **machine_since(start)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--json", type=Path, default=Path("bench/results/direct_bench.json"))
    args = p.parse_args()
    nbytes = args.size_mib << 20
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {f"{op} {policy}": [] for policy in POLICIES for op in ("put", "get")} for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="direct-bench-") as tmp:
        src = Path(tmp) / "src.bin"
        src.write_bytes(np.random.default_rng(7).bytes(nbytes))
        grids = {}
        try:
            for mode, rawx_args in MODES.items():
                grids[mode] = LocalGrid(Path(tmp) / mode)
                grids[mode].up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None, rawx_args=rawx_args)
                subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grids[mode].config_path),
                                "mb", "bench"], check=True, capture_output=True)
            for r in range(args.rounds):
                for policy in POLICIES:
                    for mode, grid in grids.items():
                        key = f"bench/{policy}-{r}"
                        put = timed(grid, nbytes, "put", str(src), key, "--policy", policy)
                        get = timed(grid, nbytes, "get", key, "/dev/null")
                        rounds[mode][f"put {policy}"].append(put)
                        rounds[mode][f"get {policy}"].append(get)
                        console.print(f"round {r + 1} {policy:9} {mode:8}: put {put['mb_s']:6.0f} MB/s "
                                      f"{put['cpu_s_per_gb']['total']:.2f} CPU-s/GB, get {get['mb_s']:6.0f} MB/s "
                                      f"{get['cpu_s_per_gb']['total']:.2f} CPU-s/GB")
        finally:
            for grid in grids.values():
                grid.down()
    report(rounds, args)


def report(rounds: dict[str, dict[str, list[dict[str, Any]]]], args: argparse.Namespace) -> None:
    table = Table("what", *(f"{mode} MB/s" for mode in MODES), "direct / buffered",
                  *(f"{mode} CPU-s/GB (storage)" for mode in MODES),
                  title=f"grid put / get of {args.size_mib} MiB, medians of {args.rounds} alternated rounds")
    medians: dict[str, dict[str, Any]] = {}
    for what in rounds["direct"]:
        med = {}
        for mode in MODES:
            rows = rounds[mode][what]
            med[mode] = {"mb_s": statistics.median(x["mb_s"] for x in rows),
                         "cpu_s_per_gb": statistics.median(x["cpu_s_per_gb"]["total"] for x in rows),
                         "storage_cpu_s_per_gb": statistics.median(x["cpu_s_per_gb"]["storage"] for x in rows)}
        medians[what] = med
        table.add_row(what, *(f"{med[m]['mb_s']:.0f}" for m in MODES),
                      f"{med['direct']['mb_s'] / med['buffered']['mb_s']:.2f}",
                      *(f"{med[m]['cpu_s_per_gb']:.2f} ({med[m]['storage_cpu_s_per_gb']:.2f})" for m in MODES))
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size_mib": args.size_mib, "rounds": rounds, "medians": medians}, indent=1))
    console.print(f"results in {args.json}")


if __name__ == "__main__":
    main()
