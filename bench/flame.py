"""Flame graphs of a large write: py-spy records the `grid put` process and one storage server (rawx)
while the command line stores one object (default 1 GiB, EC63 with zfec) in a fresh local grid.

Writes bench/results/flame/<label>-client.svg and <label>-rawx.svg, and <label>-summary.json with the
rate of the profiled put and each side's top functions by own samples (a C call shows as the own time of
the Python frame that made it: zfec's encode, a hash, os.write), so that profiles taken before and after
a change can be kept side by side. py-spy samples without pausing the processes (--nonblocking): paused,
threads waiting on a lock or in epoll counted as busy here. The profiled rate is still below an unprofiled
one; take rates and CPU budgets from grid_bench.py.

py-spy is not a dependency of the project: this script uses $PY_SPY, a `py-spy` on PATH, or downloads the
wheel from the package index once (`pip download py-spy --no-deps`) and takes the binary out of it.

    flock /tmp/bench.lock .venv/bin/python bench/flame.py --label baseline [--size-mib 1024] [--policy EC63]

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import bisect
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient

HERE = Path(__file__).resolve().parent
PY_SPY_VERSION = "0.4.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gridfs-bench" / f"py-spy-{PY_SPY_VERSION}"
MiB = 1 << 20
console = Console()


def find_py_spy() -> str:
    """$PY_SPY, py-spy on PATH, or the binary of the wheel downloaded into the cache once."""
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if found:
        return found
    binary = CACHE / "py-spy"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", f"py-spy=={PY_SPY_VERSION}", "--no-deps",
                        "--only-binary", ":all:", "-d", str(CACHE)], check=True, capture_output=True)
        wheel = next(CACHE.glob("py_spy-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith("/scripts/py-spy"))
            binary.write_bytes(z.read(member))
        binary.chmod(0o755)
    return str(binary)


FRAME = re.compile(r'<g><title>(.*?)</title><rect [^>]*?y="([\d.]+)"[^>]*?fg:x="(\d+)" fg:w="(\d+)"')
SAMPLES = re.compile(r" \([\d,]+ samples?, [\d.]+%\)$")


def top_functions(svg: Path, n: int = 12) -> dict:
    """Samples in total and the ``n`` functions with the most own samples (line numbers merged), read back
    from py-spy's SVG: a frame's own samples are its width less its children's (one row further in)."""
    frames = [(html.unescape(t), float(y), int(x), int(w)) for t, y, x, w in FRAME.findall(svg.read_text())]
    root = next((f for f in frames if f[0].startswith("all (")), None)
    if root is None:
        return {"samples": 0, "top": []}
    rows: dict[int, list[list]] = {}
    for title, y, x, w in frames:
        name = re.sub(r":\d+\)$", ")", SAMPLES.sub("", title))  # "f (file.py:12)" -> "f (file.py)"
        rows.setdefault(round(abs(y - root[1]) / 16), []).append([x, w, w, name])  # x, width, own, name
    for depth in sorted(rows):
        parents = sorted(rows.get(depth - 1, []))
        starts = [p[0] for p in parents]
        for x, w, _, _ in rows[depth]:
            i = bisect.bisect_right(starts, x) - 1
            if i >= 0:
                parents[i][2] -= w
    own: Counter[str] = Counter()
    for depth, row in rows.items():
        for _, _, self_w, name in row:
            if depth > 0:
                own[name] += self_w
    total = root[3]
    return {"samples": total, "top": [{"function": f, "own_samples": s, "own_pct": round(100 * s / total, 1)}
                                      for f, s in own.most_common(n) if s > 0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True, help="file names: <label>-client.svg, <label>-rawx.svg")
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--policy", default="EC63")
    p.add_argument("--rate", type=int, default=200, help="samples per second")
    p.add_argument("--native", action="store_true", help="C frames too (zfec, hashes): py-spy --native")
    p.add_argument("--out", type=Path, default=HERE / "results" / "flame")
    args = p.parse_args()
    py_spy = find_py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    svgs = {side: args.out / f"{args.label}-{side}.svg" for side in ("client", "rawx")}
    # Not paused (--nonblocking): py-spy tells idle threads apart by their state, which a pause hides.
    extra = ["--nonblocking", *(["--native"] if args.native else [])]
    with tempfile.TemporaryDirectory(prefix="flame-", dir=os.environ.get("GRID_BENCH_DIR")) as tmp:
        grid = LocalGrid(Path(tmp) / "grid")
        grid.up(nodes=3, volumes=3, s3_port=None, webhdfs_port=None)
        try:
            GridClient(grid.config_path).create_bucket("flame")
            source = Path(tmp) / "source.bin"
            rng = np.random.default_rng(7)
            with open(source, "wb") as f:
                for _ in range(args.size_mib // 64):
                    f.write(rng.bytes(64 * MiB))
            os.sync()  # no writeback of the source during the put
            rawx = next(s for s in grid.services() if s.type == "rawx")
            server = subprocess.Popen([py_spy, "record", "-p", str(rawx.pid), "-r", str(args.rate), "-o",
                                       str(svgs["rawx"]), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)  # attached before the first chunk arrives
            put = [sys.executable, "-m", "gridfs.cli.main", "--config", str(grid.config_path), "put", str(source),
                   "flame/object", "--policy", args.policy]
            t0 = time.perf_counter()
            client = subprocess.run([py_spy, "record", "-r", str(args.rate), "-o", str(svgs["client"]), *extra,
                                     "--", *put], capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            server.send_signal(signal.SIGINT)  # py-spy writes its SVG when interrupted
            _, err = server.communicate(timeout=60)
            if client.returncode or server.returncode:
                raise SystemExit(f"py-spy failed: {client.stderr[-2000:]} {err.decode()[-2000:]}")
        finally:
            grid.down()
    mb_s = round(args.size_mib * MiB / seconds / 1e6, 1)
    summary = {"label": args.label, "policy": args.policy, "size_mib": args.size_mib, "rate_hz": args.rate,
               "seconds_with_start_up": round(seconds, 2), "mb_s_profiled": mb_s,
               "client": top_functions(svgs["client"]), "rawx": top_functions(svgs["rawx"])}
    (args.out / f"{args.label}-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for side in ("client", "rawx"):
        table = Table("function", "own samples", title=f"{args.label} {side}: top own costs "
                      f"({summary[side]['samples']} samples)")
        for row in summary[side]["top"]:
            table.add_row(row["function"], f"{row['own_pct']:.1f} %")
        console.print(table)
    console.print(f"grid put of {args.size_mib} MiB with {args.policy} under py-spy: {summary['mb_s_profiled']} MB/s "
                  f"(start-up included); wrote {', '.join(str(s) for s in svgs.values())}")


if __name__ == "__main__":
    main()
