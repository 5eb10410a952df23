"""Grid core benchmark: large-object PUT/GET per policy, small objects, listing.

Runs against a fresh local grid (3 nodes x 3 volumes) unless ``--config`` names a
running one. Every figure is set beside a ceiling measured in the same run on the
same disk, because these machines are shared and noisy: compare ratios, not times.
Each measured phase also reports its CPU budget per kind of process (bench/cpubudget.py):
CPU-s per GB of user data for large objects, CPU-ms per object for small ones.

    .venv/bin/python bench/grid_bench.py [--size-mib 256] [--small 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from cpubudget import BudgetTable, CpuBudget, Phase, summary
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.coding.policies import get_policy

console = Console()
MiB = 1 << 20


# -- workers (run in child processes) ------------------------------------------------------


def _large_worker(args: tuple[str, str, str, int, int, Any]) -> tuple[float, float, float, float]:
    config, policy, key, size, seed, barrier = args
    client = GridClient(config)
    data = np.random.default_rng(seed).bytes(size)
    client.put("bench", f"warm/{key}", data[: 8 * MiB], policy=policy)  # connections, buffers
    barrier.wait()
    t0 = time.perf_counter()
    client.put("bench", key, data, policy=policy)
    t1 = time.perf_counter()
    barrier.wait()
    t2 = time.perf_counter()
    n = sum(p.nbytes for p in client.get_stream("bench", key))
    t3 = time.perf_counter()
    assert n == size
    return t0, t1, t2, t3


SMALL_THREADS = 16  # puts in flight per process, as any bulk ingest of small files has


def _small_phases(args: tuple[str, int, int, Any], batched: bool) -> tuple[float, float, float, float]:
    """4 KiB PUTs (``put`` from SMALL_THREADS threads, or one ``put_many``: 256 objects per request per
    server and per directory commit), then the same threaded GETs; the four times around them."""
    config, count, seed, barrier = args
    client = GridClient(config)
    payload = os.urandom(4096)
    tag = "b" if batched else "p"
    client.put("small", f"warm-{tag}{seed}", payload)
    keys = [f"{tag}{seed}/{i:06d}" for i in range(count)]
    with ThreadPoolExecutor(SMALL_THREADS) as pool:
        barrier.wait()
        t0 = time.perf_counter()
        if batched:
            client.put_many("small", [(k, payload) for k in keys])
        else:
            list(pool.map(lambda k: client.put("small", k, payload), keys))
        t1 = time.perf_counter()
        barrier.wait()
        t2 = time.perf_counter()
        list(pool.map(lambda k: client.get("small", k), keys))
        t3 = time.perf_counter()
    return t0, t1, t2, t3


def _small_worker(args: tuple[str, int, int, Any]) -> tuple[float, float, float, float]:
    return _small_phases(args, batched=False)


def _batch_worker(args: tuple[str, int, int, Any]) -> tuple[float, float, float, float]:
    return _small_phases(args, batched=True)


def run_parallel(fn: Any, jobs: list[tuple], budget: CpuBudget) -> tuple[list[tuple[float, float, float, float]],
                                                                         Phase, Phase]:
    """Run the workers; the CPU budget of their PUT phase and of their GET phase. This process joins the
    workers' barriers, so that its snapshots fall between the warm-up, the PUTs and the GETs."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(len(jobs) + 1)
    with ctx.Pool(len(jobs)) as pool:
        pending = pool.map_async(fn, [(*job, barrier) for job in jobs])
        try:
            barrier.wait(timeout=1800)  # warmed up
            budget.start()
            barrier.wait(timeout=1800)  # every PUT done
        except threading.BrokenBarrierError:
            pending.get()  # a worker failed: its exception says why
            raise
        put = budget.stop()
        budget.start()
        times = pending.get()
        return times, put, budget.stop()


