"""What one volume asks of its disk, how slowly the disk answers, and the test-mode throttle.

:class:`IOStats` counts the I/O pattern of a :class:`~gridfs.storage.store.Volume` since the server
started: bytes written (and how many of them went straight to the disk, O_DIRECT) and write calls (with a
power-of-two histogram of the call sizes), file fsyncs, directory fsyncs (each timed, into a histogram of
their seconds), files created, xattrs set, renames, hard links, unlinks, bytes read and read calls.
These are what an HDD pays for: each fsync is a cache flush (a rotation or more), each file a metadata
write, each small write a chance of a seek. ``GET /info`` (``io``), ``/metrics`` (``grid_rawx_io_*``) and
the benchmarks (bench/iopattern.py) read them.

How slow the volume is, for placement: every chunk write or read of at least ``TIMED_MIN`` bytes is timed
from its first to its last disk call (write, fsync, rename, directory fsync; read), throttle waits
included, hashing excluded, and an EWMA of its milliseconds per MiB is kept. The heartbeat carries
``io_ms_per_mib``: that figure, or more when a transfer in progress has already taken longer per MiB
than it says (a stalled disk shows before its first slow write completes). It is a cost per byte, not
a busy fraction: a busy fraction falls as soon as placement steers writes away, so a slow volume scored
by it keeps being sent a steady share of chunks, each holding up its stripe; a slow disk stays slow per
byte however few chunks it gets. Small transfers are not timed: their cost is the fsync's latency, the
same on every volume, and would read as a low bandwidth. ``busy_seconds`` (wall time with at least one
transfer in progress) is counted too, for operators.

``--throttle MB/s`` (a test mode) makes the volume a disk of that bandwidth: every write and read waits
its turn in a :class:`~gridfs.common.throttle.RateLimiter` shared by the volume's threads.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gridfs.common.fileio import WRITE_STEP, write_all
from gridfs.common.metrics import FSYNC_BUCKETS
from gridfs.common.throttle import RateLimiter

MiB = 1 << 20
TIMED_MIN = 256 << 10  # transfers timed for io_ms_per_mib: large enough that bandwidth, not fsync latency, rules
EWMA_WEIGHT = 0.3  # weight of the newest timed transfer
HIST_MIN, HIST_MAX = 9, 26  # write-size buckets: up to 512 B, 1 KiB, ... 64 MiB, then larger
COUNTERS = ("bytes_written", "direct_bytes_written", "write_calls", "fsyncs", "dir_fsyncs", "files_created",
            "xattr_writes", "renames", "links", "unlinks", "bytes_read", "read_calls")


def size_bucket(nbytes: int) -> int:
    """The power of two a write of ``nbytes`` is counted under (the smallest >= nbytes, within the range)."""
    return min(HIST_MAX + 1, max(HIST_MIN, (nbytes - 1).bit_length()))


class IOStats:
    def __init__(self, throttle_mb: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.write_sizes = dict.fromkeys(range(HIST_MIN, HIST_MAX + 2), 0)
        # fsync seconds per kind ("file", "dir"): calls per FSYNC_BUCKETS bound (and one over the last), and the sum.
        self.fsync_times = {kind: [0] * (len(FSYNC_BUCKETS) + 1) for kind in ("file", "dir")}
        self.fsync_seconds = {"file": 0.0, "dir": 0.0}
        self.throttle = RateLimiter.mb_per_s(throttle_mb) if throttle_mb > 0 else None
        self.throttle_seconds = 0.0
        self.busy_seconds = 0.0
        self._active = 0
        self._busy_since = 0.0
        self._inflight: dict[int, tuple[float, int]] = {}  # transfer number -> (start, bytes)
        self._numbers = itertools.count()
        self.ms_per_mib: float | None = None

    # -- counting ----------------------------------------------------------------------------

    def count(self, **deltas: int) -> None:
        with self._lock:
            for name, n in deltas.items():
                self.counts[name] += n

    def _pace(self, nbytes: int) -> None:
        if self.throttle is not None:
            t0 = time.monotonic()
            self.throttle.take(nbytes)
            with self._lock:
                self.throttle_seconds += time.monotonic() - t0

    def write(self, fd: int, data: memoryview, direct: bool = False) -> None:
        """All of ``data`` to ``fd`` in WRITE_STEP calls (each paced by the throttle), counted; ``direct``: the
        file is open with O_DIRECT."""
        for off in range(0, data.nbytes, WRITE_STEP):
            piece = data[off : off + WRITE_STEP]
            self._pace(piece.nbytes)
            write_all(fd, piece)
            with self._lock:
                self.write_sizes[size_bucket(piece.nbytes)] += 1
        self.count(bytes_written=data.nbytes, write_calls=-(-data.nbytes // WRITE_STEP),
                   direct_bytes_written=data.nbytes if direct else 0)

    def read(self, fd: int, into: memoryview, offset: int) -> int:
        """``os.preadv`` of ``into`` at ``offset`` (paced by the throttle), counted."""
        self._pace(into.nbytes)
        got = os.preadv(fd, [into], offset)
        self.count(bytes_read=got, read_calls=1)
        return got

    def fsync(self, fd: int, *, directory: bool = False) -> None:
        t0 = time.monotonic()
        os.fsync(fd)
        seconds, kind = time.monotonic() - t0, "dir" if directory else "file"
        with self._lock:
            self.fsync_times[kind][bisect.bisect_left(FSYNC_BUCKETS, seconds)] += 1
            self.fsync_seconds[kind] += seconds
        self.count(**{"dir_fsyncs" if directory else "fsyncs": 1})

    def fsync_dir(self, path: str | os.PathLike) -> None:
        """fsync a folder: the names created or renamed in it become durable."""
        fd = os.open(path, os.O_RDONLY)
        try:
            self.fsync(fd, directory=True)
        finally:
            os.close(fd)

    # -- timing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transfer(self, nbytes: int) -> Iterator[None]:
        """Times the disk calls of one chunk write or read of ``nbytes`` (see the module docstring)."""
        t0 = time.monotonic()
        with self._lock:
            key = next(self._numbers)
            if not self._active:
                self._busy_since = t0
            self._active += 1
            self._inflight[key] = (t0, nbytes)
        ok = False
        try:
            yield
            ok = True
        finally:
            t1 = time.monotonic()
            with self._lock:
                self._active -= 1
                if not self._active:
                    self.busy_seconds += t1 - self._busy_since
                self._inflight.pop(key, None)
                if ok and nbytes >= TIMED_MIN:
                    sample = (t1 - t0) * 1000 * MiB / nbytes
                    old = self.ms_per_mib
                    self.ms_per_mib = sample if old is None else old + EWMA_WEIGHT * (sample - old)

    def slowness(self) -> float | None:
        """Milliseconds per MiB: the EWMA, raised by any timed transfer in progress that already took longer."""
        now = time.monotonic()
        with self._lock:
            worst = max(((now - t0) * 1000 * MiB / n for t0, n in self._inflight.values() if n >= TIMED_MIN),
                        default=None)
            if worst is None or (self.ms_per_mib is not None and self.ms_per_mib >= worst):
                return self.ms_per_mib
            return worst

    # -- reporting ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter (JSON-ready): what ``GET /info`` answers as ``io``."""
        now = time.monotonic()
        with self._lock:
            busy = self.busy_seconds + (now - self._busy_since if self._active else 0.0)
            out: dict[str, Any] = {**self.counts, "write_sizes": {str(1 << b): n for b, n in
                                                                   self.write_sizes.items() if n}}
            out.update(busy_seconds=round(busy, 6), throttle_seconds=round(self.throttle_seconds, 6),
                       throttle_mb=self.throttle.rate / 1e6 if self.throttle else 0.0, inflight=self._active)
        slow = self.slowness()
        out["ms_per_mib"] = None if slow is None else round(slow, 3)
        return out

    def write_size_counts(self) -> dict[int, int]:
        """Write calls per size bucket (power of two), a consistent copy."""
        with self._lock:
            return dict(self.write_sizes)

    def fsync_histogram(self) -> dict[str, tuple[list[int], float]]:
        """Per kind ("file", "dir"): fsync calls per FSYNC_BUCKETS bound (one more: above the last), and their
        total seconds; a consistent copy."""
        with self._lock:
            return {kind: (list(counts), self.fsync_seconds[kind]) for kind, counts in self.fsync_times.items()}

    def heartbeat(self) -> dict[str, float]:
        """The figure scoring uses (gridfs/conscience/scoring.py); none before the first timed transfer."""
        slow = self.slowness()
        return {} if slow is None else {"io_ms_per_mib": round(slow, 3)}


