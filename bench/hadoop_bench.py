"""grid:// through the Hadoop connector beside local disk, in one run.

On a fresh local grid (3 nodes x 3 volumes, the default policy):
- Spark (local[2], one JVM) writes a Parquet dataset of --mib MiB (id + 7 random doubles, 16 files, from a
  cached DataFrame so that generating it is not timed) to file:// (then `sync`: the grid fsyncs) and to
  grid://, and reads every column of it back (a sum per column, compared between the two);
- the Hadoop shell (`FsShell -put`, a JVM per command) copies a file of --mib MiB to grid:// and, as its
  baseline, to file://, beside the `grid put` command line.
Targets: grid:// at least 70 % of local disk for Spark reads, at least 50 % for writes.
Medians of --repeat rounds, the order alternating. Prints a table, writes bench/hadoop_results.json.
Each job also reports its CPU budget per kind of process over its rounds (bench/cpubudget.py): CPU-s per GB,
the client being the Spark JVM or the command line.
The machine is shared: compare the ratios, taken in the same run.

Run: `.venv/bin/python bench/hadoop_bench.py [--mib 1024] [--repeat 3]` (after `make connector`).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cpubudget import BudgetTable, CpuBudget, Phase
from rich.console import Console
from rich.table import Table

from gridfs.cli.hadoop import fsshell, grid_settings, spark_session, stop_spark, write_core_site
from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
COLUMNS = ["id", *(f"v{i}" for i in range(1, 8))]
TARGETS = {"spark_read": 0.70, "spark_write": 0.50}


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class Jobs:
    """Times each round of a job, and adds up its CPU budget over the rounds."""

    def __init__(self, grid: LocalGrid, names: list[str]) -> None:
        self.budget = CpuBudget(grid)
        self.times: dict[str, list[float]] = {name: [] for name in names}
        self.cpu: dict[str, Phase] = {name: Phase() for name in names}

    def run(self, name: str, fn: Callable[[], object]) -> None:
        with self.budget.measure() as phase:
            self.times[name].append(timed(fn))
        self.cpu[name] += phase

    def report(self, nbytes: int, table: BudgetTable) -> dict:
        return {**mb_per_s(nbytes, self.times),
                "cpu": {k: table.add(k, v, nbytes=nbytes * len(self.times[k])) for k, v in self.cpu.items()}}


def mb_per_s(nbytes: int, times: dict[str, list[float]]) -> dict:
    """Each job's MB/s over the median of its rounds, and every round's seconds (the machine is shared)."""
    return {**{k: round(nbytes / statistics.median(v) / 1e6, 1) for k, v in times.items()},
            "rounds_s": {k: [round(t, 2) for t in v] for k, v in times.items()}}


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} ... {cmd[-2:]} failed ({proc.returncode}): {proc.stderr[-3000:]}")


def delete_prefix(client: GridClient, bucket: str, prefix: str) -> None:
    for obj in list(client.iter_list(bucket, prefix=prefix)):
        client.delete(bucket, obj.key)


def bench_spark(grid: LocalGrid, client: GridClient, tmp: Path, mib: int, repeat: int, cpu: BudgetTable) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = spark_session(grid.config_path, app="hadoop_bench", memory="4g",
                          extra={"spark.sql.shuffle.partitions": "16"})
    try:
        rows = mib * MiB // (8 * len(COLUMNS))
        data = spark.range(0, rows, numPartitions=16).select(
            "id", *(F.rand(seed=i).alias(f"v{i}") for i in range(1, len(COLUMNS))))
        data.persist(StorageLevel.MEMORY_ONLY).count()
        targets = {"file": f"file://{tmp}/spark-ds", "grid": "grid://bench/spark-ds"}
        sums = {}
        jobs = Jobs(grid, [f"{op}_{where}" for op in ("write", "read") for where in targets])

        def clear(where: str) -> None:
            if where == "file":
                shutil.rmtree(tmp / "spark-ds", ignore_errors=True)
            else:
                delete_prefix(client, "bench", "spark-ds/")

        def write(where: str) -> None:
            data.write.parquet(targets[where])
            if where == "file":
                os.sync()

        def read(where: str) -> None:
            sums[where] = spark.read.parquet(targets[where]).agg(*(F.sum(c) for c in COLUMNS)).first()

        # Untimed: the JVM's first Parquet job on each side loads and compiles what the timed ones reuse.
        warm = spark.range(0, 10_000, numPartitions=2).select("id", F.rand().alias("v1"))
        for url in targets.values():
            warm.write.parquet(f"{url}-warm")
            spark.read.parquet(f"{url}-warm").agg(F.sum("v1")).first()
        for n in range(repeat):
            order = list(targets) if n % 2 == 0 else list(reversed(targets))
            for where in order:
                clear(where)
                jobs.run(f"write_{where}", lambda w=where: write(w))
            for where in order:
                jobs.run(f"read_{where}", lambda w=where: read(w))
            # Float sums may add up in another order: equal to the last digits, not to the bit.
            if not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(sums["file"], sums["grid"], strict=True)):
                raise SystemExit(f"grid:// read other values than file://: {sums}")
        size = sum(p.stat().st_size for p in (tmp / "spark-ds").glob("*.parquet"))
        return {"dataset_bytes": size, "files": 16, **jobs.report(size, cpu)}
    finally:
        stop_spark(spark)


def bench_put(grid: LocalGrid, client: GridClient, tmp: Path, mib: int, repeat: int, cpu: BudgetTable) -> dict:
    source = tmp / "put.bin"
    with open(source, "wb") as f:
        for _ in range(mib // 64):
            f.write(os.urandom(64 * MiB))
    conf = write_core_site(tmp / "hadoop-conf", grid_settings(grid.config_path))
    grid_cli = [sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path)]
    jobs = {
        "shell_put_grid": (fsshell(conf, "-put", str(source), "grid://bench/shell.bin"),
                           lambda: client.delete("bench", "shell.bin")),
        "shell_put_file": (fsshell(conf, "-put", str(source), f"file://{tmp}/shell-copy.bin"),
                           lambda: (tmp / "shell-copy.bin").unlink()),
        "grid_put": ([*grid_cli, "put", str(source), "bench/grid.bin"],
                     lambda: client.delete("bench", "grid.bin")),
    }
    timing = Jobs(grid, list(jobs))
    for n in range(repeat):
        for name in (list(jobs) if n % 2 == 0 else list(reversed(jobs))):
            cmd, clear = jobs[name]
            # The shell's file:// copy is synced like the grid's chunks are, inside the timing.
            timing.run(name, lambda c=cmd, nm=name: (run(c), nm.endswith("_file") and os.sync()))
            clear()
    return {"file_bytes": source.stat().st_size, **timing.report(source.stat().st_size, cpu)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=1024, help="size of the dataset and of the -put file")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=str(HERE / "hadoop_results.json"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hadoop-bench-"))
    grid = LocalGrid(tmp / "grid")
    cfg = grid.up(nodes=3, volumes=3)
    cpu = BudgetTable()
    try:
        with GridClient(grid.config_path) as client:
            client.create_bucket("bench")
            res = {"policy": cfg.default_policy, "load_before": os.getloadavg()[0],
                   "spark": bench_spark(grid, client, tmp, args.mib, args.repeat, cpu),
                   "put": bench_put(grid, client, tmp, args.mib, args.repeat, cpu)}
    finally:
        grid.down()
        shutil.rmtree(tmp, ignore_errors=True)
    s, put = res["spark"], res["put"]
    res["ratios"] = {"spark_read": s["read_grid"] / s["read_file"], "spark_write": s["write_grid"] / s["write_file"],
                     "shell_put_vs_grid_put": put["shell_put_grid"] / put["grid_put"],
                     "shell_put_vs_shell_file": put["shell_put_grid"] / put["shell_put_file"]}
    res["ratios"] = {k: round(v, 3) for k, v in res["ratios"].items()}
    table = Table(title=f"grid:// vs local disk through Hadoop, {s['dataset_bytes'] / MiB:.0f} MiB, "
                        f"{cfg.default_policy}")
    for col in ("job", "grid:// MB/s", "baseline MB/s", "ratio", "target"):
        table.add_column(col, justify="right")
    table.add_row("Spark write Parquet", f"{s['write_grid']:.0f}", f"{s['write_file']:.0f} (file://)",
                  f"{res['ratios']['spark_write']:.0%}", f"{TARGETS['spark_write']:.0%}")
    table.add_row("Spark read Parquet", f"{s['read_grid']:.0f}", f"{s['read_file']:.0f} (file://)",
                  f"{res['ratios']['spark_read']:.0%}", f"{TARGETS['spark_read']:.0%}")
    table.add_row("FsShell -put", f"{put['shell_put_grid']:.0f}", f"{put['grid_put']:.0f} (grid put)",
                  f"{res['ratios']['shell_put_vs_grid_put']:.0%}", "")
    table.add_row("FsShell -put", f"{put['shell_put_grid']:.0f}", f"{put['shell_put_file']:.0f} (file://)",
                  f"{res['ratios']['shell_put_vs_shell_file']:.0%}", "")
    Console().print(table)
    cpu.print()
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
