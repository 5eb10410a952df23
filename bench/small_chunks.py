"""Kernel cost of storing small chunks on this machine: a file per chunk (create, write, xattrs, fsync,
rename, folder fsync, as gridfs/storage/store.py does) against records appended to one pack file with one
fsync per group (gridfs/storage/packs.py). The figures that decided to pack small chunks.

    .venv/bin/python bench/small_chunks.py [--folder /tmp/small-chunks] [--n 500]

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import time
from collections.abc import Callable

DATA = os.urandom(4096)


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def run(name: str, fn: Callable[[int], None], n: int) -> None:
    (u0, s0), t = cpu(), time.perf_counter()
    fn(n)
    el, (u1, s1) = time.perf_counter() - t, cpu()
    per = 1e6 / n
    print(f"{name:34s} {el * per:7.0f} us wall  user {(u1 - u0) * per:5.0f}  sys {(s1 - s0) * per:5.0f} us/chunk")


def files(root: str, n: int, xattrs: bool = True, fsync: bool = True) -> None:
    folder = os.open(root, os.O_RDONLY)
    try:
        for _ in range(n):
            cid = secrets.token_hex(16)
            tmp = f"{root}/{cid}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, DATA)
            if xattrs:
                for k in "abcd":
                    os.setxattr(fd, "user.grid." + k, b"x" * 16)
            if fsync:
                os.fsync(fd)
            os.close(fd)
            os.rename(tmp, f"{root}/{cid}")
            if fsync:
                os.fsync(folder)
    finally:
        os.close(folder)


def pack(root: str, n: int, group: int) -> None:
    fd = os.open(f"{root}/pack", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for i in range(n):
            os.write(fd, b"h" * 64 + DATA)
            if i % group == group - 1:
                os.fdatasync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folder", default="/tmp/small-chunks")
    p.add_argument("--n", type=int, default=500)
    args = p.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    try:
        run("file + 4 xattrs + fsyncs", lambda n: files(args.folder, n), args.n)
        run("file + 4 xattrs, no fsync", lambda n: files(args.folder, n, fsync=False), args.n)
        run("file, no xattr, fsyncs", lambda n: files(args.folder, n, xattrs=False), args.n)
        run("pack, one fsync per 64", lambda n: pack(args.folder, n, 64), args.n * 10)
        run("pack, one fsync per chunk", lambda n: pack(args.folder, n, 1), args.n)
    finally:
        shutil.rmtree(args.folder, ignore_errors=True)


if __name__ == "__main__":
    main()
