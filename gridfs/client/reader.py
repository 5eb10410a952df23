"""The read path: object ranges -> metachunk ranges -> chunk ranges, in parallel.

Only the chunks (and the byte ranges within them) that hold the requested bytes are
fetched, straight into the caller's buffer. When a chunk is missing, unreachable or
corrupt, the same byte range of other chunks is fetched and the lost one rebuilt
with the codec; with copies, the next replica is read.

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
from gridfs.common.errors import ChecksumMismatch, DataUnavailable, GridError, InvalidRange
from gridfs.directory.model import ChunkInfo, Metachunk, ObjectInfo

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
        futures = [
            self.ctx.meta_pool.submit(self._read_metachunk, mc, a, b, out[o : o + b - a])
            for mc, a, b, o in self._spans(start, end)
        ]
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

    def _read_metachunk(self, mc: Metachunk, a: int, b: int, out: memoryview) -> None:
        if self.codec is None:
            self._read_copies(mc, a, b, out)
        else:
            ranges = data_ranges(mc.size, self.codec.k, a, b)
            by_sub = {c.sub: c for c in mc.chunks}
            futures = [
                self.ctx.chunk_pool.submit(self._read_data_range, mc, by_sub, r, out) for r in ranges
            ]
            failed = [r for r, f in zip(ranges, futures, strict=True) if not f.result()]
            for r in failed:
                self._rebuild(mc, by_sub, r, out)

    def _read_copies(self, mc: Metachunk, a: int, b: int, out: memoryview) -> None:
        replicas = list(mc.chunks)
        random.shuffle(replicas)  # spread reads over the copies
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

    def _read_data_range(
        self, mc: Metachunk, by_sub: dict[int, ChunkInfo], r: ChunkRange, out: memoryview
    ) -> bool:
        chunk = by_sub.get(r.index)
        if chunk is None:
            return False
        try:
            self.ctx.chunks.get(chunk.url, offset=r.lo, length=r.hi - r.lo, into=out[r.out : r.out + r.hi - r.lo])
            return True
        except GridError as exc:
            self._report(mc, chunk, exc)
            return False

    def _rebuild(self, mc: Metachunk, by_sub: dict[int, ChunkInfo], r: ChunkRange, out: memoryview) -> None:
        """Rebuild range [lo, hi) of data chunk r.index from any k other chunks."""
        assert self.codec is not None
        k, n = self.codec.k, r.hi - r.lo
        candidates = [c for sub, c in sorted(by_sub.items()) if sub != r.index]
        shares: dict[int, Any] = {}
        lost = [r.index]
        # Fetch k at a time, in parallel, until k shares are in hand or candidates run out.
        while len(shares) < k and candidates:
            batch, candidates = candidates[: k - len(shares)], candidates[k - len(shares) :]
            futures = {
                c.sub: self.ctx.chunk_pool.submit(self._fetch_share, mc, c, r.lo, n) for c in batch
            }
            for sub, f in futures.items():
                data = f.result()
                if data is None:
                    lost.append(sub)
                else:
                    shares[sub] = data
        if len(shares) < k:
            lost_all = sorted(set(lost) | (set(range(k + self.codec.m)) - set(by_sub)))
            raise DataUnavailable(
                f"{self.name}: metachunk {mc.pos} cannot be rebuilt: positions {lost_all} are missing "
                f"or corrupt, {k} of {k + self.codec.m} are needed"
            )
        data = self.codec.decode(shares)
        out[r.out : r.out + n] = memoryview(data[r.index]).cast("B")[:n]
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
