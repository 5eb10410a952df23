"""The read path: object ranges -> metachunk ranges -> chunk ranges, in parallel.

Only the chunks (and the byte ranges within them) that hold the requested bytes are
fetched, straight into the caller's buffer. When a chunk is missing, unreachable or
corrupt, the same byte range of other chunks is fetched and the lost ones rebuilt
with one decode; with copies, the next replica is read. A chunk whose server the
conscience reports down is not waited on: its parity is fetched at once, beside the
reads of the other chunks (with copies, copies on live servers are read first).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np

from gridfs.client.context import IOContext
from gridfs.coding.ec import ChunkRange, data_ranges, get_codec
from gridfs.coding.policies import policy_from_chunk_method
from gridfs.common.errors import ChecksumMismatch, DataUnavailable, GridError, InvalidName, InvalidRange
from gridfs.directory.model import ChunkInfo, Metachunk, ObjectInfo
from gridfs.storage.client import parse_chunk_url

log = logging.getLogger("gridfs.client")


class ObjectReader:
    """Reads byte ranges of one committed object version."""

    def __init__(self, ctx: IOContext, info: ObjectInfo) -> None:
        self.ctx = ctx
        self.info = info
        self.policy = policy_from_chunk_method(info.policy, info.chunk_method) if info.chunk_method else None
        self.codec = (
            get_codec(self.policy.codec, self.policy.k, self.policy.m)
            if self.policy is not None and self.policy.is_ec
            else None
        )

    @property
    def name(self) -> str:
        return f"{self.info.bucket}/{self.info.key}"

    def check_range(self, offset: int, length: int | None) -> tuple[int, int]:
        size = self.info.size
        if offset < 0 or (length is not None and length < 0):
            raise InvalidRange(f"{self.name}: negative range")
        if offset > size or (offset == size and size and length):
            raise InvalidRange(f"{self.name}: offset {offset} is past the end ({size} bytes)")
        end = size if length is None else min(size, offset + length)
        return offset, end

    def read_into(self, start: int, end: int, out: memoryview) -> None:
        """Fill ``out`` with bytes ``[start, end)``; metachunks are read in parallel."""
        spans = list(self._spans(start, end))
        if len(spans) == 1:
            # One metachunk (every small object): read it on this thread. Handing it to a pool thread and
            # waiting cost two thread wake-ups, which for a 4 KiB object is more CPU than the read.
            mc, a, b, o = spans[0]
            self._read_metachunk(mc, a, b, out[o : o + b - a])
            return
        futures = [self.ctx.meta_pool.submit(self._read_metachunk, mc, a, b, out[o : o + b - a])
                   for mc, a, b, o in spans]
        for f in futures:
            f.result()

    def iter_range(self, start: int, end: int, block: int | None = None) -> Iterator[memoryview]:
        """Yield ``[start, end)`` in pieces of up to ``block`` bytes, prefetching ahead.

        Each yielded view is valid until the next iteration (its buffer is reused).
        """
        block = block or max(self.ctx.chunk_size, max((mc.size for mc in self.info.metachunks), default=1))
        pieces = [(a, min(a + block, end)) for a in range(start, end, block)]
        pending: deque[tuple[Future[None], np.ndarray, int]] = deque()
        it = iter(pieces)

        def submit_next() -> bool:
            piece = next(it, None)
            if piece is None:
                return False
            a, b = piece
            buf = self.ctx.buffers.acquire(block)
            fut = self.ctx.prefetch_pool.submit(self.read_into, a, b, memoryview(buf)[: b - a])
            pending.append((fut, buf, b - a))
            return True

        try:
            for _ in range(self.ctx.depth):
                if not submit_next():
                    break
            while pending:
                fut, buf, n = pending.popleft()
                fut.result()
                yield memoryview(buf)[:n]
                self.ctx.buffers.release(buf)
                submit_next()
        finally:
            for fut, buf, _n in pending:
                fut.cancel()
                if fut.cancelled():
                    self.ctx.buffers.release(buf)

    def _spans(self, start: int, end: int) -> Iterator[tuple[Metachunk, int, int, int]]:
        """(metachunk, start in it, end in it, offset in the output) for the range."""
        for mc in self.info.metachunks:
            a, b = max(start, mc.offset), min(end, mc.offset + mc.size)
            if a < b:
                yield mc, a - mc.offset, b - mc.offset, a - start

    # -- one metachunk --------------------------------------------------------

    def _down(self, chunk: ChunkInfo) -> bool:
        """Whether the conscience reports the chunk's server down: then it is read around at
        once rather than waited on (a stopped server accepts connections and never answers)."""
        try:
            return self.ctx.services.is_down(parse_chunk_url(chunk.url).service)
        except InvalidName:
            return False  # not a URL we can judge: the read itself will fail and be reported

    def _read_metachunk(self, mc: Metachunk, a: int, b: int, out: memoryview) -> None:
        if self.codec is None:
            self._read_copies(mc, a, b, out)
            return
        ranges = data_ranges(mc.size, self.codec.k, a, b)
        by_sub = {c.sub: c for c in mc.chunks}
        down = {sub for sub, c in by_sub.items() if self._down(c)}
        lost = [r for r in ranges if r.index not in by_sub or r.index in down]
        wanted = [r for r in ranges if r not in lost]
        if len(wanted) == 1 and not lost:  # one chunk holds every byte asked: no pool thread either
            reads = [(wanted[0], _done(self._read_data_range(mc, by_sub[wanted[0].index], wanted[0], out)))]
        else:
            reads = [(r, self.ctx.chunk_pool.submit(self._read_data_range, mc, by_sub[r.index], r, out))
                     for r in wanted]
        early = None
        if lost:
            # Positions known lost now: fetch the shares that rebuild them beside the reads, not after.
            lo, hi = _span(lost)
            in_hand = sum(1 for r, _ in reads if r.lo <= lo and hi <= r.hi)
            others = self._candidates(by_sub, down, skip={r.index for r in ranges})
            early = (lo, hi), self._fetch(mc, others[: self.codec.k - in_hand], lo, hi)
        lost += [r for r, f in reads if not f.result()]
        if lost:
            self._rebuild(mc, by_sub, down, ranges, lost, out, early)

    def _read_copies(self, mc: Metachunk, a: int, b: int, out: memoryview) -> None:
        replicas = list(mc.chunks)
        random.shuffle(replicas)  # spread reads over the copies
        replicas.sort(key=self._down)  # copies on servers reported down last (stable: still shuffled)
        errors = []
        for chunk in replicas:
            try:
                self.ctx.chunks.get(chunk.url, offset=a, length=b - a, into=out)
                return
            except GridError as exc:
                self._report(mc, chunk, exc)
                errors.append(f"{chunk.sub}: {exc}")
        raise DataUnavailable(
            f"{self.name}: metachunk {mc.pos} has no readable copy "
            f"(missing positions: {sorted(c.sub for c in mc.chunks)}; {'; '.join(errors)})"
        )

    def _read_data_range(self, mc: Metachunk, chunk: ChunkInfo, r: ChunkRange, out: memoryview) -> bool:
        try:
            self.ctx.chunks.get(chunk.url, offset=r.lo, length=r.hi - r.lo, into=out[r.out : r.out + r.hi - r.lo])
            return True
        except GridError as exc:
            self._report(mc, chunk, exc)
            return False

    @staticmethod
    def _candidates(by_sub: dict[int, ChunkInfo], down: set[int], skip: set[int]) -> list[ChunkInfo]:
        """Chunks to fetch shares from: servers reported up first, data before parity."""
        return [by_sub[s] for s in sorted(set(by_sub) - skip, key=lambda s: (s in down, s))]

    def _fetch(self, mc: Metachunk, chunks: list[ChunkInfo], lo: int, hi: int) -> dict[int, Future[Any]]:
        return {c.sub: self.ctx.chunk_pool.submit(self._fetch_share, mc, c, lo, hi - lo) for c in chunks}

    def _rebuild(
        self, mc: Metachunk, by_sub: dict[int, ChunkInfo], down: set[int], ranges: list[ChunkRange],
        lost: list[ChunkRange], out: memoryview, early: tuple[tuple[int, int], dict[int, Future[Any]]] | None,
    ) -> None:
        """Rebuild the lost data ranges with one decode of bytes [lo, hi) of any k shares."""
        assert self.codec is not None
        k, width = self.codec.k, self.codec.k + self.codec.m
        lo, hi = _span(lost)
        lost_subs = {r.index for r in lost}
        shares: dict[int, Any] = {}
        for r in ranges:  # data read whole over [lo, hi) is a share in hand
            if r.index not in lost_subs and r.lo <= lo and hi <= r.hi:
                shares[r.index] = out[r.out + lo - r.lo : r.out + hi - r.lo]
        pending = early[1] if early is not None and early[0] == (lo, hi) else {}
        # Last of all, the lost positions that were skipped only because their server was reported down.
        never_tried = {r.index for r in lost if r.index in down}
        candidates = self._candidates(by_sub, down, skip=set(shares) | set(pending) | lost_subs)
        candidates += [by_sub[s] for s in sorted(never_tried)]
        while True:
            for sub, f in pending.items():
                data = f.result()
                if data is not None:
                    shares[sub] = data
            if len(shares) >= k or not candidates:
                break
            batch, candidates = candidates[: k - len(shares)], candidates[k - len(shares) :]
            pending = self._fetch(mc, batch, lo, hi)
        if len(shares) < k:
            gone = sorted(set(range(width)) - set(shares))
            raise DataUnavailable(
                f"{self.name}: metachunk {mc.pos} cannot be rebuilt: positions {gone} are missing, "
                f"unreachable or corrupt, {k} of {width} are needed"
            )
        data = self.codec.decode(shares)
        for r in lost:
            out[r.out : r.out + r.hi - r.lo] = memoryview(data[r.index]).cast("B")[r.lo - lo : r.hi - lo]
            log.info("%s: rebuilt metachunk %d position %d from parity", self.name, mc.pos, r.index)

    def _fetch_share(self, mc: Metachunk, chunk: ChunkInfo, lo: int, n: int) -> memoryview | None:
        try:
            return self.ctx.chunks.get(chunk.url, offset=lo, length=n)
        except GridError as exc:
            self._report(mc, chunk, exc)
            return None

    def _report(self, mc: Metachunk, chunk: ChunkInfo, exc: GridError) -> None:
        if isinstance(exc, ChecksumMismatch):
            log.warning(
                "%s: corrupt chunk at position %d.%d (%s): reading around it", self.name, mc.pos, chunk.sub, chunk.url
            )
        else:
            log.warning("%s: chunk %d.%d unreadable (%s): %s", self.name, mc.pos, chunk.sub, chunk.url, exc)


def _done(value: Any) -> Future[Any]:
    """A future that already holds ``value``: a read made on the calling thread, in a list of pool reads."""
    fut: Future[Any] = Future()
    fut.set_result(value)
    return fut


def _span(ranges: list[ChunkRange]) -> tuple[int, int]:
    """The chunk bytes [lo, hi) that cover every range."""
    return min(r.lo for r in ranges), max(r.hi for r in ranges)