def spans(times: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Wall time of the PUT phase and of the GET phase across all processes."""
    put = max(t[1] for t in times) - min(t[0] for t in times)
    get = max(t[3] for t in times) - min(t[2] for t in times)
    return put, get


# -- ceilings -----------------------------------------------------------------------------


def disk_ceiling(folder: Path, nbytes: int) -> tuple[float, float]:
    """MB/s of a plain loop writing nbytes in 1 MiB blocks with fsync, then reading them back."""
    block = np.random.default_rng(0).bytes(MiB)
    path = folder / "ceiling.bin"
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for _ in range(nbytes // MiB):
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
    t1 = time.perf_counter()
    buf = bytearray(MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    t2 = time.perf_counter()
    path.unlink()
    return nbytes / (t1 - t0) / 1e6, nbytes / (t2 - t1) / 1e6


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", help="a running grid's grid.toml (default: start a fresh one)")
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--small", type=int, default=2000, help="4 KiB objects per process")
    p.add_argument("--policies", default="SINGLE,THREECOPIES,EC42,EC63")
    p.add_argument("--procs", default="1,2")
    p.add_argument("--json", default="bench/results/grid_bench.json")
    args = p.parse_args()

    tmp = None
    grid = None
    if args.config:
        config = args.config
    else:
        tmp = tempfile.TemporaryDirectory(prefix="gridbench-", dir=os.environ.get("GRID_BENCH_DIR"))
        grid = LocalGrid(tmp.name)
        grid.up(nodes=3, volumes=3)
        config = str(grid.config_path)
    folder = Path(config).parent
    budget = CpuBudget(grid or LocalGrid(folder))
    cpu = BudgetTable()
    results: dict[str, Any] = {"size_mib": args.size_mib, "large": [], "small": {}, "ceiling": {}}
    try:
        client = GridClient(config)
        client.create_bucket("bench", exist_ok=True)
        client.create_bucket("small", exist_ok=True)
        size = args.size_mib * MiB
        table = Table(title=f"large objects ({args.size_mib} MiB each), MB/s of user data")
        for col in ("policy", "procs", "PUT", "GET", "PUT / ceiling", "ceiling W (x overhead)", "ceiling R",
                    "CPU PUT s/GB", "CPU GET s/GB"):
            table.add_column(col, justify="right")
        for policy in args.policies.split(","):
            overhead = get_policy(policy).overhead
            for procs in (int(x) for x in args.procs.split(",")):
                jobs = [(config, policy, f"{policy}-{procs}-{i}", size, i) for i in range(procs)]
                os.sync()  # start each phase with no writeback left over from the one before
                times, put_cpu, get_cpu = run_parallel(_large_worker, jobs, budget)
                put_s, get_s = spans(times)
                total = size * procs
                # The ceiling writes what the grid had to write: user bytes x the policy's overhead.
                os.sync()
                cw, cr = disk_ceiling(folder, int(total * overhead))
                row = {
                    "policy": policy, "procs": procs, "put_mbs": total / put_s / 1e6, "get_mbs": total / get_s / 1e6,
                    "ceiling_write_mbs_user": cw / overhead, "ceiling_read_mbs": cr,
                }
                row["put_vs_ceiling"] = row["put_mbs"] / row["ceiling_write_mbs_user"]
                row["cpu"] = {"put": cpu.add(f"{policy} x{procs} PUT", put_cpu, nbytes=total),
                              "get": cpu.add(f"{policy} x{procs} GET", get_cpu, nbytes=total)}
                results["large"].append(row)
                table.add_row(policy, str(procs), f"{row['put_mbs']:.0f}", f"{row['get_mbs']:.0f}",
                              f"{row['put_vs_ceiling']:.0%}", f"{row['ceiling_write_mbs_user']:.0f}", f"{cr:.0f}",
                              f"{row['cpu']['put']['total']:.2f}", f"{row['cpu']['get']['total']:.2f}")
                for i in range(procs):
                    client.delete("bench", f"{policy}-{procs}-{i}")
        console.print(table)

        times, put_cpu, get_cpu = run_parallel(_small_worker, [(config, args.small, i) for i in range(2)], budget)
        put_s, get_s = spans(times)
        n = args.small * 2
        t0 = time.perf_counter()
        pages, token = 0, ""
        listed = 0
        while True:
            page = client.list("small", token=token, max_keys=1000)
            pages += 1
            listed += len(page.objects)
            if not page.truncated:
                break
            token = page.next_token
        list_s = time.perf_counter() - t0
        results["small"] = {
            "objects": n, "put_per_s": n / put_s, "get_per_s": n / get_s,
            "list_pages_per_s": pages / list_s, "listed": listed,
            "cpu": {"put": cpu.add("4 KiB PUT", put_cpu, objects=n), "get": cpu.add("4 KiB GET", get_cpu, objects=n)},
        }
        small = Table(title=f"small objects (4 KiB), 2 client processes x {SMALL_THREADS} threads")
        for col in ("PUT/s", "GET/s", "LIST pages of 1,000/s", "CPU PUT", "CPU GET"):
            small.add_column(col, justify="right")
        small.add_row(f"{n / put_s:.0f}", f"{n / get_s:.0f}", f"{pages / list_s:.1f}",
                      summary(results["small"]["cpu"]["put"]), summary(results["small"]["cpu"]["get"]))
        console.print(small)
        if hasattr(GridClient, "put_many"):  # the batch API (absent from older trees this harness may measure)
            times, put_cpu, get_cpu = run_parallel(_batch_worker, [(config, args.small, i) for i in range(2)],
                                                   budget)
            put_s, get_s = spans(times)
            results["small_batch"] = {
                "objects": n, "put_per_s": n / put_s, "get_per_s": n / get_s,
                "cpu": {"put": cpu.add("4 KiB put_many", put_cpu, objects=n),
                        "get": cpu.add("4 KiB GET (batched)", get_cpu, objects=n)},
            }
            console.print(f"put_many, 2 client processes: {n / put_s:.0f} objects/s, "
                          f"{summary(results['small_batch']['cpu']['put'])}; GET {n / get_s:.0f}/s")
        cpu.print()
        lat = []
        for i in range(50):
            t = time.perf_counter()
            client.put("small", f"lat/{i}", b"x" * 4096)
            lat.append(time.perf_counter() - t)
        results["small"]["put_latency_ms_median"] = statistics.median(lat) * 1e3
    finally:
        if grid is not None:
            grid.down()
        if tmp is not None:
            tmp.cleanup()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    console.print(f"results written to {out}")


if __name__ == "__main__":
    sys.exit(main())
