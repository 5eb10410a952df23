"""Flame graphs of the grid's hot paths: py-spy records every kind of process a scenario goes through
(the client or the boto3 process, the S3 gateway and its workers, storage servers, the meta2 directory
service) while a driver process puts or gets objects in a fresh local grid, and the CPU budget of the same
span is measured per kind with bench/cpubudget.py.

Scenarios (``--scenario``, several at once comma-separated, on one grid):

- ``large-put``: the `grid put` command line stores one object (default 1 GiB, EC63 with zfec) ``--count``
  times. Without ``--scenario`` this is the one-object mode of before, with the file names of before.
- ``small-put`` / ``small-get``: 4 KiB ``put`` / ``get`` from ``--threads`` threads of one client process for
  ``--seconds`` (GETs cycle over objects stored before the profile starts).
- ``small-put-many``: ``put_many`` of 64 KiB objects, 256 per call from 2 threads, as each grid-distcp rank
  stores its replies.
- ``s3-small-put``, ``s3-large-put``, ``s3-large-get``: boto3 from 8 (4 KiB) or 2 (64 MiB) threads of one
  process, through the gateway's 2 workers.

Writes into ``--out`` (bench/results/flame/), per scenario, ``<label>-<scenario>-<kind>.svg`` for each kind of
process (one storage server's graph is kept, while the samples of ``--rawx`` of them are counted) and
``<label>-<scenario>-summary.json``: the rate under the profiler, the load average before and after, the
CPU budget per kind (CPU-ms per object or CPU-s per GB), each kind's samples per object (or per GB), its top
functions by own samples and those samples grouped (kernel I/O, HTTP, JSON, SQLite, hashing, ...). A C call
or a system call shows as the own time of the Python frame that made it (os.fsync, socket.send, a hash,
sqlite3's execute): the groups are read from file and function names, and the rules are in GROUPS below.

py-spy samples without pausing the processes (--nonblocking): paused, threads waiting on a lock or in epoll
counted as busy here. Unpaused, it still counts some waits (an event loop in epoll, an idle pool thread) and
every blocking call (fsync waiting for the disk, recv waiting for an answer): the summary puts the waits it
can name apart (IDLE) and gives the kind's measured CPU (/proc: user and system) beside its samples.
``--gil`` keeps only the samples of the thread holding the GIL: the interpreter's CPU time, by function
(python_by_gridfs_caller gives each of them to the grid's function it ran for).

Where ``perf`` is installed (``--perf N``, default 250), each kind is also recorded with `perf record -e
cpu-clock -g` at a fixed period, which samples CPU time only, kernel call chains included: the summary gives
each kind's CPU per object (or GB) split by the system call it is spent in (fsync, send, recv, futex, ...) or
the library its leaf function is in (the interpreter, SQLite, JSON, hashing, memcpy, ...). perf sees no
Python frames on Python 3.11 and py-spy no kernel: the two are read together.

``--native`` (C frames too) needs py-spy to pause the processes, so it drops --nonblocking. The profiled
rate is below an unprofiled one: take rates from the benchmarks (grid_bench.py, s3_bench.py), the split of
each kind's time from here.

py-spy is not a dependency of the project: this script uses $PY_SPY, a `py-spy` on PATH, or downloads the
wheel from the package index once (`pip download py-spy --no-deps`) and takes the binary out of it.

    flock /tmp/bench.lock .venv/bin/python bench/flame.py --label baseline [--size-mib 1024] [--policy EC63]
    flock /tmp/bench.lock .venv/bin/python bench/flame.py --label small --scenario small-put,small-get

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
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from cpubudget import KINDS, CpuBudget
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid, LocalService
from gridfs.client import GridClient

HERE = Path(__file__).resolve().parent
PY_SPY_VERSION = "0.4.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gridfs-bench" / f"py-spy-{PY_SPY_VERSION}"
MiB = 1 << 20
KiB = 1 << 10
TICK = os.sysconf("SC_CLK_TCK")
MARK = "FLAME "  # the driver's lines to this script start with it
console = Console()

# scenario -> what the driver does: the object size, threads, and whether the S3 gateway is in the path
SCENARIOS: dict[str, dict[str, Any]] = {
    "large-put": {"size": None, "threads": 1, "s3": False},
    "small-put": {"size": 4 * KiB, "threads": 16, "s3": False},
    "small-get": {"size": 4 * KiB, "threads": 16, "s3": False},
    "small-put-many": {"size": 64 * KiB, "threads": 2, "s3": False},
    "s3-small-put": {"size": 4 * KiB, "threads": 8, "s3": True},
    "s3-large-put": {"size": 64 * MiB, "threads": 2, "s3": True},
    "s3-large-get": {"size": 64 * MiB, "threads": 2, "s3": True},
}
BATCH = 256  # objects per put_many call, as grid-distcp's replies

# Own samples grouped by what they are, first match wins: (group, regex on "function (file)"). Without
# pausing (--nonblocking), py-spy counts as active some samples of threads that wait (an event loop in
# epoll, an idle pool thread, a condition): IDLE names them, and they are left out of the busy samples.
IDLE = "idle waits (counted by py-spy unpaused)"
GROUPS: list[tuple[str, str]] = [
    (IDLE, r"^(EpollSelector|PollSelector|SelectSelector)\.select \(selectors\.py|^_worker \(concurrent/futures|"
           r"^(Condition\.wait|Event\.wait|Thread\.join|Semaphore\.acquire|Barrier\.wait|_wait_for_tstate_lock) "
           r"\(threading\.py|^(Queue\.)?get \(queue\.py|^run_workers |waitpid|^drive \(|^_for "),
    ("kernel: file writes, fsync", r"fsync|fdatasync|write_all|pwrite|\(os\.py|fileio\.py|PackStore\._write|"
                                   r"_write_chunk|writev"),
    ("kernel: socket send/recv/connect", r"\((socket|ssl|selectors)\.py|HTTPConnection\.send \(http/client|"
                                         r"sock_recv|sock_send|_read_ready|_write_ready|_write_to_self|"
                                         r"_SelectorSocketTransport\.write|recv_into|sendmsg|sendall|readinto|do_poll"),
    ("SQLite", r"sqlite|meta2db\.py|Txn\.|packs\.py.*(index|commit|execute|insert|lookup|find|record)|execute"),
    ("HTTP parsing / framing", r"\((http/|email/|urllib3/|aiohttp/|multidict|yarl/|h11)|http1\.py|common/http\.py|"
                               r"botocore/awsrequest|storage/client\.py|getresponse|parse_headers"),
    ("JSON", r"\(json/|json\.py|_json|orjson"),
    ("hashing, checksums, EC", r"hashlib|hash|crc|md5|sha|blake|xxh|checksum|digest|isal|zfec|coding/"),
    ("S3 auth / signing", r"sigv4|botocore/auth|signer|hmac"),
    ("boto3 / botocore", r"\((boto3|botocore|s3transfer)/"),
    ("threads, locks, futures", r"\((threading|queue)\.py|concurrent/futures|groupcommit\.py"),
    ("asyncio event loop", r"\(asyncio/|uvloop"),
    ("logging, metrics", r"\(logging/|prometheus_client|stats\.py|iostats\.py"),
    ("imports, start-up", r"importlib|<frozen|_find_and_load"),
    ("uuid, random ids", r"uuid|secrets\.py|random\.py"),
    ("gridfs Python (dispatch, records, placement)", r"\(gridfs/"),
]
GROUP_RES = [(name, re.compile(rule, re.IGNORECASE)) for name, rule in GROUPS]
# the kinds recorded -> their kind in bench/cpubudget.py
BUDGET_KIND = {"client": "client", "s3": "gateway", "rawx": "storage", "meta2": "directory"}


def group_of(function: str) -> str:
    return next((name for name, rule in GROUP_RES if rule.search(function)), "other Python / stdlib")


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


def _frames(svg: Path) -> tuple[int, list[list]]:
    """Samples in total and the frames of py-spy's SVG, each [x, width, own, name, parent frame or None]
    (line numbers merged): a frame's own samples are its width less its children's (one row further in)."""
    if not svg.exists():
        return 0, []
    frames = [(html.unescape(t), float(y), int(x), int(w)) for t, y, x, w in FRAME.findall(svg.read_text())]
    root = next((f for f in frames if f[0].startswith("all (")), None)
    if root is None:
        return 0, []
    rows: dict[int, list[list]] = {}
    for title, y, x, w in frames:
        name = re.sub(r":\d+\)$", ")", SAMPLES.sub("", title))  # "f (file.py:12)" -> "f (file.py)"
        rows.setdefault(round(abs(y - root[1]) / 16), []).append([x, w, w, name, None])
    for depth in sorted(rows):
        parents = sorted(rows.get(depth - 1, []), key=lambda p: p[0])
        starts = [p[0] for p in parents]
        for frame in rows[depth]:
            i = bisect.bisect_right(starts, frame[0]) - 1
            if i >= 0:
                parents[i][2] -= frame[1]
                frame[4] = parents[i]
    return root[3], [f for depth, row in rows.items() if depth > 0 for f in row]


def own_samples(svg: Path) -> tuple[int, Counter[str]]:
    """Samples in total and every function's own samples (line numbers merged), read back from py-spy's SVG."""
    total, frames = _frames(svg)
    own: Counter[str] = Counter()
    for _, _, self_w, name, _ in frames:
        if self_w > 0:
            own[name] += self_w
    return total, own


def python_callers(svgs: list[Path]) -> tuple[int, Counter[str]]:
    """The samples in Python code (own samples of frames that are neither idle waits nor system calls, by
    GROUPS), each given to the innermost gridfs function on its stack (itself, if it is one): which of the
    grid's functions the interpreter's time is spent for, the library code they call included."""
    total = 0
    callers: Counter[str] = Counter()
    for svg in svgs:
        for _, _, self_w, name, parent in _frames(svg)[1]:
            group = group_of(name)
            if self_w <= 0 or group == IDLE or group.startswith("kernel:"):
                continue
            total += self_w
            frame: list | None = [0, 0, 0, name, parent]
            while frame is not None and "(gridfs/" not in frame[3]:
                frame = frame[4]
            callers[frame[3] if frame is not None else f"(no gridfs frame) {name}"] += self_w
    return total, callers


def caller_table(total: int, callers: Counter[str], n: int) -> dict[str, Any]:
    return {"python_samples": total, "top": [{"function": f, "pct": round(100 * c / total, 1)}
                                             for f, c in callers.most_common(n) if total]}


def top_of(total: int, own: Counter[str], n: int = 12) -> list[dict[str, Any]]:
    return [{"function": f, "own_samples": s, "own_pct": round(100 * s / total, 1)}
            for f, s in own.most_common(n) if s > 0 and total]


def top_functions(svg: Path, n: int = 12) -> dict:
    """Samples in total and the ``n`` functions with the most own samples."""
    total, own = own_samples(svg)
    return {"samples": total, "top": top_of(total, own, n)}


def grouped(own: Counter[str]) -> Counter[str]:
    """Own samples per group."""
    groups: Counter[str] = Counter()
    for function, samples in own.items():
        groups[group_of(function)] += samples
    return groups


# -- perf: where the CPU time goes, kernel included ------------------------------------------------------
# py-spy sees Python frames and counts a thread blocked in a system call (fsync waiting for the disk, recv
# waiting for an answer) as busy. perf samples CPU time only (cpu-clock), with the kernel's call chain: each
# sample is put in a group by the system call it is in, else by the library its leaf is in.

KERNEL_GROUPS: list[tuple[str, str]] = [
    ("kernel: fsync", r"sys_fsync|sys_fdatasync|vfs_fsync|ext4_sync_file|xfs_file_fsync|file_write_and_wait"),
    ("kernel: socket send", r"tcp_sendmsg|sock_sendmsg|sys_sendto|sys_sendmsg|unix_stream_sendmsg|sock_write_iter"),
    ("kernel: socket recv", r"tcp_recvmsg|sock_recvmsg|sys_recvfrom|sys_recvmsg|unix_stream_recvmsg|sock_read_iter"),
    ("kernel: epoll, poll, select", r"ep_poll|do_epoll|sys_epoll|do_sys_poll|do_select|sys_poll|sys_select"),
    ("kernel: futex (GIL, locks, wake-ups)", r"futex"),
    ("kernel: file write", r"vfs_write|ksys_write|ksys_pwrite|sys_pwrite|vfs_writev|do_writev"),
    ("kernel: file read", r"vfs_read|ksys_read|ksys_pread|sys_pread|filemap_read|do_readv"),
    ("kernel: open, close, stat, rename, xattrs", r"openat|do_sys_open|path_openat|rename|unlink|mkdir|statx|"
                                                  r"newfstat|vfs_fstat|setxattr|getxattr|getdents|sys_close|"
                                                  r"fput|sys_fstat|sys_lseek|sys_ftruncate|sys_fallocate"),
    ("kernel: connect, accept, socket set-up", r"sys_connect|sys_accept|sys_socket|sys_setsockopt|sys_getsockopt|"
                                               r"sys_bind|sys_listen|sys_shutdown|sock_close|inet_release"),
    ("kernel: memory (mmap, brk, page faults)", r"sys_mmap|sys_munmap|sys_brk|sys_madvise|sys_mprotect|"
                                                r"exc_page_fault|handle_mm_fault"),
    ("kernel: process, clock, signals", r"sys_clone|sys_wait|sys_kill|sys_clock|sys_rt_sig|sys_getpid|sys_sched"),
    ("kernel: interrupts, softirq (network, timers)", r"__do_softirq|irq_exit|net_rx_action|sysvec_|asm_common_"),
]
KERNEL_RES = [(name, re.compile(rule)) for name, rule in KERNEL_GROUPS]
NATIVE_GROUPS: list[tuple[str, str]] = [
    ("Python: garbage collector", r"^(gc_|collect|_PyObject_GC|visit_|subtract_refs|update_refs|move_unreachable|"
                                  r"deduce_unreachable).* \((libpython|python)"),
    ("Python: object allocation", r"^(_PyObject_Malloc|_PyObject_Free|_PyObject_Realloc|PyObject_Malloc|"
                                  r"PyObject_Free|pymalloc|_PyMem_|arena|new_arena|_Py_Dealloc)"
                                  r".* \((libpython|python)"),
    ("Python interpreter (bytecode, calls, objects)", r"\((libpython|python3?[\d.]*\))"),
    ("SQLite", r"sqlite"),
    ("JSON (C)", r"_json"),
    ("hashing, checksums", r"_hashlib|libcrypto|_md5|_sha|_blake2|crc32c|crc|libz|zlib|xxhash|hash"),
    ("erasure coding (ISA-L, zfec)", r"isal|zfec|libisal|erasure"),
    ("HTTP parsing (C: aiohttp, multidict, yarl)", r"_http_parser|_http_writer|_multidict|_quoting|aiohttp|yarl"),
    ("numpy", r"numpy|_multiarray|openblas"),
    ("libc: memcpy, memset", r"^(__)?mem(cpy|move|set|cmp)|^__memcpy|^__memmove|^__memset"),
    ("libc: malloc, free", r"malloc|^free|cfree|_int_free|_int_malloc|calloc|realloc|tcache"),
    ("libc: other", r"libc\.so|libpthread|ld-linux"),
    ("unknown frames", r"\[unknown\]"),
]
NATIVE_RES = [(name, re.compile(rule, re.IGNORECASE)) for name, rule in NATIVE_GROUPS]


def perf_sample_group(frames: list[tuple[str, str]]) -> str:
    """The group of one perf sample, given its frames (symbol, library) leaf first."""
    if frames[0][1] == "[kernel.kallsyms]":
        kernel = [sym for sym, dso in frames if dso == "[kernel.kallsyms]"]
        for name, rule in KERNEL_RES:
            if any(rule.search(sym) for sym in kernel):
                return name
        return "kernel: syscalls, other" if "do_syscall_64" in kernel else "kernel: other (scheduler, ...)"
    sym, dso = frames[0]
    leaf = f"{sym} ({os.path.basename(dso)})" if dso != "[unknown]" else f"{sym} ([unknown])"
    return next((name for name, rule in NATIVE_RES if rule.search(leaf)), f"native: {os.path.basename(dso)}")


FRAME_LINE = re.compile(r"^\s+[0-9a-f]+ (.+?) \((.+)\)$")


def perf_profile(data: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Samples, samples per group, samples per leaf function ("symbol (library)") of a perf.data file."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym,dso"], capture_output=True, text=True)
    if not out.stdout.strip():
        console.print(f"[yellow]perf script {data.name}:[/] {out.stderr[-500:]}")
    groups: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for block in out.stdout.split("\n\n"):
        frames = [(m.group(1), m.group(2)) for m in map(FRAME_LINE.match, block.splitlines()) if m]
        if not frames:
            continue
        total += 1
        groups[perf_sample_group(frames)] += 1
        sym, dso = frames[0]
        leaves[f"{re.sub(r'[+]0x[0-9a-f]+$', '', sym)} ({os.path.basename(dso)})"] += 1
    return total, groups, leaves


def _descendants(pid: int) -> list[int]:
    """``pid`` and its live descendants (a gateway's forked workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    children.setdefault(int(f.read().rsplit(b")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


# -- the driver: the client process of a scenario --------------------------------------------------------


def _say(what: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(what) + "\n")
    sys.stdout.flush()


def _for(seconds: float, threads: int, one: Any, limit: int | None = None) -> tuple[int, float]:
    """Run ``one(thread, i)`` in ``threads`` threads until ``seconds`` have passed (or ``limit`` calls);
    the calls done and the wall time."""
    done = [0] * threads
    counter = iter(range(limit if limit is not None else 1 << 62))
    lock = threading.Lock()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    def loop(t: int) -> None:
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            done[t] += one(t, i)

    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return sum(done), time.perf_counter() - t0


def drive(spec: dict[str, Any]) -> None:
    """Set up (clients, payload, the objects a GET scenario reads), say ready, wait for "go", do the work,
    report objects, bytes and seconds, then stay alive until stdin closes: the CPU budget of this process
    is read while it lives (a reaped child's CPU would count under its parent)."""
    name, seconds, threads, size = spec["scenario"], spec["seconds"], spec["threads"], spec["size"]
    payload = os.urandom(size) if size else b""
    tag = f"{name}-{os.getpid()}"
    if name.startswith("s3-"):
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=spec["endpoint"], aws_access_key_id=spec["keys"]["access_key"],
                          aws_secret_access_key=spec["keys"]["secret_key"], region_name="us-east-1",
                          config=Config(max_pool_connections=threads + 2))
        s3.put_object(Bucket="flame", Key=f"{tag}/warm", Body=b"x" * 4096)
        stored = [f"{tag}/get{i}" for i in range(4)]
        if name == "s3-large-get":
            for key in stored:
                s3.put_object(Bucket="flame", Key=key, Body=payload)
    else:
        client = GridClient(spec["config"])
        client.put("flame", f"{tag}/warm", os.urandom(4096))
        stored = [f"{tag}/get{i}" for i in range(spec["count"])] if name == "small-get" else []
        for i in range(0, len(stored), BATCH):
            client.put_many("flame", [(k, payload) for k in stored[i : i + BATCH]])
    _say({"ready": True})
    if sys.stdin.readline().strip() != "go":
        return

    def small_put(t: int, i: int) -> int:
        client.put("flame", f"{tag}/{t}/{i}", payload)
        return 1

    def small_get(t: int, i: int) -> int:
        assert len(client.get("flame", stored[i % len(stored)])) == size
        return 1

    def put_many(t: int, i: int) -> int:
        client.put_many("flame", [(f"{tag}/{i}/{j}", payload) for j in range(BATCH)])
        return BATCH

    def s3_put(t: int, i: int) -> int:
        s3.put_object(Bucket="flame", Key=f"{tag}/{i}", Body=payload)
        return 1

    def s3_get(t: int, i: int) -> int:
        body = s3.get_object(Bucket="flame", Key=stored[i % len(stored)])["Body"]
        while body.read(8 * MiB):
            pass
        return 1

    if name == "large-put":
        from gridfs.cli.main import main as grid_main

        t0 = time.perf_counter()
        for i in range(spec["count"]):
            if grid_main(["--config", spec["config"], "put", spec["source"], f"flame/object-{i}", "--policy",
                          spec["policy"]]):
                raise SystemExit("grid put failed")
        objects, wall = spec["count"], time.perf_counter() - t0
        size = spec["source_size"]
    else:
        work = {"small-put": small_put, "small-get": small_get, "small-put-many": put_many, "s3-small-put": s3_put,
                "s3-large-put": s3_put, "s3-large-get": s3_get}[name]
        objects, wall = _for(seconds, threads, work, spec.get("limit"))
    _say({"objects": objects, "bytes": objects * size, "seconds": wall})
    sys.stdin.read()  # until the profiler side has read this process's CPU time


