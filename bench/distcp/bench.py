"""grid-distcp benchmark: back up a synthetic lake with mpirun at several rank counts.

In one run, on one machine (so "per node" is the whole figure), it measures:
- a large-file lake (default 4 x 256 MiB) backed up with EC63 (zfec) and EC63-ISAL at 1, 2, 4 ranks;
- a small-file lake (default 10,000 x 64 KiB, the namespace's policy by size) at 1, 2, 4 ranks;
- the ceilings on the same disk: `cp -r` of each lake followed by `sync`, and the lake's bytes times the
  policy's overhead written with fsync (per file) by a plain Python loop;
- a single-process baseline: the `grid put` command line in a loop (a sample of the files).
Each grid-distcp run also reports its CPU budget per kind of process (bench/cpubudget.py; the client is
mpirun and its ranks): CPU-s per GB for the large-file lake, CPU-ms per file for the small one.
It writes JSON and a PNG plot of throughput against ranks.

Run: `.venv/bin/python bench/distcp/bench.py [--small-files 10000] [--large-files 4] [--ranks 1,2,4]`.
The machine is shared and noisy: read ratios taken within one run, not absolute figures.
`--baseline DIR` also runs, alternated with this tree's, the grid-distcp of another source tree (e.g. `git archive
REV | tar -x -C DIR`: its ``mpi`` and root go first on PYTHONPATH) against the same grid, `--rounds N` times each,
so a change is measured before and after in one run; `--cases small` and `--no-ceilings` keep to the distcp runs.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grid_distcp.lakegen import generate
from gridfs.cli.local import LocalGrid

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench/cpubudget.py, shared by every benchmark
from cpubudget import BudgetTable, CpuBudget  # noqa: E402

MiB = 1 << 20


def lake_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def distcp(grid: LocalGrid, lake: Path, bucket: str, ranks: int, work: Path, *extra: str,
           tree: Path | None = None) -> dict:
    """grid-distcp's report, with the CPU budget of its run (as a Phase) under "cpu"; ``tree``: the source tree
    whose grid-distcp runs (default: the installed one)."""
    report = work / "report.json"
    env = {**os.environ, "GRID_CONFIG": str(grid.config_path), "GRID_DISTCP_REPORT": str(report),
           "XDG_CACHE_HOME": str(work / "cache")}
    if tree is not None:
        first = [str(tree / "mpi"), str(tree)]
        env["PYTHONPATH"] = os.pathsep.join(first + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [str(BIN / "mpirun"), "-n", str(ranks), str(BIN / "grid-distcp"), str(lake), f"grid://{bucket}/lake",
           "-quiet", *extra]
    with CpuBudget(grid).measure() as phase:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"grid-distcp failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(report.read_text())
    out["cpu"] = phase
    grid_cli(grid, "rb", "--force", bucket)  # frees the space for the next run
    wait_drained(grid)  # ... and its chunk deletes are done before the next run starts, not during it
    return out


def wait_drained(grid: LocalGrid, timeout: float = 300.0) -> None:
    """Until the event agent has handled every event of the directory's outboxes (the chunk deletes)."""
    import requests

    secret = grid.config().secret
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(requests.get(f"{svc.url}/v1/outbox", headers={"X-Grid-Secret": secret}, timeout=10).json()["events"]
                   for svc in grid.services() if svc.type in ("meta1", "meta2")):
            return
        time.sleep(0.5)
    print(f"warning: events still pending after {timeout:.0f} s", file=sys.stderr)


def grid_cli(grid: LocalGrid, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), *args],
                   check=True, capture_output=True)


def cp_ceiling(lake: Path, work: Path) -> float:
    """Seconds for `cp -r` of the lake to the same disk, then `sync`."""
    target = work / "cp-copy"
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(lake), str(target)], check=True)
    subprocess.run(["sync"], check=True)
    seconds = time.perf_counter() - t0
    shutil.rmtree(target)
    return seconds


