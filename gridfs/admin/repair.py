"""Repair: give an object back every chunk its policy promises.

For each metachunk, every recorded chunk is read whole (so its checksum is verified);
positions that are recorded missing, unreachable, gone or corrupt are rebuilt from the
good ones (decoded and re-encoded for EC, copied for replicas), written to storage
servers chosen by the conscience away from the surviving chunks where possible, and
the new locations are committed to the directory only if the object version is still
the same content. Nothing is rewritten when nothing is wrong. Servers are told apart by
service id (an old-form chunk URL: by address), never by comparing URL strings.

A repair can also be told to move every chunk off one storage server (a
:class:`Relocation`): a drain copies the chunk from it (it is alive and verified like the
others), a rebuild never even asks it (it is dead: the chunk is decoded from the others,
and waiting on its connect timeout once per chunk would halve the rebuild rate). New
chunks never go to that server, and go away from the surviving chunks' servers first.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash

from gridfs.client.commits import commit_or_discard
from gridfs.client.writer import reference_headers
from gridfs.coding.ec import get_codec
from gridfs.coding.policies import policy_from_chunk_method
from gridfs.common.errors import GridError, NotEnoughServices
from gridfs.common.names import new_chunk_id
from gridfs.conscience.placement import select
from gridfs.directory.model import ChunkInfo, Metachunk, ObjectInfo
from gridfs.storage.client import parse_chunk_url, service_chunk_url

if TYPE_CHECKING:
    from gridfs.client.grid import GridClient

log = logging.getLogger("gridfs.repair")
PLACEMENT_ATTEMPTS = 4


@dataclass(frozen=True)
class Relocation:
    """Every chunk on one storage server must move off it.

    ``names``: its service id and its address (old-form chunk URLs name it by address).
    ``readable``: a drain may read the chunk there and copy it; a rebuild must not try (it is dead).
    """

    names: frozenset[str]
    readable: bool

    def holds(self, url: str) -> bool:
        return parse_chunk_url(url).service in self.names


@dataclass
class RepairResult:
    key: str
    version: int
    rebuilt: list[str] = field(default_factory=list)  # "metachunk.position" written anew
    lost: list[int] = field(default_factory=list)  # metachunks with too few good chunks to rebuild
    moved: list[str] = field(default_factory=list)  # of ``rebuilt``: positions that left the relocated server
    bytes_written: int = 0


class Repairer:
    def __init__(self, client: GridClient, bucket: str, read_slots: threading.Semaphore | None = None) -> None:
        """``read_slots``: shared by the repairers of one job, it bounds the metachunks being read and
        decoded at once; storing and committing what they rebuilt happens outside it, so a job can keep
        more objects in flight than it holds read buffers for (a rebuilt chunk's PUT and fsync take as
        long as reading its stripe)."""
        self.client = client
        self.bucket = bucket
        self.ctx = client.io
        self.read_slots = read_slots

    def repair(self, key: str, version: int | None = None, *, relocate: Relocation | None = None,
               info: ObjectInfo | None = None) -> RepairResult:
        """Repair one object version (default: the latest); ``info``: its record with chunks, if
        the caller just read it. Raises what the directory raises (NoSuchObject, PreconditionFailed
        when the version changed meanwhile...)."""
        if info is None:
            info = self.client.head(self.bucket, key, version=version, chunks=True)
        result = RepairResult(key, info.version)
        if not info.chunk_method:
            return result
        policy = policy_from_chunk_method(info.policy, info.chunk_method)
        codec = get_codec(policy.codec, policy.k, policy.m) if policy.is_ec else None
        written: list[str] = []
        metachunks: list[Metachunk] = []
        try:
            for mc in info.metachunks:
                fixed = self._metachunk(info, mc, policy.width, codec, result, written, relocate)
                metachunks.append(fixed)
        except BaseException:
            self.ctx.delete_chunks(written)  # nothing was committed: the new chunks are orphans
            raise
        if not result.rebuilt:
            return result
        # A commit whose answer was lost may have landed: its chunks are kept then (see commits.py).
        commit_or_discard(lambda: self.client.directory.replace_chunks(
            self.client.account, self.bucket, key, info.version, info.content_id, metachunks,
            base=info.metachunks),
            lambda: self.ctx.delete_chunks(written))
        log.info("%s/%s: rebuilt %s", self.bucket, key, ", ".join(result.rebuilt))
        return result

    def _read(self, mc: Metachunk, chunks: list[ChunkInfo], shares: dict[int, Any],
              good: dict[int, ChunkInfo], held: list[np.ndarray]) -> None:
        """Read ``chunks`` whole and verified, in parallel, into ``shares`` and ``good`` (by position).

        Each lands in a pooled buffer (a fresh one per chunk cost a rebuild more in page faults than
        decoding); :meth:`_metachunk` gives them back once the rebuilt chunks are stored."""
        futures = []
        for c in chunks:
            buf = self.ctx.buffers.acquire(c.size)
            held.append(buf)
            futures.append((c, self.ctx.chunk_pool.submit(self.ctx.chunks.get, c.url, 0, None, memoryview(buf))))
        for chunk, fut in futures:
            try:
                shares[chunk.sub] = fut.result()
                good[chunk.sub] = chunk
            except GridError as exc:
                log.warning("metachunk %d position %d (%s) is bad: %s", mc.pos, chunk.sub, chunk.url, exc)

    def _gather(self, mc: Metachunk, width: int, k: int, relocate: Relocation | None,
                held: list[np.ndarray]) -> tuple[dict[int, Any], dict[int, ChunkInfo]]:
        """Chunk bytes by position, and the chunks taken as good.

        A repair reads every chunk (that is how it finds the bad ones). A relocation reads only what
        it needs: the chunks on the server it empties (a drain: copied as they are), else any k of
        the others, data positions first (no decoding when they are all there), more only if one
        fails; the chunks it does not read are taken as good (verifying them is the scrubber's job).
        """
        shares: dict[int, Any] = {}
        good: dict[int, ChunkInfo] = {}
        if relocate is None:
            self._read(mc, mc.chunks, shares, good, held)
            return shares, good
        leaving = [c for c in mc.chunks if relocate.holds(c.url)]
        others = sorted((c for c in mc.chunks if not relocate.holds(c.url)), key=lambda c: c.sub)
        if relocate.readable:
            self._read(mc, leaving, shares, good, held)
        recorded = {c.sub for c in mc.chunks}
        tried: set[int] = set()
        if len(recorded) < width or any(c.sub not in shares for c in leaving):
            pending = list(others)
            while len(shares) < k and pending:
                batch, pending = pending[:k - len(shares)], pending[k - len(shares):]
                tried.update(c.sub for c in batch)
                self._read(mc, batch, shares, good, held)
        good.update((c.sub, c) for c in others if c.sub not in tried)
        return shares, good

    def _metachunk(self, info: ObjectInfo, mc: Metachunk, width: int, codec: Any, result: RepairResult,
                   written: list[str], relocate: Relocation | None) -> Metachunk:
        held: list[np.ndarray] = []  # pooled read buffers, given back once the rebuilt chunks are stored
        try:
            return self._rebuild_metachunk(info, mc, width, codec, result, written, relocate, held)
        finally:
            for buf in held:
                self.ctx.buffers.release(buf)

    def _rebuild_metachunk(self, info: ObjectInfo, mc: Metachunk, width: int, codec: Any, result: RepairResult,
                           written: list[str], relocate: Relocation | None, held: list[np.ndarray]) -> Metachunk:
        with self.read_slots or nullcontext():
            shares, good = self._gather(mc, width, codec.k if codec is not None else 1, relocate, held)
            leaving = {c.sub for c in mc.chunks if relocate is not None and relocate.holds(c.url)}
            bad = sorted((set(range(width)) - set(good)) | leaving)
            if not bad:
                return mc
            full = self._contents(mc, bad, shares, width, codec, result, held)
            if full is None:
                return mc
            outputs = [np.frombuffer(memoryview(full[sub]).cast("B"), dtype=np.uint8) for sub in bad]
            self._release_unused(held, outputs)
        chunks = {sub: c for sub, c in good.items() if sub not in leaving}
        used = {parse_chunk_url(c.url).service for c in chunks.values()}
        never = relocate.names if relocate is not None else frozenset()
        headers = reference_headers(info.content_id, info.key, info.policy, f"{self.client.account}/{self.bucket}")
        for sub, share in zip(bad, outputs, strict=True):
            digest = xxhash.xxh3_64_hexdigest(share)
            chunks[sub] = self._store(share, digest, used, never,
                                      {**headers, "X-Grid-Chunk-Pos": f"{mc.pos}.{sub}"}, sub)
            written.append(chunks[sub].url)
            result.rebuilt.append(f"{mc.pos}.{sub}")
            result.bytes_written += share.nbytes
            if sub in leaving:
                result.moved.append(f"{mc.pos}.{sub}")
        return Metachunk(pos=mc.pos, offset=mc.offset, size=mc.size,
                         chunks=[chunks[s] for s in sorted(chunks)], missing=[])

    def _release_unused(self, held: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """Give back, before the slow part (storing), the pooled buffers no chunk to write lies in."""
        kept = []
        for buf in held:
            if any(np.may_share_memory(buf, out) for out in outputs):
                kept.append(buf)
            else:
                self.ctx.buffers.release(buf)
        held[:] = kept  # by identity: list.remove would compare arrays element-wise

    def _contents(self, mc: Metachunk, bad: list[int], shares: dict[int, Any], width: int, codec: Any,
                  result: RepairResult, held: list[np.ndarray]) -> dict[int, Any] | list[Any] | None:
        """The bytes of every position to write, by position; None (and the metachunk recorded lost)
        when too few good chunks are left. Positions read whole (a drained chunk) are copied as they
        are: decoding is only for what could not be read."""
        if all(sub in shares for sub in bad):
            return shares
        if codec is not None:
            if len(shares) < codec.k:
                result.lost.append(mc.pos)
                return None
            wanted = [sub for sub in bad if sub not in shares]
            if hasattr(codec, "reconstruct"):
                # ISA-L: only the lost positions, in one pass, into pooled buffers.
                size = memoryview(next(iter(shares.values()))).nbytes
                out = [self.ctx.buffers.acquire(size) for _ in wanted]
                held.extend(out)
                return {**shares, **codec.reconstruct(shares, wanted, out)}
            data = list(codec.decode(shares))
            # Parity is computed only when a parity position is to be written.
            return data + list(codec.encode(data)) if bad[-1] >= codec.k else data
        if not shares:
            result.lost.append(mc.pos)
            return None
        return [next(iter(shares.values()))] * width

    def _store(self, share: np.ndarray, digest: str, used: set[str], never: frozenset[str],
               headers: dict[str, str], sub: int) -> ChunkInfo:
        """Put one rebuilt chunk on a server holding none of this metachunk if possible, else on any live one
        (never on one of ``never``: the server a relocation empties).

        ``used`` holds service ids (or addresses of old-form URLs); placement avoids either. A server
        that fails is avoided from then on (the conscience may not have noticed yet that it died).
        """
        failed: set[str] = set(never)
        last: Exception = NotEnoughServices("no storage server to hold a rebuilt chunk")
        for spread in (True, False):
            for _attempt in range(PLACEMENT_ATTEMPTS):
                try:
                    (svc,) = select(self.ctx.services.get(), 1, avoid=(used | failed) if spread else failed)
                except NotEnoughServices as exc:
                    last = exc
                    break
                url = service_chunk_url(svc, new_chunk_id())
                try:
                    self.ctx.chunks.put(url, share, chunk_hash=digest, headers=headers)
                except GridError as exc:
                    failed.add(svc["addr"])
                    self.ctx.services.invalidate()
                    last = exc
                    continue
                used.add(parse_chunk_url(url).service)
                return ChunkInfo(url=url, sub=sub, size=share.nbytes, hash=digest)
        raise last