# -- the profiler side ------------------------------------------------------------------------------------


def _user_sys(pids: list[int]) -> dict[int, tuple[float, float]]:
    """pid -> (user, system) CPU seconds of that process, the children it has reaped included."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks = [int(x) / TICK for x in fields[11:15]]  # utime stime cutime cstime
        out[pid] = (ticks[0] + ticks[2], ticks[1] + ticks[3])
    return out


def _driver_line(driver: subprocess.Popen, timeout: float) -> dict[str, Any]:
    """The driver's next report; its other output is passed on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = driver.stdout.readline()
        if not line:
            raise SystemExit(f"the driver exited ({driver.wait()})")
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
        sys.stdout.write(line)
    raise SystemExit("the driver did not answer in time")


def profiled(grid: LocalGrid, name: str, args: argparse.Namespace) -> list[tuple[str, LocalService | None]]:
    """(kind, service) pairs to record besides the client: the gateway (its workers with it), ``--rawx``
    storage servers spread over the nodes, the meta2 services."""
    services = grid.services()
    rawx = sorted((s for s in services if s.type == "rawx"), key=lambda s: (s.name.split("-vol")[1], s.name))
    chosen: list[tuple[str, LocalService | None]] = []
    if SCENARIOS[name]["s3"]:
        chosen += [("s3", s) for s in services if s.type == "s3"]
    chosen += [("rawx", s) for s in rawx[: args.rawx]]
    chosen += [("meta2", s) for s in services if s.type == "meta2"]
    return chosen


