"""Writing 8 MiB files through the page cache or straight to the disk (O_DIRECT), each fsynced, in one
process, three rounds alternated: MB/s and CPU-s per GB (this process's user + system time).

What it showed here (bench/results/direct_bench.json has the grid-level figures): straight to the disk,
1.7-1.8 GB/s and 0.06-0.07 CPU-s/GB every round; through the cache, 1.4-1.5 GB/s and 0.25 CPU-s/GB when the
kernel had free pages at hand (memory just given back by another run), but 374 MB/s and 2.11 CPU-s/GB in a
round that had to find its pages afresh. A storage server's cache fills with the chunks it keeps, so its
writes drift toward the second figure as it runs (1.6 to 5 CPU-s per GB within four rounds of a grid).

With ``--sources``, the read side of an upload (gridfs.common.fileio.SourceFile, which `grid put` and
grid-distcp read their files with): a 1 GiB file read in 48 MiB pieces, out of the page cache and in it,
through the cache as before against SourceFile, three rounds alternated.

    flock /tmp/bench.lock .venv/bin/python bench/odirect_probe.py [--sources] [FOLDER]

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import mmap
import os
import resource
import sys
import tempfile
import threading
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


def direct_read_rate(folder: str | os.PathLike[str], files: int = 48, threads: int = 2) -> float:
    """MB/s at which this disk gives back ``files`` 8 MiB files written and read with O_DIRECT, ``threads``
    readers at a time (no page cache either way: what a storage server's chunk reads can get). On this
    machine kind more readers than two gain nothing: 1.2-1.25 GB/s from 2 to 12."""
    buf = mmap.mmap(-1, SIZE)
    buf.write(os.urandom(SIZE))
    paths = [os.path.join(folder, f".read-probe-{i}") for i in range(files)]
    try:
        for path in paths:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
            try:
                os.write(fd, buf)
                os.fsync(fd)
            finally:
                os.close(fd)
        counts = [0] * threads
        start = threading.Barrier(threads + 1)

        def reader(n: int) -> None:
            own = mmap.mmap(-1, SIZE)  # one aligned buffer per reader, faulted in before the clock starts
            own.write(bytes(SIZE))
            start.wait()
            for path in paths[n::threads]:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
                try:
                    counts[n] += os.readv(fd, [own])
                finally:
                    os.close(fd)

        workers = [threading.Thread(target=reader, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        total = sum(counts)
        return total / (time.perf_counter() - t0) / 1e6
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


def source_round(path: str, view: memoryview, evict: bool, source_file: bool) -> str:
    """Read ``path`` whole in ``view``-sized pieces: through the cache as uploads did, or with SourceFile."""
    from gridfs.common.fileio import SourceFile

    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED if evict else os.POSIX_FADV_WILLNEED)
    if not evict:
        while os.read(fd, 1 << 24):
            pass
    os.close(fd)
    f = SourceFile(path) if source_file else open(path, "rb", buffering=0)  # noqa: SIM115
    t0, c0, total = time.perf_counter(), cpu_seconds(), 0
    with f:
        while n := f.readinto(view):
            total += n
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    how = ("SourceFile " + ("(direct)" if getattr(f, "direct", False) else "(cache) ")) if source_file else "the cache "
    return (f"{'out of the cache' if evict else 'in the cache    '}, {how:19} {total / wall / 1e6:6.0f} MB/s  "
            f"{cpu / (total / 1e9):.3f} CPU-s/GB")


def sources(folder: str) -> None:
    path = os.path.join(folder, "source.bin")
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    buf = mmap.mmap(-1, 48 << 20)  # the client's pooled buffers are page-aligned maps of a metachunk
    for r in range(3):
        for evict in (True, False):
            for source_file in (False, True):
                print(f"round {r + 1}: {source_round(path, memoryview(buf), evict, source_file)}", flush=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--sources"]
    with tempfile.TemporaryDirectory(dir=args[0] if args else ".") as folder:
        if "--sources" in sys.argv:
            sources(folder)
            return
        buf = mmap.mmap(-1, SIZE)  # page-aligned, as O_DIRECT wants
        buf.write(os.urandom(SIZE))
        for r in range(3):
            for direct in (False, True):
                print(f"round {r + 1}: {write_round(folder, memoryview(buf), direct, f'{direct}-{r}')}", flush=True)


if __name__ == "__main__":
    main()