def loop_ceiling(files: list[Path], overhead: float, work: Path) -> float:
    """Seconds to write every file's bytes times the policy's overhead, each file fsynced, by a plain loop."""
    target = work / "loop"
    target.mkdir()
    buf = bytearray(8 * MiB)
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        left = int(path.stat().st_size * overhead)
        with open(path, "rb", buffering=0) as src:
            fd = os.open(target / f"{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            view = memoryview(buf)
            while left > 0:
                n = src.readinto(view[: min(len(buf), left)]) or min(len(buf), left)  # past EOF: the parity share
                os.write(fd, view[:n])
                left -= n
            os.fsync(fd)
            os.close(fd)
    seconds = time.perf_counter() - t0
    shutil.rmtree(target)
    return seconds


def put_loop(grid: LocalGrid, files: list[Path], lake: Path, policy: str | None) -> float:
    """Seconds per file for the `grid put` command line, one process per file."""
    grid_cli(grid, "mb", "putloop")
    t0 = time.perf_counter()
    for path in files:
        args = ["put", str(path), f"putloop/{path.relative_to(lake).as_posix()}"]
        grid_cli(grid, *args, *(["--policy", policy] if policy else []))
    seconds = (time.perf_counter() - t0) / len(files)
    grid_cli(grid, "rb", "--force", "putloop")
    return seconds


def best_per_rank(runs: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The best of the rounds at each rank count."""
    best: dict[int, float] = {}
    for r in runs:
        best[r["ranks"]] = max(best.get(r["ranks"], 0.0), r[key])
    return sorted(best), [best[n] for n in sorted(best)]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if "large" in results:
        for name, runs in results["large"]["runs"].items():
            ax1.plot(*best_per_rank(runs, "mb_per_s"), marker="o", label=f"grid-distcp {name}")
        if "loop_ceiling_mb_s" in results["large"]:
            ax1.axhline(results["large"]["loop_ceiling_mb_s"], ls="--", color="grey",
                        label="plain fsync loop x EC overhead")
            ax1.axhline(results["large"]["put_loop_mb_s"], ls=":", color="red", label="`grid put` loop")
        ax1.set(title="large files (user MB/s)", xlabel="MPI ranks", ylabel="MB/s")
        ax1.legend(fontsize=7)
    if "small" in results:
        ax2.plot(*best_per_rank(results["small"]["runs"], "files_per_s"), marker="o", label="grid-distcp")
        if results["small"].get("baseline_runs"):
            ax2.plot(*best_per_rank(results["small"]["baseline_runs"], "files_per_s"), marker="x", ls="--",
                     label="grid-distcp, baseline tree")
        if "put_loop_files_s" in results["small"]:
            ax2.axhline(results["small"]["put_loop_files_s"], ls=":", color="red", label="`grid put` loop")
        ax2.set(title=f"{results['small']['files']} small files", xlabel="MPI ranks", ylabel="files/s")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small-files", type=int, default=10000)
    p.add_argument("--small-size", type=int, default=64, help="KiB")
    p.add_argument("--large-files", type=int, default=4)
    p.add_argument("--large-size", type=int, default=256, help="MiB")
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--policies", default="EC63,EC63-ISAL")
    p.add_argument("--cases", default="large,small", help="which lakes: large, small or both")
    p.add_argument("--rounds", type=int, default=1, help="runs of each kind, alternated")
    p.add_argument("--baseline", type=Path, help="a source tree whose grid-distcp is run too, alternated")
    p.add_argument("--no-ceilings", action="store_true", help="only the grid-distcp runs")
    p.add_argument("--out", default=str(HERE / "results.json"))
    a = p.parse_args()
    ranks = [int(r) for r in a.ranks.split(",")]
    cases = set(a.cases.split(","))
    trees: list[tuple[str, Path | None]] = [("this", None)] + ([("baseline", a.baseline)] if a.baseline else [])
    results: dict = {"machine": {"cpus": os.cpu_count()}, "ranks": ranks, "rounds": a.rounds,
                     "baseline": str(a.baseline) if a.baseline else None}
    cpu = BudgetTable()
    with tempfile.TemporaryDirectory(prefix="distcp-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        large, small = work / "large", work / "small"
        grid = LocalGrid(work / "grid")
        grid.up(nodes=3, volumes=3)
        try:
            if "large" in cases:
                generate(str(large), small=0, medium=0, big=a.large_files, big_size=a.large_size * MiB)
                large_files = lake_files(large)
                large_bytes = sum(f.stat().st_size for f in large_files)
                runs: dict[str, list] = {}
                for _round, policy, n, (label, tree) in itertools.product(
                        range(a.rounds), a.policies.split(","), ranks, trees):
                    r = distcp(grid, large, "large", n, work, "-policy", policy, tree=tree)
                    name = policy if tree is None else f"{policy} ({label})"
                    c = cpu.add(f"large {name} x{n}", r["cpu"], nbytes=large_bytes)
                    runs.setdefault(name, []).append({"ranks": n, "mb_per_s": r["mb_per_s"], "seconds": r["seconds"],
                                                      "balance": r["balance"], "cpu": c})
                    print(f"large {name:10} ranks={n}: {r['mb_per_s']:7.1f} MB/s  balance {r['balance']}"
                          f"  CPU {c['total']:.2f} s/GB", flush=True)
                results["large"] = {"files": len(large_files), "bytes": large_bytes, "runs": runs}
                if not a.no_ceilings:
                    put_s = put_loop(grid, large_files[:1], large, "EC63")
                    loop_s = loop_ceiling(large_files, 1.5, work)
                    cp_s = cp_ceiling(large, work)
                    results["large"] |= {
                        "put_loop_mb_s": round(large_files[0].stat().st_size / put_s / 1e6, 1),
                        "loop_ceiling_mb_s": round(large_bytes / loop_s / 1e6, 1),
                        "cp_sync_mb_s": round(large_bytes / cp_s / 1e6, 1),
                    }
                shutil.rmtree(large)
            if "small" in cases:
                generate(str(small), small=a.small_files, small_size=a.small_size << 10, medium=0, big=0)
                small_files = lake_files(small)
                small_bytes = sum(f.stat().st_size for f in small_files)
                small_runs: dict[str, list] = {"this": [], "baseline": []}
                for _round, n, (label, tree) in itertools.product(range(a.rounds), ranks, trees):
                    r = distcp(grid, small, "small", n, work, tree=tree)
                    c = cpu.add(f"small {label} x{n}", r["cpu"], objects=len(small_files))
                    small_runs[label].append({"ranks": n, "files_per_s": r["files_per_s"], "mb_per_s": r["mb_per_s"],
                                              "seconds": r["seconds"], "balance": r["balance"], "cpu": c})
                    print(f"small {label:8} ranks={n}: {r['files_per_s']:7.1f} files/s  CPU {c['total']:.2f} ms/file",
                          flush=True)
                results["small"] = {"files": len(small_files), "bytes": small_bytes, "runs": small_runs["this"]}
                if a.baseline:
                    results["small"]["baseline_runs"] = small_runs["baseline"]
                if not a.no_ceilings:
                    sample = small_files[:: max(1, len(small_files) // 40)][:40]
                    put_small = put_loop(grid, sample, small, None)
                    loop_small = loop_ceiling(small_files, 3.0, work)
                    cp_small = cp_ceiling(small, work)
                    results["small"] |= {
                        "put_loop_files_s": round(1 / put_small, 1),
                        "loop_ceiling_files_s": round(len(small_files) / loop_small, 1),
                        "cp_sync_files_s": round(len(small_files) / cp_small, 1),
                    }
        finally:
            grid.down()
    summary: dict = {}
    if "large" in results:
        best_large = {k: max(r["mb_per_s"] for r in v) for k, v in results["large"]["runs"].items()}
        summary["large_best_mb_s"] = best_large
        if "loop_ceiling_mb_s" in results["large"]:
            summary["large_vs_loop_ceiling"] = {
                k: round(v / results["large"]["loop_ceiling_mb_s"], 3) for k, v in best_large.items()}
    if "small" in results:
        best_small = max(r["files_per_s"] for r in results["small"]["runs"])
        summary["small_best_files_s"] = best_small
        if results["small"].get("baseline_runs"):
            best_base = max(r["files_per_s"] for r in results["small"]["baseline_runs"])
            summary["small_baseline_best_files_s"] = best_base
            summary["small_vs_baseline"] = round(best_small / best_base, 2)
        if "put_loop_files_s" in results["small"]:
            summary["small_vs_put_loop"] = round(best_small / results["small"]["put_loop_files_s"], 1)
    results["summary"] = summary
    Path(a.out).write_text(json.dumps(results, indent=1))
    plot(results, Path(a.out).with_suffix(".png"))
    cpu.print()
    print(json.dumps(results["summary"], indent=1))
    print(f"wrote {a.out} and {Path(a.out).with_suffix('.png')}")


if __name__ == "__main__":
    main()
