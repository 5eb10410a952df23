"""grid:// through fsspec against local disk, in one run.

- pandas.read_parquet of a multi-file, multi-row-group dataset from grid:// vs the same files on local disk;
- 1,000 random 64 KiB ranges via cat_ranges vs one open-seek-read each through grid://;
- to_parquet of the dataset to grid:// vs to local disk;
- for each grid:// job, its CPU budget per kind of process (bench/cpubudget.py): CPU-s per GB of the
  dataset for reads and writes, CPU-ms per range for ranged reads.

    .venv/bin/python bench/fsspec_bench.py [--mib 1024] [--files 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cpubudget import BudgetTable, CpuBudget, Phase
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid
from gridfs.fs import GridFileSystem

console = Console()


def make_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(rows), "a": rng.random(rows), "b": rng.random(rows),
                         "c": rng.integers(0, 1 << 40, rows), "d": rng.normal(size=rows)})


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed_cpu(budget: CpuBudget, fn) -> tuple[float, Phase]:  # type: ignore[no-untyped-def]
    with budget.measure() as phase:
        seconds = timed(fn)
    return seconds, phase


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mib", type=int, default=1024, help="dataset size on disk")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--json", default="bench/results/fsspec_bench.json")
    args = p.parse_args()
    rows_per_file = args.mib * (1 << 20) // args.files // 40  # 5 incompressible 8-byte columns
    tmp = Path(tempfile.mkdtemp(prefix="fsbench-"))
    grid = LocalGrid(tmp / "grid")
    grid.up(nodes=3, volumes=3)
    try:
        budget, cpu = CpuBudget(grid), BudgetTable()
        fs = GridFileSystem(config=str(grid.config_path), skip_instance_cache=True)
        fs.makedirs("bench", exist_ok=True)
        opts = {"config": str(grid.config_path)}
        local = tmp / "local"
        local.mkdir()
        frames = [make_frame(rows_per_file, i) for i in range(args.files)]

        def write_local() -> None:
            for i, df in enumerate(frames):
                df.to_parquet(local / f"part-{i}.parquet", row_group_size=rows_per_file // 8)
            os.sync()

        def write_grid() -> None:
            for i, df in enumerate(frames):
                df.to_parquet(f"grid://bench/ds/part-{i}.parquet", row_group_size=rows_per_file // 8,
                              storage_options=opts)

        w_local = timed(write_local)
        w_grid, w_cpu = timed_cpu(budget, write_grid)
        nbytes = sum(f.stat().st_size for f in local.iterdir())
        r_local = timed(lambda: pd.read_parquet(local))
        r_grid, r_cpu = timed_cpu(budget, lambda: pd.read_parquet("grid://bench/ds/", storage_options=opts))

        blob = "bench/ds/part-0.parquet"
        size = fs.size(blob)
        rng = random.Random(1)
        starts = [rng.randrange(0, size - 65536) for _ in range(1000)]
        ranges_s, ranges_cpu = timed_cpu(budget, lambda: fs.cat_ranges([blob] * 1000, starts,
                                                                       [s + 65536 for s in starts]))

        def one_by_one() -> None:
            for s in starts:
                with fs.open(blob, "rb", block_size=65536, cache_type="none") as f:
                    f.seek(s)
                    f.read(65536)

        single_s, single_cpu = timed_cpu(budget, one_by_one)
        res = {
            "dataset_bytes": nbytes, "files": args.files,
            "read_local_mbs": nbytes / r_local / 1e6, "read_grid_mbs": nbytes / r_grid / 1e6,
            "write_local_mbs": nbytes / w_local / 1e6, "write_grid_mbs": nbytes / w_grid / 1e6,
            "cat_ranges_per_s": 1000 / ranges_s, "open_seek_read_per_s": 1000 / single_s,
            "cpu": {"to_parquet": cpu.add("to_parquet", w_cpu, nbytes=nbytes),
                    "read_parquet": cpu.add("read_parquet", r_cpu, nbytes=nbytes),
                    "cat_ranges": cpu.add("cat_ranges", ranges_cpu, objects=1000),
                    "open_seek_read": cpu.add("open-seek-read", single_cpu, objects=1000)},
        }
        res["read_ratio"] = res["read_grid_mbs"] / res["read_local_mbs"]
        res["ranges_speedup"] = res["cat_ranges_per_s"] / res["open_seek_read_per_s"]
        table = Table(title=f"grid:// vs local disk, {nbytes / 2**20:.0f} MiB in {args.files} Parquet files")
        for col in ("job", "grid://", "local / baseline", "ratio"):
            table.add_column(col, justify="right")
        table.add_row("read_parquet MB/s", f"{res['read_grid_mbs']:.0f}", f"{res['read_local_mbs']:.0f}",
                      f"{res['read_ratio']:.0%}")
        table.add_row("to_parquet MB/s", f"{res['write_grid_mbs']:.0f}", f"{res['write_local_mbs']:.0f}",
                      f"{res['write_grid_mbs'] / res['write_local_mbs']:.0%}")
        table.add_row("64 KiB ranges/s", f"{res['cat_ranges_per_s']:.0f} (cat_ranges)",
                      f"{res['open_seek_read_per_s']:.0f} (open-seek-read)", f"{res['ranges_speedup']:.1f}x")
        console.print(table)
        cpu.print()
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    finally:
        grid.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
