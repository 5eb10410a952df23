"""Writing 8 MiB files through the page cache or straight to the disk (O_DIRECT), each fsynced, in one
process, three rounds alternated: MB/s and CPU-s per GB (this process's user + system time).

What it showed here (bench/results/direct_bench.json has the grid-level figures): straight to the disk,
1.7-1.8 GB/s and 0.06-0.07 CPU-s/GB every round; through the cache, 1.4-1.5 GB/s and 0.25 CPU-s/GB when the
kernel had free pages at hand (memory just given back by another run), but 374 MB/s and 2.11 CPU-s/GB in a
round that had to find its pages afresh. A storage server's cache fills with the chunks it keeps, so its
writes drift toward the second figure as it runs (1.6 to 5 CPU-s per GB within four rounds of a grid).

    flock /tmp/bench.lock .venv/bin/python bench/odirect_probe.py [FOLDER]

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import mmap
import os
import resource
import sys
import tempfile
import time

FILES, SIZE, STEP = 64, 8 << 20, 1 << 20


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_round(folder: str, view: memoryview, direct: bool, tag: str) -> str:
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(FILES):
        fd = os.open(f"{folder}/{tag}-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0),
                     0o600)
        try:
            off = 0
            while off < SIZE:
                off += os.write(fd, view[off : off + STEP])
            os.fsync(fd)
        finally:
            os.close(fd)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    for i in range(FILES):
        os.unlink(f"{folder}/{tag}-{i}")
    gb = FILES * SIZE / 1e9
    return f"{'direct  ' if direct else 'buffered'} {gb / wall * 1000:6.0f} MB/s  {cpu / gb:.2f} CPU-s/GB"


def main() -> None:
    buf = mmap.mmap(-1, SIZE)  # page-aligned, as O_DIRECT wants
    buf.write(os.urandom(SIZE))
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else ".") as folder:
        for r in range(3):
            for direct in (False, True):
                print(f"round {r + 1}: {write_round(folder, memoryview(buf), direct, f'{direct}-{r}')}", flush=True)


if __name__ == "__main__":
    main()
