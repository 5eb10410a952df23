"""One rank's copier: asks for work, copies it, reports, until told to stop.

Bytes are read once, into the grid client's own stripe buffers (``readinto``), and
hashed on the way (xxh3-128, the checksum the grid stores per object and per part),
so verification costs no second read. Small files run several at a time on threads:
their cost is latency (fsyncs on the storage servers), not CPU. Into the grid, the small
files of one reply are read whole and stored together instead (``put_many``: one chunk
request per storage server and one directory commit per batch, not one of each per file),
each still with its own checksum check, result and journal line; a batch the grid refuses
is stored again file by file, so one bad file fails alone. While one such reply is being
stored, the rank already asks for the next and stores it alongside (AHEAD replies at once),
so that the client work of one overlaps the other's waits on the storage servers and the
directory.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO

import xxhash

from grid_distcp.endpoints import MTIME_PROP, LocalSource, copy_buffer_size, fmt_mtime, open_source
from grid_distcp.journal import Journal, JsonLog
from grid_distcp.options import Options
from grid_distcp.tasks import CHECK, COMPLETE, COPIED, COPY, FAILED, PART, SKIPPED, FileEntry, Result, Task
from gridfs.client.grid import BATCH_BYTES, BATCH_OBJECTS

PROGRESS_EVERY = 0.5
AHEAD = 2  # replies of small files a rank stores at once

log = logging.getLogger("grid_distcp")


class Throttle:
    """``-bandwidth``: keeps this rank's read rate under a limit."""

    def __init__(self, mb_per_s: float) -> None:
        self.rate = mb_per_s * 1e6
        self.start = time.monotonic()
        self.sent = 0
        self.lock = threading.Lock()

    def consume(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            self.sent += n
            ahead = self.sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class ProgressFeed:
    """Batches byte counts and hands them to the queue at most twice a second."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.pending = 0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.pending += n
            if time.monotonic() - self.last < PROGRESS_EVERY:
                return
            n, self.pending, self.last = self.pending, 0, time.monotonic()
        self.send(n)

    def flush(self) -> None:
        with self.lock:
            n, self.pending = self.pending, 0
        if n:
            self.send(n)


class SourceReader:
    """A file-like view of ``length`` bytes of a source, hashed and throttled as it is read."""

    def __init__(self, f: BinaryIO, length: int, throttle: Throttle, progress: ProgressFeed) -> None:
        self.f = f
        self.left = length
        self.hasher = xxhash.xxh3_128()
        self.throttle = throttle
        self.progress = progress

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        want = min(len(view), self.left)
        if want <= 0:
            return 0
        got = self.f.readinto(view[:want])
        if not got:
            raise OSError(f"the source ended {self.left} bytes early (did it change during the copy?)")
        self.hasher.update(view[:got])
        self.left -= got
        self.throttle.consume(got)
        self.progress.add(got)
        return got


    def drain(self) -> None:
        buf = bytearray(copy_buffer_size(self.left))
        while self.readinto(buf):
            pass

    def read_all(self) -> bytearray:
        """What is left, whole (a small file bound for a batch)."""
        buf = bytearray(self.left)
        view, got = memoryview(buf), 0
        while got < len(buf):
            got += self.readinto(view[got:])
        return buf

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()


def batches(tasks: list[Task]) -> Iterator[list[Task]]:
    """Cut as ``put_many`` cuts its directory commits, so that each batch is one commit, all or none."""
    batch: list[Task] = []
    held = 0
    for task in tasks:
        batch.append(task)
        held += task.entry.size
        if len(batch) >= BATCH_OBJECTS or held >= BATCH_BYTES:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def object_properties(entry: FileEntry, preserve: bool) -> dict[str, str]:
    props = {MTIME_PROP: fmt_mtime(entry.mtime)}
    if preserve:
        props.update({"distcp.mode": f"{entry.mode:o}", "distcp.owner": entry.owner, "distcp.group": entry.group})
    return props


class Worker:
    def __init__(self, rank: int, opts: Options, dest: Any, queue: Any, journal: Journal, log: JsonLog) -> None:
        self.rank = rank
        self.opts = opts
        self.dest = dest
        self.queue = queue
        self.journal = journal
        self.log = log
        self.sources: dict[int, Any] = {}
        self.throttle = Throttle(opts.bandwidth)
        self.feed = ProgressFeed(lambda n: queue.progress(rank, n))
        self.pool = ThreadPoolExecutor(opts.threads, thread_name_prefix="distcp-file")
        self.background = ThreadPoolExecutor(AHEAD, thread_name_prefix="distcp-ahead")
        # Set once the grid is unreachable: the rest of the batch fails at once instead of each
        # task waiting out the client's retry budget (the job stops and is resumed anyway).
        self.grid_down = ""

    def run(self) -> None:
        results: list[Result] = []
        running: list[Future[list[Result]]] = []  # replies of small files being stored in the background
        try:
            while True:
                self.feed.flush()
                reply = self.queue.next(self.rank, results, bool(running))
                results = []
                if reply.stop:
                    return
                if reply.wait:
                    if running:  # nothing more to overlap with: the oldest's results go with the next ask
                        results = running.pop(0).result()
                    else:
                        time.sleep(0.05)
                    continue
                if not self._overlaps(reply.tasks):  # while busy, only small ones that are not copies (-verify)
                    results = self.execute_all(reply.tasks)
                    continue
                running.append(self.background.submit(self.execute_all, reply.tasks))
                if len(running) >= AHEAD:
                    results = running.pop(0).result()
        finally:
            wait(running)
            self.background.shutdown(wait=True)
            self.pool.shutdown(wait=True)

    def _overlaps(self, tasks: list[Task]) -> bool:
        """Whether to store this reply in the background while the next one is fetched: small files only."""
        return self.opts.threads > 1 and all(self._batchable(t) for t in tasks)

    def execute_all(self, tasks: list[Task]) -> list[Result]:
        """One reply's tasks: small files into the grid in batches, the others several at a time on threads."""
        small = [t for t in tasks if self._batchable(t)]
        batched = {id(t) for t in small}
        alone = [t for t in tasks if id(t) not in batched]
        if len(alone) == 1 and not small:
            return [self.execute(alone[0])]
        running = [self.pool.submit(self.execute, t) for t in alone]
        results = [r for batch in batches(small) for r in self.copy_batch(batch)]
        return results + [f.result() for f in running]

    def _batchable(self, task: Task) -> bool:
        if task.kind != COPY or not hasattr(self.dest, "put_many"):
            return False
        try:
            return bool(self.dest.batchable(task.entry.size, self.opts.policy))
        except Exception:  # the file's own copy will say what is wrong
            return False

    def _source(self, index: int) -> Any:
        if index not in self.sources:
            self.sources[index] = open_source(self.opts.sources[index], index)
        return self.sources[index]

    def _reader(self, entry: FileEntry, offset: int, length: int) -> SourceReader:
        return SourceReader(self._source(entry.source).open(entry, offset), length, self.throttle, self.feed)

    def _source_hash(self, entry: FileEntry, offset: int, length: int) -> str:
        """The checksum of a range of the source, read and nothing else (resume and -verify checks)."""
        reader = self._reader(entry, offset, length)
        try:
            reader.drain()
        finally:
            reader.f.close()
        return reader.hexdigest()

    def execute(self, task: Task) -> Result:
        started = time.monotonic()
        try:
            self._check_grid()
            result = {COPY: self._copy, PART: self._part, COMPLETE: self._complete, CHECK: self._check}[task.kind](task)
        except Exception as exc:
            result = self._failed(task, exc)
        return self._finish(result, time.monotonic() - started)

    def _check_grid(self) -> None:
        if self.grid_down:
            raise ConnectionError(f"not tried, the grid is unreachable: {self.grid_down}")

    def _failed(self, task: Task, exc: Exception) -> Result:
        result = Result(task, FAILED, error=f"{type(exc).__name__}: {exc}", fatal=isinstance(exc, ConnectionError))
        if result.fatal and not self.grid_down:
            self.grid_down = result.error
        return result

    def _finish(self, result: Result, seconds: float) -> Result:
        """Every task's end: its journal line once stored, its log line."""
        task = result.task
        result.rank = self.rank
        result.seconds = seconds
        if result.status == COPIED and task.kind in (COPY, COMPLETE, CHECK):
            self.journal.done(task.key, task.entry.size, task.entry.mtime, result.checksum)
        self.log.result(result)
        return result

    def _copy(self, task: Task) -> Result:
        e = task.entry
        reader = self._reader(e, 0, e.size)
        try:
            stored = self.dest.put(task.key, reader, e.size, self.opts.policy,
                                   object_properties(e, self.opts.preserve))
        finally:
            reader.f.close()
        return self._copied(task, reader.hexdigest(), stored)

    @staticmethod
    def _copied(task: Task, source: str, stored: str | None) -> Result:
        """A whole file stored: compare the checksum the destination recorded with the source's."""
        e = task.entry
        if stored is not None and stored != source:  # None: the destination keeps no checksum of its own
            return Result(task, FAILED, error=f"checksum mismatch: source {source}, stored {stored}")
        # A source that has its own checksum (a grid:// source) is compared too.
        verified = not e.checksum or e.checksum == source
        return Result(task, COPIED, nbytes=e.size, checksum=source, verified=verified)

    def _local(self, sources: set[int]) -> bool:
        try:
            return all(isinstance(self._source(s), LocalSource) for s in sources)
        except Exception:  # each read will say what is wrong
            return False

    def _read_whole(self, task: Task) -> tuple[bytearray, str]:
        e = task.entry
        reader = self._reader(e, 0, e.size)
        try:
            data = reader.read_all()
        finally:
            reader.f.close()
        return data, reader.hexdigest()

    def copy_batch(self, tasks: list[Task]) -> list[Result]:
        """COPY tasks of small files (one ``put_many`` commit's worth): each read whole and hashed, then
        all stored by one ``put_many``; if the grid refuses the batch, each is stored again on its own."""
        started = time.monotonic()
        outcome: dict[int, Result] = {}
        loaded: dict[int, tuple[bytearray, str]] = {}

        def read(i: int) -> None:
            try:
                self._check_grid()
                loaded[i] = self._read_whole(tasks[i])
            except Exception as exc:
                outcome[i] = self._failed(tasks[i], exc)

        if self._local({t.entry.source for t in tasks}):
            for i in range(len(tasks)):
                read(i)
        else:  # remote sources: their latency, not our CPU, is the cost
            list(self.pool.map(read, range(len(tasks))))
        order = sorted(loaded)
        items = [(tasks[i].key, loaded[i][0], object_properties(tasks[i].entry, self.opts.preserve)) for i in order]
        stored: list[str] | None = None
        try:
            self._check_grid()
            stored = self.dest.put_many(items, self.opts.policy) if items else []
        except Exception as exc:
            if not self.grid_down:
                log.warning("rank %d: a batch of %d files failed (%s: %s); storing them one by one", self.rank,
                            len(items), type(exc).__name__, exc)
        if stored is not None:
            for i, digest in zip(order, stored, strict=True):
                outcome[i] = self._copied(tasks[i], loaded[i][1], digest)
        else:
            for (key, data, props), i in zip(items, order, strict=True):
                try:
                    self._check_grid()
                    outcome[i] = self._copied(tasks[i], loaded[i][1],
                                              self.dest.put(key, data, len(data), self.opts.policy, props))
                except Exception as exc:
                    outcome[i] = self._failed(tasks[i], exc)
        share = (time.monotonic() - started) / len(tasks)
        return [self._finish(outcome[i], share) for i in range(len(tasks))]

    def _part(self, task: Task) -> Result:
        # Stored by an earlier run: check it against the source, keep it if equal.
        if task.expected and self._source_hash(task.entry, task.offset, task.length) == task.expected:
            return Result(task, SKIPPED, checksum=task.expected, verified=True)
        reader = self._reader(task.entry, task.offset, task.length)
        try:
            stored = self.dest.put_part(task.key, task.upload_id, task.part, reader)
        finally:
            reader.f.close()
        source = reader.hexdigest()
        if stored != source:
            return Result(task, FAILED, error=f"part {task.part} checksum mismatch: source {source}, stored {stored}")
        return Result(task, COPIED, nbytes=task.length, checksum=source, verified=True)

    def _complete(self, task: Task) -> Result:
        hashes = self.dest.complete(task.key, task.upload_id, task.parts, task.length)
        verified = hashes == task.expected.split(",")
        if not verified:
            return Result(task, FAILED, error="assembled parts do not match the source's part checksums")
        return Result(task, COPIED, nbytes=0, checksum=f"{len(hashes)} parts", verified=True)

    def _check(self, task: Task) -> Result:
        """-update -verify: same size and mtime; copy again unless the checksums agree."""
        e = task.entry
        if ":" in task.expected:  # a split object: compare part by part
            part_size, _, joined = task.expected.partition(":")
            size = int(part_size)
            hashes = [self._source_hash(e, offset, min(size, e.size - offset)) for offset in range(0, e.size, size)]
            same = ",".join(hashes) == joined
        else:
            same = self._source_hash(e, 0, e.size) == task.expected
        if same:
            return Result(task, SKIPPED, checksum=task.expected, verified=True)
        return self._copy(task)

