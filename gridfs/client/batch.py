"""Many small objects in few requests: the chunk half of ``GridClient.put_many``.

Each object of a batch is striped and placed as ``put`` would (one metachunk, the usual placement
rules per object), but its chunks are not sent one request each: the chunks bound for one storage
server travel together in one ``POST /chunks`` that the server makes durable with one fsync
(``gridfs.storage.packs``). A server that fails its batch loses nothing acknowledged: each of that
batch's chunks is then stored alone on a replacement server, under a new chunk id (a re-send under the
same id could meet a copy the lost answer had stored), exactly as a single ``put`` retries. The records
are committed by the caller in one directory transaction.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import crc32c
import numpy as np
import xxhash

from gridfs.client.context import IOContext
from gridfs.client.writer import ObjectWriter, WriteResult, _Placement
from gridfs.coding.policies import StoragePolicy
from gridfs.common.crc import crc32c_hex
from gridfs.common.errors import GridError, ServiceUnavailable
from gridfs.common.names import new_chunk_id
from gridfs.directory.model import ChunkInfo, Metachunk
from gridfs.storage.client import MAX_BATCHED_CHUNK, service_chunk_url

log = logging.getLogger("gridfs.client")


def fits_batch(policy: StoragePolicy, size: int, chunk_size: int) -> bool:
    """Whether an object of ``size`` bytes is one metachunk of chunks a batch may carry."""
    return size <= policy.metachunk_size(min(chunk_size, MAX_BATCHED_CHUNK))


@dataclass
class SmallObject:
    key: str
    data: memoryview
    policy: StoragePolicy
    writer: ObjectWriter | None = None
    placement: _Placement | None = None
    shares: list[Any] = field(default_factory=list)
    borrowed: list[Any] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    stored: dict[int, ChunkInfo] = field(default_factory=dict)


@dataclass
class _Pending:
    obj: SmallObject
    sub: int
    url: str


def write_small(ctx: IOContext, container: str, objects: list[SmallObject]) -> list[tuple[ObjectWriter, WriteResult]]:
    """Store every object's chunks; on failure delete what was stored and re-raise."""
    try:
        groups: dict[str, list[_Pending]] = defaultdict(list)
        for obj in objects:
            _prepare(ctx, container, obj)
            if obj.placement is None:  # an empty object: no chunk
                continue
            for sub, svc in enumerate(obj.placement.chosen):
                groups[svc.get("id") or svc["addr"]].append(_Pending(obj, sub, service_chunk_url(svc, new_chunk_id())))
        sent = {name: ctx.chunk_pool.submit(_send, ctx, batch) for name, batch in groups.items() if batch}
        retries: list[Future[ChunkInfo | GridError]] = []
        retried: list[_Pending] = []
        for name, fut in sent.items():
            try:
                fut.result()
            except GridError as exc:
                log.warning("batch of %d chunks to %s failed (%s): storing them elsewhere", len(groups[name]),
                            name, exc)
                ctx.services.invalidate()
                for p in groups[name]:
                    assert p.obj.writer is not None and p.obj.placement is not None
                    retried.append(p)
                    retries.append(ctx.chunk_pool.submit(
                        p.obj.writer.put_share, p.obj.placement, 0, p.sub, p.obj.shares[p.sub], p.obj.hashes[p.sub],
                        p.obj.placement.replacement()))
        for p, rfut in zip(retried, retries, strict=True):
            got = rfut.result()
            if isinstance(got, ChunkInfo):
                p.obj.stored[p.sub] = got
        return [_result(obj) for obj in objects]
    except BaseException:
        for obj in objects:
            if obj.writer is not None:
                obj.writer.discard()
        raise
    finally:
        for obj in objects:
            for buf in obj.borrowed:
                ctx.buffers.release(buf)
            obj.borrowed = []


def _prepare(ctx: IOContext, container: str, obj: SmallObject) -> None:
    """Stripe, encode, hash and place one object."""
    obj.writer = ObjectWriter(ctx, obj.policy, new_chunk_id(), obj.key, container=container)
    if not obj.data.nbytes:
        return
    view = np.frombuffer(obj.data, dtype=np.uint8)
    obj.shares, obj.borrowed = obj.writer.shares(view)
    if obj.policy.is_ec:
        obj.hashes = [xxhash.xxh3_64_hexdigest(s) for s in obj.shares]
    else:
        obj.hashes = [xxhash.xxh3_64_hexdigest(view)] * len(obj.shares)
    obj.placement = _Placement(ctx.services, obj.policy.width)


def _send(ctx: IOContext, batch: list[_Pending]) -> None:
    chunks = []
    for p in batch:
        assert p.obj.writer is not None
        headers = p.obj.writer.headers
        ref = {"content_id": headers["X-Grid-Content-Id"], "path": p.obj.key, "policy": p.obj.policy.name,
               "container": headers["X-Grid-Content-Container"], "pos": f"0.{p.sub}"}
        chunks.append((p.url, p.obj.shares[p.sub], p.obj.hashes[p.sub], ref))
    ctx.chunks.put_batch(chunks)
    for p in batch:
        assert p.obj.writer is not None
        p.obj.writer.stored([p.url])
        p.obj.stored[p.sub] = ChunkInfo(url=p.url, sub=p.sub, size=memoryview(p.obj.shares[p.sub]).nbytes,
                                        hash=p.obj.hashes[p.sub])


def _result(obj: SmallObject) -> tuple[ObjectWriter, WriteResult]:
    assert obj.writer is not None
    size = obj.data.nbytes
    digest, crc = xxhash.xxh3_128_hexdigest(obj.data), crc32c_hex(crc32c.crc32c(obj.data))
    if not size:
        return obj.writer, WriteResult([], 0, digest, crc)
    chunks = [obj.stored[sub] for sub in sorted(obj.stored)]
    missing = [sub for sub in range(obj.policy.width) if sub not in obj.stored]
    if len(chunks) < obj.policy.min_durable:
        raise ServiceUnavailable(f"{obj.key}: only {len(chunks)} of {obj.policy.width} chunks stored, "
                                 f"{obj.policy.min_durable} needed")
    if missing:
        log.warning("%s stored without positions %s: recorded for repair", obj.key, missing)
    return obj.writer, WriteResult([Metachunk(pos=0, offset=0, size=size, chunks=chunks, missing=missing)], size,
                                   digest, crc)
