"""``make demo``: the main job on the embedded default grid.

Starts a 3-node x 3-volume grid, stores a small dataset of mixed file sizes (copies
for the small files, EC 6+3 for the large ones), reads it back and checks every byte,
shows where one object's chunks live, and stops the grid. Every step is the ``grid``
command a user would type, printed before it runs.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)
DATA = Path(os.environ.get("GRID_DEMO_DATA", "grid-data/demo")).resolve()
SIZES = [4 << 10] * 8 + [300 << 10] * 4 + [3 << 20] * 3 + [40 << 20, 130 << 20]


def grid(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "gridfs.cli.main", "--config", str(DATA / "grid.toml"), *args]
    console.print(f"[dim]$ grid {shlex.join(args)}[/]")
    proc = subprocess.run(cmd, text=True, capture_output=capture)
    if proc.returncode:
        if capture:
            console.print(proc.stdout, proc.stderr)
        raise SystemExit(f"demo failed: grid {shlex.join(args)} exited with {proc.returncode}")
    return proc.stdout if capture else ""


def make_dataset(root: Path) -> list[Path]:
    files = []
    for i, size in enumerate(SIZES):
        part = root / f"day={i % 3:02d}"
        part.mkdir(parents=True, exist_ok=True)
        path = part / f"part-{i:03d}.bin"
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        files.append(path)
    return files


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    if (DATA / "grid.toml").exists():
        subprocess.run([sys.executable, "-m", "gridfs.cli.main", "down", "--data", str(DATA)], capture_output=True)
        shutil.rmtree(DATA)
    started = time.perf_counter()
    grid("up", "--data", str(DATA), "--nodes", "3", "--volumes", "3")
    try:
        grid("status")
        grid("policies")
        grid("mb", "demo")
        with tempfile.TemporaryDirectory() as tmp:
            src, back = Path(tmp) / "src", Path(tmp) / "back"
            back.mkdir()
            files = make_dataset(src)
            total = sum(f.stat().st_size for f in files)
            t0 = time.perf_counter()
            for f in files:
                key = f.relative_to(src).as_posix()
                cmd = [sys.executable, "-m", "gridfs.cli.main", "--config", str(DATA / "grid.toml"),
                       "put", str(f), f"demo/{key}"]
                subprocess.run(cmd, check=True, capture_output=True)
            put_s = time.perf_counter() - t0
            console.print(f"stored {len(files)} files, {total / 2**20:.0f} MiB, in {put_s:.1f} s "
                          "(one `grid put` process per file)")
            grid("ls", "demo/")
            t0 = time.perf_counter()
            table = Table(title="read back")
            for col in ("object", "size", "policy", "identical"):
                table.add_column(col)
            for f in files:
                key = f.relative_to(src).as_posix()
                out = back / key.replace("/", "_")
                subprocess.run([sys.executable, "-m", "gridfs.cli.main", "--config", str(DATA / "grid.toml"),
                                "get", f"demo/{key}", str(out)], check=True, capture_output=True)
                same = sha256(out) == sha256(f)
                if not same:
                    raise SystemExit(f"demo failed: {key} read back different bytes")
                if f.stat().st_size >= 1 << 20 or key.endswith("000.bin"):
                    stat = grid("stat", f"demo/{key}", capture=True)
                    policy = next(line.split('"')[3] for line in stat.splitlines() if '"policy"' in line)
                    table.add_row(key, f"{f.stat().st_size:,}", policy, "yes")
            console.print(table)
            console.print(f"read back and verified every byte in {time.perf_counter() - t0:.1f} s")
            biggest = max(files, key=lambda f: f.stat().st_size).relative_to(src).as_posix()
            grid("locate", f"demo/{biggest}")
    finally:
        grid("down")
    console.print(f"[green]demo finished in {time.perf_counter() - started:.0f} s[/]")


if __name__ == "__main__":
    main()