def run_scenario(grid: LocalGrid, name: str, args: argparse.Namespace, py_spy: str, spec: dict[str, Any],
                 prefix: str, scratch: Path) -> dict[str, Any]:
    """One scenario under py-spy: the summary (also written to ``<prefix>-summary.json``)."""
    spec = {**spec, "scenario": name, "seconds": args.seconds, "threads": args.threads or SCENARIOS[name]["threads"],
            "size": SCENARIOS[name]["size"]}
    driver = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--drive", json.dumps(spec)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    spies: list[tuple[str, int, Path, subprocess.Popen]] = []
    perfs: list[tuple[str, Path, subprocess.Popen]] = []
    try:
        _driver_line(driver, 900)  # ready: imports, warm-up and the objects a GET scenario reads are done
        targets = [("client", driver.pid, "driver")]
        for kind, svc in profiled(grid, name, args):
            # A gateway's workers are forked children of its first process: each is recorded, workers first
            # (the graph kept is a worker's); py-spy --subprocesses caught a tenth of their samples.
            pids = [svc.pid] if kind != "s3" else [*_descendants(svc.pid)[1:], svc.pid]
            targets += [(kind, pid, svc.name) for pid in pids]
        extra = [*(["--native"] if args.native else ["--nonblocking"]), *(["--gil"] if args.gil else [])]
        seen: Counter[str] = Counter()
        for kind, pid, _ in targets:
            seen[kind] += 1
            svg = scratch / f"{name}-{kind}{seen[kind]}.svg"
            cmd = [py_spy, "record", "-p", str(pid), "-r", str(args.rate), "-o", str(svg), *extra]
            spies.append((kind, pid, svg, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        if args.perf:
            by_kind: dict[str, list[int]] = {}
            for kind, pid, _ in targets:
                by_kind.setdefault(kind, []).append(pid)
            for kind, pids in by_kind.items():
                data = scratch / f"{name}-{kind}.perf"
                cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-c", str(10**9 // args.perf), "-g", "-o", str(data),
                       "-p", ",".join(map(str, pids))]
                perfs.append((kind, data, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        time.sleep(1.5)  # every py-spy attached before the work starts
        spy_pids = [p.pid for *_, p in spies] + [p.pid for *_, p in perfs]
        budget = CpuBudget(grid, clients=[driver.pid], include_self=False, exclude=spy_pids)
        load = [os.getloadavg()]
        profiled_pids = [pid for _, pid, _, _ in spies]
        before = _user_sys(profiled_pids + spy_pids)
        budget.start()
        driver.stdin.write("go\n")
        driver.stdin.flush()
        done = _driver_line(driver, 1800)
        phase = budget.stop()
        after = _user_sys(profiled_pids + spy_pids)
        load.append(os.getloadavg())
        used = {pid: (after[pid][0] - before[pid][0], after[pid][1] - before[pid][1])
                for pid in before if pid in after}
        spy_cpu = sum(sum(used.get(p, (0.0, 0.0))) for p in spy_pids)
    finally:
        errors = []
        for kind, _, recorder in perfs:
            recorder.send_signal(signal.SIGINT)
            _, err = recorder.communicate(timeout=120)
            if recorder.returncode not in (0, -signal.SIGINT):
                errors.append(f"perf {kind}: {err.decode()[-1000:]}")
        for kind, pid, _, spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its SVG when interrupted
            try:
                _, err = spy.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy.returncode:
                errors.append(f"{kind} {pid}: {err.decode()[-1000:]}")
        if driver.poll() is None:
            driver.stdin.close()
            driver.wait(timeout=60)
    if errors:
        console.print(f"[yellow]py-spy:[/] {errors}")
    objects, nbytes = done["objects"], done["bytes"]
    large = SCENARIOS[name]["size"] is None or SCENARIOS[name]["size"] >= MiB
    budget_row = phase.report(nbytes=nbytes) if large else phase.report(objects=objects)
    n_rawx = sum(1 for s in grid.services() if s.type == "rawx")
    summary: dict[str, Any] = {
        "scenario": name, "label": args.label, "note": args.note, "rate_hz": args.rate, "py_spy_gil": args.gil,
        "threads": spec["threads"], "object_size": nbytes // objects if objects else 0,
        "objects": objects, "seconds": round(done["seconds"], 2),
        "objects_per_s_profiled": round(objects / done["seconds"], 1),
        "mb_s_profiled": round(nbytes / done["seconds"] / 1e6, 1),
        "load_avg_1_5_15": {"before": [round(x, 2) for x in load[0]], "after": [round(x, 2) for x in load[1]]},
        "cpu_budget": budget_row,
        "py_spy_cpu_s": round(spy_cpu, 2),
        "unit": "per GB" if large else "per object",
        "kinds": {},
    }
    if name == "large-put":
        summary |= {"policy": spec["policy"], "size_mib": spec["source_size"] // MiB, "count": spec["count"]}
    per = objects if not large else nbytes / 1e9  # figures per object, or per GB
    unit = "s_per_gb" if large else "ms_per_object"
    factor = 1.0 if large else 1e3
    per_kind: dict[str, tuple[int, Counter[str], int, float, float]] = {}
    svgs: dict[str, list[Path]] = {}
    for kind, pid, svg, _ in spies:
        svgs.setdefault(kind, []).append(svg)
        total, own = own_samples(svg)
        t, o, n, user, system = per_kind.get(kind, (0, Counter(), 0, 0.0, 0.0))
        u, y = used.get(pid, (0.0, 0.0))
        per_kind[kind] = (t + total, o + own, n + 1, user + u, system + y)
    for kind, paths in svgs.items():
        # One graph per kind is kept, that of its busiest process (a gateway worker may have had no request);
        # the others are only counted.
        busiest = max(paths, key=lambda svg: own_samples(svg)[0])
        if busiest.exists():
            shutil.copyfile(busiest, f"{prefix}-{kind}.svg")
    for kind, (total, own, n, user, system) in per_kind.items():
        # The profiled processes' figures, scaled to every process of the kind (storage: --rawx of them).
        scale = n_rawx / n if kind == "rawx" else 1.0
        groups = grouped(own)
        busy = total - groups.get(IDLE, 0)
        cpu = (user + system) * scale * factor / per if per else 0.0
        summary["kinds"][kind] = {
            "svg": f"{Path(prefix).name}-{kind}.svg", "processes_profiled": n, "scaled_to": round(scale * n),
            f"cpu_{unit}": round(cpu, 3),  # measured (/proc) for the profiled processes, scaled
            f"budget_kind_cpu_{unit}": budget_row[BUDGET_KIND[kind]],  # bench/cpubudget.py: the whole kind
            "system_pct": round(100 * system / (user + system), 1) if user + system else None,
            "samples": total, "busy_samples": busy,
            f"busy_samples_{unit}": round(busy * scale * factor / args.rate / per, 3) if per else None,
            "groups_pct_of_busy": {g: round(100 * c / busy, 1) for g, c in groups.most_common() if g != IDLE and busy},
            # The kind's measured CPU split as its busy samples are: an estimate (py-spy sees Python frames).
            f"groups_cpu_{unit}_est": {g: round(cpu * c / busy, 3) for g, c in groups.most_common()
                                       if g != IDLE and busy},
            "idle_pct_of_samples": round(100 * groups.get(IDLE, 0) / total, 1) if total else None,
            "python_by_gridfs_caller": caller_table(*python_callers(svgs[kind]), args.top),
            "top": top_of(total, own, args.top),
        }
        summary[kind] = {"samples": total, "top": summary["kinds"][kind]["top"]}  # the keys of the one-object mode
    for kind, data, _ in perfs:
        samples, groups, leaves = perf_profile(data)
        data.unlink(missing_ok=True)
        scale = n_rawx / per_kind[kind][2] if kind == "rawx" else 1.0
        cpu = samples / args.perf * scale * factor / per if per else 0.0
        summary["kinds"][kind]["perf"] = {
            "samples": samples, f"cpu_{unit}": round(cpu, 3),
            "groups_pct": {g: round(100 * c / samples, 1) for g, c in groups.most_common()},
            f"groups_cpu_{unit}": {g: round(cpu * c / samples, 3) for g, c in groups.most_common()},
            "top_leaves": [{"function": f, "pct": round(100 * c / samples, 1)}
                           for f, c in leaves.most_common(args.top)],
        }
    Path(f"{prefix}-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    b = summary["cpu_budget"]
    unit = "CPU-s/GB" if b["unit"] == "cpu_s_per_gb" else "CPU-ms/object"
    console.print(f"[bold]{summary['scenario']}[/]: {summary['objects']} objects in {summary['seconds']} s "
                  f"({summary['objects_per_s_profiled']}/s, {summary['mb_s_profiled']} MB/s under py-spy), load "
                  f"{summary['load_avg_1_5_15']['before'][0]} -> {summary['load_avg_1_5_15']['after'][0]}; {unit}: "
                  + ", ".join(f"{k} {b[k]:.2f}" for k in (*KINDS, "total") if b[k]))
    for kind, k in summary["kinds"].items():
        cpu = next(v for key, v in k.items() if key.startswith("cpu_"))
        table = Table("function", "own", title=f"{summary['scenario']} {kind}: CPU {cpu} "
                      f"({k['system_pct']}% system), {k['samples']} samples ({k['idle_pct_of_samples']}% idle waits); "
                      f"busy: " + ", ".join(f"{g} {p}%" for g, p in list(k["groups_pct_of_busy"].items())[:5]))
        for row in k["top"][:8]:
            table.add_row(row["function"], f"{row['own_pct']:.1f} %")
        console.print(table)
        if "perf" in k:
            console.print(f"  perf, {kind}: {k['perf']['samples']} CPU samples; "
                          + ", ".join(f"{g} {p}%" for g, p in list(k["perf"]["groups_pct"].items())[:8]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", help="file names: <label>-[<scenario>-]<kind>.svg, ...-summary.json")
    p.add_argument("--scenario", help=f"comma-separated, of: {', '.join(SCENARIOS)} (default: the one-object "
                                      "large-put, with the file names <label>-client.svg, <label>-rawx.svg)")
    p.add_argument("--size-mib", type=int, default=1024, help="large-put: the object")
    p.add_argument("--policy", default="EC63", help="large-put: its policy")
    p.add_argument("--count", type=int, default=1, help="large-put: puts of the object, one after another")
    p.add_argument("--seconds", type=float, default=40.0, help="the other scenarios: how long the work runs")
    p.add_argument("--threads", type=int, default=0, help="the driver's threads (default: per scenario)")
    p.add_argument("--get-objects", type=int, default=4000, help="small-get: objects stored first, read in turn")
    p.add_argument("--s3-large-limit", type=int, default=24, help="s3-large-put: at most this many 64 MiB PUTs")
    p.add_argument("--rawx", type=int, default=3, help="storage servers recorded (one per node first)")
    p.add_argument("--rate", type=int, default=200, help="samples per second")
    p.add_argument("--top", type=int, default=15, help="top functions kept per kind")
    p.add_argument("--native", action="store_true", help="C frames too (zfec, hashes): py-spy --native, which "
                                                         "pauses the processes (no --nonblocking)")
    p.add_argument("--gil", action="store_true", help="py-spy --gil: only the thread holding the GIL, i.e. "
                                                      "the interpreter's CPU time, blocked threads left out")
    p.add_argument("--perf", type=int, default=250 if shutil.which("perf") else 0,
                   help="also perf record each kind: a cpu-clock sample every 1/N s of CPU time (a fixed period: "
                        "samples times it is CPU time), with kernel call chains; 0: no perf")
    p.add_argument("--note", default="", help="kept in the summaries (the tree profiled, say)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "flame")
    p.add_argument("--drive", help=argparse.SUPPRESS)  # internal: the scenario's client process
    args = p.parse_args()
    if args.drive:
        drive(json.loads(args.drive))
        return
    if not args.label:
        p.error("--label is required")
    names = args.scenario.split(",") if args.scenario else ["large-put"]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}: {', '.join(SCENARIOS)}")
    py_spy = find_py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flame-", dir=os.environ.get("GRID_BENCH_DIR")) as tmp:
        scratch = Path(tmp)
        grid = LocalGrid(scratch / "grid")
        with_s3 = any(SCENARIOS[n]["s3"] for n in names)
        cfg = grid.up(nodes=3, volumes=3, s3_port=0 if with_s3 else None, webhdfs_port=None)
        try:
            spec: dict[str, Any] = {"config": str(grid.config_path), "count": args.get_objects,
                                    "limit": None}
            if with_s3:
                from gridfs.gateways.s3.admin import set_owner
                from gridfs.gateways.s3.users import UserStore

                user = UserStore(grid.config_path).create("flame")
                GridClient(grid.config_path).create_bucket("flame")
                set_owner(grid.config_path, "flame", "flame")  # an owner counts only sealed under the master key
                spec |= {"endpoint": cfg.extra["s3"]["url"],
                         "keys": {"access_key": user.access_key, "secret_key": user.secret_key}}
            else:
                GridClient(grid.config_path).create_bucket("flame")
            for name in names:
                one = dict(spec)
                if name == "large-put":
                    source = scratch / "source.bin"
                    if not source.exists():
                        rng = np.random.default_rng(7)
                        with open(source, "wb") as f:
                            for _ in range(max(1, args.size_mib // 64)):
                                f.write(rng.bytes(min(64, args.size_mib) * MiB))
                        os.sync()  # no writeback of the source during the put
                    one |= {"source": str(source), "source_size": source.stat().st_size, "policy": args.policy,
                            "count": args.count}
                if name == "s3-large-put":
                    one["limit"] = args.s3_large_limit
                prefix = str(args.out / (args.label if args.scenario is None else f"{args.label}-{name}"))
                os.sync()  # no writeback of the scenario before in this one
                run_scenario(grid, name, args, py_spy, one, prefix, scratch)
        finally:
            grid.down()


if __name__ == "__main__":
    main()
