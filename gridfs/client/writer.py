"""The write path: metachunk -> chunks -> placement -> parallel uploads.

Each metachunk is striped (EC: k numpy views plus m zfec parity chunks; copies: the
same view n times), hashed with xxh3_64, placed by live scores under distance rules,
and sent to every storage server at once. A failed chunk is retried on another
server; the metachunk is acknowledged when ``policy.min_durable`` chunks are durable,
and positions that still failed are recorded as missing for repair. The whole object's
xxh3-128 and CRC32C are taken from each metachunk view as it passes, in the same loop: no
second pass over the data.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import logging
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import crc32c
import numpy as np
import xxhash

from gridfs.client.context import IOContext
from gridfs.client.sources import MetachunkSource
from gridfs.coding.ec import chunk_size_for, get_codec
from gridfs.coding.policies import StoragePolicy
from gridfs.common.crc import crc32c_hex
from gridfs.common.errors import GridError, NotEnoughServices, ServiceUnavailable
from gridfs.common.names import new_chunk_id
from gridfs.conscience.client import CachedServices
from gridfs.conscience.placement import select
from gridfs.directory.model import ChunkInfo, Metachunk
from gridfs.storage.client import service_chunk_url

log = logging.getLogger("gridfs.client")

PLACEMENT_ATTEMPTS = 3
Progress = Callable[[int], Any] | None


@dataclass
class WriteResult:
    metachunks: list[Metachunk]
    size: int
    hash: str  # xxh3_128 hex of the bytes written
    crc32c: str  # their CRC32C, 8 hex digits (gridfs.common.crc)

    def chunk_urls(self) -> list[str]:
        return [c.url for mc in self.metachunks for c in mc.chunks]


class _Placement:
    """The servers chosen for one metachunk; hands out replacements for failures."""

    def __init__(self, services: CachedServices, width: int) -> None:
        self._services = services
        self._lock = threading.Lock()
        try:
            self.chosen = select(services.get(), width)
        except NotEnoughServices:
            # The list at hand may be a ttl old (a blip of the conscience, a server back): one fresh
            # look before the write fails.
            services.invalidate()
            self.chosen = select(services.get(), width)
        self._used = {s["addr"] for s in self.chosen}

    def replacement(self) -> dict | None:
        with self._lock:
            try:
                (svc,) = select(self._services.get(), 1, avoid=self._used)
            except NotEnoughServices:
                return None
            self._used.add(svc["addr"])
            return svc


def reference_headers(content_id: str, key: str, policy: str, container: str) -> dict[str, str]:
    """What a storage server records with each chunk: the object it belongs to (its back-reference)."""
    return {
        "X-Grid-Content-Id": content_id,
        "X-Grid-Content-Path": urllib.parse.quote(key, safe="/"),
        "X-Grid-Content-Policy": policy,
        # account/bucket: lets a crawler find the container that must reference this chunk.
        "X-Grid-Content-Container": container,
    }


class ObjectWriter:
    """Writes the metachunks of one object (or one multipart part)."""

    def __init__(
        self,
        ctx: IOContext,
        policy: StoragePolicy,
        content_id: str,
        key: str,
        progress: Progress = None,
        container: str = "",
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.codec = get_codec(policy.codec, policy.k, policy.m) if policy.is_ec else None
        self.progress = progress
        self.headers = reference_headers(content_id, key, policy.name, container)
        self._written: list[str] = []  # every chunk URL written, to clean up on failure
        self._written_lock = threading.Lock()

    @property
    def meta_size(self) -> int:
        return self.policy.metachunk_size(self.ctx.chunk_size)

    def write(self, data: Any) -> WriteResult:
        """Write all of ``data``; on failure delete what was written and re-raise."""
        source = MetachunkSource(data, self.meta_size, self.ctx.buffers, self.ctx.depth)
        hasher = xxhash.xxh3_128()
        crc = 0
        pending: deque[Future[Metachunk]] = deque()
        done: list[Metachunk] = []
        offset = 0
        try:
            for pos, (view, release) in enumerate(source):
                hasher.update(view)
                crc = crc32c.crc32c(view, crc)  # releases the GIL, as xxh3 does: the metachunk writers go on
                fut = self.ctx.meta_pool.submit(self._write_metachunk, pos, offset, view)
                fut.add_done_callback(lambda _f, r=release: r())
                pending.append(fut)
                offset += view.nbytes
                # Collect finished metachunks in order, and fail fast on an error.
                while pending and pending[0].done():
                    done.append(pending.popleft().result())
            while pending:
                done.append(pending.popleft().result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            for fut in pending:
                if not fut.cancelled():
                    with contextlib.suppress(Exception):
                        fut.result()
            self.discard()
            raise
        return WriteResult(done, offset, hasher.hexdigest(), crc32c_hex(crc))

    def discard(self) -> None:
        """Best-effort delete of every chunk this writer stored."""
        with self._written_lock:
            urls, self._written = self._written, []
        self.ctx.delete_chunks(urls)

    # -- one metachunk --------------------------------------------------------

    def shares(self, view: np.ndarray) -> tuple[list[Any], list[Any]]:
        """The buffers to store for each position, and buffers to return to the pool."""
        if self.codec is None:
            return [view] * self.policy.copies, []
        k, size = self.policy.k, view.nbytes
        cs = chunk_size_for(size, k)
        data: list[Any] = []
        borrowed: list[Any] = []
        for i in range(k):
            piece = view[i * cs : (i + 1) * cs]
            if piece.nbytes < cs:  # the padded tail: the only bytes ever copied
                pad = self.ctx.buffers.acquire(cs)
                pad[: piece.nbytes] = piece
                pad[piece.nbytes :] = 0
                borrowed.append(pad)
                piece = pad
            data.append(piece)
        parity_out = [self.ctx.buffers.acquire(cs) for _ in range(self.policy.m)]
        borrowed += parity_out
        return data + self.codec.encode(data, parity_out), borrowed

    def _write_metachunk(self, pos: int, offset: int, view: np.ndarray) -> Metachunk:
        shares, borrowed = self.shares(view)
        try:
            if self.codec is None:
                digest = xxhash.xxh3_64_hexdigest(view)
                hashes = [digest] * len(shares)
            else:
                hashes = [xxhash.xxh3_64_hexdigest(s) for s in shares]
            placement = _Placement(self.ctx.services, self.policy.width)
            futures = [
                self.ctx.chunk_pool.submit(self.put_share, placement, pos, sub, share, digest, svc)
                for sub, (share, digest, svc) in enumerate(zip(shares, hashes, placement.chosen, strict=True))
            ]
            results = [f.result() for f in futures]
        finally:
            for buf in borrowed:
                self.ctx.buffers.release(buf)
        chunks = [c for c in results if isinstance(c, ChunkInfo)]
        missing = [sub for sub, c in enumerate(results) if not isinstance(c, ChunkInfo)]
        if len(chunks) < self.policy.min_durable:
            errors = "; ".join(str(e) for e in results if not isinstance(e, ChunkInfo))
            raise ServiceUnavailable(
                f"metachunk {pos}: only {len(chunks)} of {self.policy.width} chunks stored, "
                f"{self.policy.min_durable} needed ({errors})"
            )
        if missing:
            log.warning("metachunk %d stored without positions %s: recorded for repair", pos, missing)
        if self.progress:
            self.progress(view.nbytes)
        return Metachunk(pos=pos, offset=offset, size=view.nbytes, chunks=chunks, missing=missing)

    def put_share(
        self, placement: _Placement, pos: int, sub: int, share: Any, digest: str, svc: dict | None
    ) -> ChunkInfo | GridError:
        """Store one chunk, moving to another server when one fails."""
        headers = {**self.headers, "X-Grid-Chunk-Pos": f"{pos}.{sub}"}
        last: GridError = ServiceUnavailable("no server available")
        for _attempt in range(PLACEMENT_ATTEMPTS):
            if svc is None:
                break
            url = service_chunk_url(svc, new_chunk_id())  # names the service id, not where it listens
            try:
                self.ctx.chunks.put(url, share, chunk_hash=digest, headers=headers)
            except GridError as exc:
                log.warning("chunk %d.%d to %s failed (%s): placing it elsewhere", pos, sub, svc["addr"], exc)
                self.ctx.services.invalidate()
                last = exc
                svc = placement.replacement()
                continue
            self.stored([url])
            return ChunkInfo(url=url, sub=sub, size=memoryview(share).nbytes, hash=digest)
        return last

    def stored(self, urls: list[str]) -> None:
        """Chunks now on their servers, deleted by ``discard`` if the object is not committed."""
        with self._written_lock:
            self._written.extend(urls)
