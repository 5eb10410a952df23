"""The dynamic work queue: which rank copies what next.

Work is handed out on demand, largest first (the parts of split files, then whole
files by size), so a slow rank or a huge file does not hold the job: whoever is free
takes the next piece. Small files go out in batches to save round trips, up to 256 a reply
(a grid destination stores them with ``put_many``: the more per request, the fewer fsyncs
and directory commits per file), fewer as the queue runs down. When every
part of a split file is stored, the assembly of that file is queued at the front.
The coordinator keeps the job's tallies (bytes, files, per-rank balance) and stops
everyone when the grid itself becomes unreachable.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from grid_distcp.tasks import COMPLETE, COPIED, FAILED, PART, SKIPPED, Result, Task

SMALL_FILE = 4 * 1024 * 1024
MAX_BATCH = 256  # files per reply
MAX_BATCH_BYTES = 256 * 1024 * 1024  # and bytes: 64 files of SMALL_FILE, as many as a reply held before


@dataclass
class Reply:
    tasks: list[Task] = field(default_factory=list)
    stop: bool = False  # no more work for this rank, ever

    @property
    def wait(self) -> bool:
        """Nothing to do now, but parts still running elsewhere may queue an assembly."""
        return not self.tasks and not self.stop


@dataclass
class RankTally:
    bytes: int = 0
    files: int = 0
    tasks: int = 0
    busy: float = 0.0


@dataclass
class _Split:
    left: set[int]
    hashes: dict[int, str] = field(default_factory=dict)
    verified: bool = True
    failed: str = ""
    template: Task | None = None


class Coordinator:
    def __init__(
        self,
        tasks: list[Task],
        nranks: int,
        on_bytes: Callable[[int], None] | None = None,
        on_file: Callable[[], None] | None = None,
    ) -> None:
        self.queue = deque(sorted(tasks, key=lambda t: (t.kind != PART, -t.weight)))
        self.nranks = nranks
        self.on_bytes = on_bytes or (lambda n: None)
        self.on_file = on_file or (lambda: None)
        self.lock = threading.Lock()
        self.splits: dict[str, _Split] = {}
        for t in tasks:
            if t.kind == PART:
                split = self.splits.setdefault(t.key, _Split(left=set()))
                split.left.add(t.part)
                if t.part == 1:
                    split.template = t
        self.ranks = [RankTally() for _ in range(nranks)]
        self.results: list[Result] = []  # file-level outcomes, for the report
        self.abort_reason = ""
        self.started = time.monotonic()

    # -- called by ranks ----------------------------------------------------------

    def progress(self, rank: int, nbytes: int) -> None:
        self.on_bytes(nbytes)

    def next(self, rank: int, results: list[Result], busy: bool = False) -> Reply:
        """Record a rank's results and hand it its next tasks. ``busy``: the rank is still copying a reply of
        small files and asks ahead; it gets small files or nothing (wait), never stop, since the results of
        the reply it holds are still to come."""
        with self.lock:
            for r in results:
                self._record(rank, r)
            if busy:
                small = self.queue and self.queue[0].kind != PART and self.queue[0].weight < SMALL_FILE
                return Reply(self._take()) if small and not self.abort_reason else Reply()
            if self.abort_reason:
                return Reply(stop=True)
            if self.queue:
                return Reply(self._take())
            if any(s.left and not s.failed for s in self.splits.values()):
                return Reply()  # wait: an assembly may still come
            return Reply(stop=True)

    # -- internals ----------------------------------------------------------------

    def _take(self) -> list[Task]:
        first = self.queue.popleft()
        batch = [first]
        if first.kind != PART and first.weight < SMALL_FILE:
            size = max(1, min(MAX_BATCH, len(self.queue) // (self.nranks * 2)))
            held = first.weight
            while len(batch) < size and self.queue and self.queue[0].kind != PART \
                    and self.queue[0].weight < SMALL_FILE and held + self.queue[0].weight <= MAX_BATCH_BYTES:
                held += self.queue[0].weight
                batch.append(self.queue.popleft())
        return batch

    def _record(self, rank: int, r: Result) -> None:
        tally = self.ranks[rank]
        tally.tasks += 1
        tally.busy += r.seconds
        if r.status == COPIED:
            tally.bytes += r.nbytes
        if r.fatal and not self.abort_reason:
            self.abort_reason = r.error
        if r.task.kind == PART:
            self._record_part(r)
            return
        if r.task.kind != COMPLETE:
            tally.files += r.status == COPIED
        self.results.append(r)
        self.on_file()

    def _record_part(self, r: Result) -> None:
        split = self.splits[r.task.key]
        split.left.discard(r.task.part)
        if r.status == FAILED:
            if not split.failed:
                split.failed = r.error
                failed = Result(r.task, FAILED, error=f"part {r.task.part}: {r.error}", rank=r.rank)
                self.results.append(failed)
                self.on_file()
            return
        split.hashes[r.task.part] = r.checksum
        split.verified &= r.verified
        if not split.left and not split.failed and split.template is not None:
            t = split.template
            expected = ",".join(split.hashes[n] for n in range(1, t.parts + 1))
            self.queue.appendleft(Task(COMPLETE, t.entry, t.key, length=t.length, upload_id=t.upload_id,
                                       parts=t.parts, expected=expected))

    # -- summary ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {COPIED: 0, SKIPPED: 0, FAILED: 0, "verified": 0, "bytes": 0}
        for r in self.results:
            out[r.status] += 1
            out["verified"] += r.verified
            if r.status == COPIED:
                out["bytes"] += r.task.entry.size
        return out
