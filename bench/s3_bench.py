"""S3 gateway benchmark: boto3 through the gateway beside the native client library, in one run.

Measures, on a fresh local grid (3 nodes x 3 volumes, the gateway with 2 workers):
- 64 MiB objects: PUT and GET MB/s with 1 and 2 client processes, through boto3 and natively;
- 4 KiB objects: PUT/s with 1 and 2 client processes (8 threads each), through boto3 and natively.
Each run also reports its CPU budget per kind of process (bench/cpubudget.py): CPU-s per GB for
64 MiB objects, CPU-ms per object for 4 KiB ones, client (boto3 or the library) and gateway apart. As the
rates, the client's figure includes its worker processes' start-up (imports, the test data).
Prints a table, writes bench/s3_results.json. The machine is shared: compare the ratios.

Run: `.venv/bin/python bench/s3_bench.py [--objects 8] [--small 400]`.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from cpubudget import BudgetTable, CpuBudget, Phase
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid

MiB = 1 << 20
HERE = Path(__file__).resolve().parent


def _s3(endpoint: str, keys: dict) -> object:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=keys["access_key"],
                        aws_secret_access_key=keys["secret_key"], region_name="us-east-1")


def _native(config: str) -> object:
    from gridfs.client import GridClient

    return GridClient(config)


def worker(kind: str, op: str, target: dict, names: list[str], size: int, threads: int) -> float:
    """Seconds for this process to PUT or GET its objects."""
    data = os.urandom(size)
    client = _s3(target["endpoint"], target["keys"]) if kind == "s3" else _native(target["config"])

    def one(name: str) -> None:
        if kind == "s3":
            if op == "put":
                client.put_object(Bucket="bench", Key=name, Body=data)
            else:
                body = client.get_object(Bucket="bench", Key=name)["Body"]
                while body.read(8 * MiB):
                    pass
        elif op == "put":
            client.put("bench", name, data)
        else:
            for _ in client.get_stream("bench", name):
                pass

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - t0


def run(kind: str, op: str, target: dict, count: int, size: int, procs: int, threads: int, tag: str,
        budget: CpuBudget) -> tuple[float, int, Phase]:
    """Aggregate rate: objects per second over all processes; the objects; the CPU budget of the run."""
    names = [[f"{tag}-{kind}-{p}-{i}" for i in range(count // procs)] for p in range(procs)]
    with budget.measure() as phase:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(worker, [kind] * procs, [op] * procs, [target] * procs, names, [size] * procs,
                          [threads] * procs))
        seconds = time.perf_counter() - t0
    objects = (count // procs) * procs
    return objects / seconds, objects, phase


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objects", type=int, default=8, help="64 MiB objects per run")
    p.add_argument("--small", type=int, default=400, help="4 KiB objects per run")
    p.add_argument("--out", default=str(HERE / "s3_results.json"))
    a = p.parse_args()
    results: dict = {"large": {}, "small": {}}
    cpu = BudgetTable()
    with tempfile.TemporaryDirectory(prefix="s3-bench-") as tmp:
        grid = LocalGrid(Path(tmp) / "grid")
        cfg = grid.up(nodes=3, volumes=3, s3_port=0)
        try:
            from gridfs.client import GridClient
            from gridfs.gateways.s3.admin import set_owner
            from gridfs.gateways.s3.users import UserStore

            user = UserStore(grid.config_path).create("bench")
            GridClient(grid.config_path).create_bucket("bench")
            set_owner(grid.config_path, "bench", "bench")  # an owner counts only sealed under the master key
            target = {"endpoint": cfg.extra["s3"]["url"], "keys": {"access_key": user.access_key,
                                                                    "secret_key": user.secret_key},
                      "config": str(grid.config_path)}
            budget = CpuBudget(grid)
            for procs in (1, 2):
                for kind in ("native", "s3"):
                    tag, label = f"L{procs}", f"{kind} x{procs}"
                    put, n, put_cpu = run(kind, "put", target, a.objects, 64 * MiB, procs, 2, tag, budget)
                    get, _, get_cpu = run(kind, "get", target, a.objects, 64 * MiB, procs, 2, tag, budget)
                    small, ns, small_cpu = run(kind, "put", target, a.small, 4096, procs, 8, f"S{procs}", budget)
                    put, get = put * 64 * MiB / 1e6, get * 64 * MiB / 1e6
                    results["large"][f"{kind}/{procs}"] = {
                        "put_mb_s": round(put, 1), "get_mb_s": round(get, 1),
                        "cpu": {"put": cpu.add(f"{label} PUT", put_cpu, nbytes=n * 64 * MiB),
                                "get": cpu.add(f"{label} GET", get_cpu, nbytes=n * 64 * MiB)}}
                    results["small"][f"{kind}/{procs}"] = {
                        "put_per_s": round(small, 1), "cpu": {"put": cpu.add(f"{label} 4K PUT", small_cpu, objects=ns)}}
                    c = results["large"][f"{kind}/{procs}"]["cpu"]
                    print(f"{kind:6} procs={procs}: PUT {put:7.1f} MB/s  GET {get:7.1f} MB/s  4 KiB PUT {small:6.1f}/s"
                          f"  CPU s/GB PUT {c['put']['total']:.2f} GET {c['get']['total']:.2f}, 4 KiB PUT "
                          f"{results['small'][f'{kind}/{procs}']['cpu']['put']['total']:.2f} ms", flush=True)
        finally:
            grid.down()
    ratios = {}
    for procs in (1, 2):
        n, s = results["large"][f"native/{procs}"], results["large"][f"s3/{procs}"]
        ratios[f"procs={procs}"] = {"put": round(s["put_mb_s"] / n["put_mb_s"], 3),
                                    "get": round(s["get_mb_s"] / n["get_mb_s"], 3)}
    results["gateway_over_native"] = ratios
    table = Table(title="S3 gateway / native client (1.0 = no cost; target >= 0.7 for large objects)")
    for col in ("processes", "PUT ratio", "GET ratio"):
        table.add_column(col)
    for k, v in ratios.items():
        table.add_row(k, str(v["put"]), str(v["get"]))
    Console().print(table)
    cpu.print()
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