class IOCollector(Collector):
    """Prometheus view of one volume's IOStats: counters, and the write sizes as a histogram."""

    def __init__(self, io: IOStats) -> None:
        self.io = io

    def collect(self) -> Iterable[Any]:
        snap = self.io.snapshot()
        for name in (*COUNTERS, "busy_seconds", "throttle_seconds"):
            yield CounterMetricFamily(f"grid_rawx_io_{name}", f"volume I/O: {name.replace('_', ' ')}",
                                      value=snap[name])
        buckets, total = [], 0
        sizes = self.io.write_size_counts()
        for b in range(HIST_MIN, HIST_MAX + 1):
            total += sizes[b]
            buckets.append((str(float(1 << b)), total))
        buckets.append(("+Inf", total + sizes[HIST_MAX + 1]))
        yield HistogramMetricFamily("grid_rawx_io_write_size_bytes", "size of each write call to chunk files",
                                    buckets=buckets, sum_value=snap["bytes_written"])
        fsyncs = HistogramMetricFamily("grid_rawx_io_fsync_seconds", "time of each fsync, of files and of folders",
                                       labels=["kind"])
        for kind, (counts, seconds) in self.io.fsync_histogram().items():
            cumulative = list(itertools.accumulate(counts))
            fsyncs.add_metric([kind], [*zip(map(str, FSYNC_BUCKETS), cumulative[:-1], strict=True),
                                       ("+Inf", cumulative[-1])], sum_value=seconds)
        yield fsyncs
