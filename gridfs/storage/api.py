"""The storage server's HTTP API: its routes over one volume, served by ``gridfs.storage.http1``.

``PUT /chunk/{id}`` (body = the chunk, ``X-Grid-Chunk-Hash`` xxh3_64 or ``X-Grid-Chunk-Crc32c``, back-reference
headers), ``GET /chunk/{id}`` (``Range`` allowed), ``HEAD``, ``DELETE``, ``POST /chunk/{id}/link?to=ID``,
``POST /chunks`` (a batch of small chunks, stored in a pack all or none: see ``parse_batch``),
``GET /chunks?older_than=S``, ``GET /info``, ``GET|POST /scrub``, ``GET /health``, ``GET /metrics``.
A request naming another service id (``X-Grid-Service-Id``) is answered 421 before its body is read.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gridfs.common.errors import BadRequest, InvalidRange, LengthRequired, ServiceUnavailable, WrongService
from gridfs.common.http import METRICS_PATH
from gridfs.common.metrics import exposition
from gridfs.common.names import check_chunk_id
from gridfs.storage.client import BATCH_MANIFEST, SERVICE_ID_HEADER
from gridfs.storage.http1 import FileBody, Request, Response, Route
from gridfs.storage.scrub import Scrubber, parse_rate
from gridfs.storage.store import BLOCK, Buffer, FileRange

if TYPE_CHECKING:
    from gridfs.storage.server import RawxApp

MAX_CHUNK = 512 << 20
MAX_BATCH = 64 << 20
# GETs of at least this many bytes are sent with sendfile; below, one write of head and body costs less.
SENDFILE_MIN = 256 << 10
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)\Z")
HASH_RE = re.compile(r"^[0-9a-fA-F]{16}\Z")
CRC_RE = re.compile(r"^[0-9a-fA-F]{8}\Z")
REF_HEADERS = {
    "x-grid-content-path": "path", "x-grid-content-id": "content_id", "x-grid-content-version": "version",
    "x-grid-chunk-pos": "pos", "x-grid-content-policy": "policy", "x-grid-content-container": "container",
}


def parse_batch(body: memoryview) -> list[tuple[str, memoryview, str, str, dict]]:
    """A batch body: a u32 (big-endian) manifest length, the manifest (JSON: a list of ``{"id", "size",
    "hash" (xxh3_64) or "crc32c", "ref": {back-reference}}``), then the chunk bodies back to back."""
    if body.nbytes < BATCH_MANIFEST.size:
        raise BadRequest("a batch starts with a 4-byte manifest length")
    (mlen,) = BATCH_MANIFEST.unpack_from(body)
    start = BATCH_MANIFEST.size + mlen
    try:
        manifest = json.loads(bytes(body[BATCH_MANIFEST.size:start])) if start <= body.nbytes else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, list) or not manifest:
        raise BadRequest("a batch manifest is a non-empty JSON list of {id, size, hash, ref}")
    out, pos = [], start
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or entry["size"] < 0:
            raise BadRequest(f"bad batch entry {entry!r}")
        digest, crc = str(entry.get("hash", "")), str(entry.get("crc32c", ""))
        if not (HASH_RE.match(digest) or (not digest and CRC_RE.match(crc))):
            raise BadRequest(f"batch entry {entry.get('id')!r}: hash (xxh3_64) or crc32c is required")
        ref = entry.get("ref") or {}
        if not isinstance(ref, dict):
            raise BadRequest(f"batch entry {entry.get('id')!r}: ref must be an object")
        out.append((check_chunk_id(str(entry.get("id", ""))), body[pos : pos + entry["size"]], digest, crc,
                    {k: str(v) for k, v in ref.items() if k in REF_HEADERS.values()}))
        pos += entry["size"]
    if pos != body.nbytes:
        raise BadRequest(f"batch manifest sizes add up to {pos - start} bytes, the body holds {body.nbytes - start}")
    return out


def parse_range(header: str, size: int) -> tuple[int, int]:
    m = RANGE_RE.match(header.strip())
    if not m or m.group(1) == m.group(2) == "":
        raise InvalidRange(f"unsupported Range {header!r}")
    a, b = m.group(1), m.group(2)
    if a == "":
        start, end = max(0, size - int(b)), size
    else:
        start, end = int(a), min(size, int(b) + 1 if b else size)
    if start >= size or start >= end:
        raise InvalidRange(f"Range {header!r} outside a chunk of {size} bytes")
    return start, end


class ChunkApi:
    """The routes of one storage server; state (volume, buffers, counters, scrubber) lives in RawxApp."""

    def __init__(self, rawx: RawxApp, pool: ThreadPoolExecutor) -> None:
        self.rawx, self.volume, self.pool = rawx, rawx.volume, pool

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    def routes(self) -> list[Route]:
        chunk = "/chunk/{id}"
        return [
            Route("PUT", chunk, self.counted(self.put), max_body=MAX_CHUNK, precheck=self.check_put),
            Route("GET", chunk, self.counted(self.get), precheck=self.check_service),
            Route("HEAD", chunk, self.counted(self.head), precheck=self.check_service),
            Route("DELETE", chunk, self.counted(self.delete), precheck=self.check_service),
            Route("POST", chunk + "/link", self.counted(self.link), precheck=self.check_service),
            Route("POST", "/chunks", self.counted(self.put_batch), max_body=MAX_BATCH, precheck=self.check_batch),
            Route("GET", "/chunks", self.listing),
            Route("GET", "/info", self.info),
            Route("GET", "/scrub", self.scrub_state),
            Route("POST", "/scrub", self.scrub_now),
            Route("GET", "/health", self.health),
            Route("GET", METRICS_PATH, self.prometheus),
        ]

    def counted(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """Chunk requests count as in flight (the heartbeat reports it) while their handler runs."""

        async def run(req: Request) -> Response:
            self.rawx.inflight += 1
            try:
                return await handler(req)
            finally:
                self.rawx.inflight -= 1

        return run

    # -- checks on the head alone ---------------------------------------------------------------------

    def check_service(self, req: Request) -> None:
        named = req.header(SERVICE_ID_HEADER)
        if named and named != self.rawx.service_id:
            raise WrongService(f"this is {self.rawx.service_id}, not {named}: the address used for {named} "
                               "is stale")
        if "id" in req.match:
            check_chunk_id(req.match["id"])

    def check_batch(self, req: Request) -> None:
        self.check_service(req)
        if "content-length" not in req.headers:
            raise LengthRequired("a batch of chunks needs Content-Length")

    def check_put(self, req: Request) -> None:
        self.check_service(req)
        if "content-length" not in req.headers:
            raise LengthRequired("PUT of a chunk needs Content-Length")
        digest, crc = req.header("x-grid-chunk-hash"), req.header("x-grid-chunk-crc32c")
        if not (HASH_RE.match(digest) or (not digest and CRC_RE.match(crc))):
            raise BadRequest("X-Grid-Chunk-Hash (xxh3_64, 16 hex digits) or X-Grid-Chunk-Crc32c (8 hex digits) "
                             "is required")

    # -- chunks ---------------------------------------------------------------------------------------

    async def put(self, req: Request) -> Response:
        chunk_id = req.match["id"]
        ref = {v: urllib.parse.unquote(req.headers[k]) for k, v in REF_HEADERS.items() if k in req.headers}
        stored = await self.run(self.volume.put, chunk_id, req.body, req.header("x-grid-chunk-hash"), ref,
                                req.header("x-grid-chunk-crc32c"))
        self.rawx.bytes_in.inc(req.body.nbytes)
        # "hash": the xxh3_64 kept with the chunk, for a client that declared only a CRC32C to record.
        return Response.json({"chunk_id": chunk_id, "size": req.body.nbytes, "hash": stored}, status=201)

    async def put_batch(self, req: Request) -> Response:
        chunks = parse_batch(req.body)
        hashes = await self.run(self.volume.put_batch, chunks)
        self.rawx.bytes_in.inc(sum(c[1].nbytes for c in chunks))
        return Response.json({"service_id": self.rawx.service_id,
                              "chunks": [{"chunk_id": c[0], "size": c[1].nbytes, "hash": h}
                                         for c, h in zip(chunks, hashes, strict=True)]}, status=201)

    @staticmethod
    def _meta_headers(meta: dict) -> dict[str, str]:
        return {"X-Grid-Chunk-Hash": meta["hash"], "X-Grid-Chunk-Size": str(meta["size"]),
                "X-Grid-Content-Path": urllib.parse.quote(str(meta.get("path", ""))),
                "X-Grid-Chunk-Pos": str(meta.get("pos", ""))}

    async def get(self, req: Request) -> Response:
        rng = req.header("range")
        status = 206 if rng else 200
        headers, body = await self.run(self._read, req.match["id"], rng)
        if isinstance(body, FileRange):
            self.rawx.bytes_out.inc(body.count)
            return Response(status, headers, content_type="application/octet-stream", release=body.close,
                            file=FileBody(body.fd, body.offset, body.count))
        data, buf = body
        self.rawx.bytes_out.inc(data.nbytes)
        return Response(status, headers, data, "application/octet-stream",
                        release=lambda: self.rawx.buffers.release(buf))

    def _read(self, chunk_id: str, rng: str) -> tuple[dict[str, str], FileRange | tuple[memoryview, Buffer]]:
        """Record, range and verified bytes in one trip to a worker thread (two hand-offs cost a small
        GET about as much CPU as its read): a large range as the open file, to be sent with sendfile
        (verifying it reads it a block at a time into a buffer that stays in the CPU cache, where
        reading it into a buffer of its size and sending that copied every byte twice more)."""
        meta = self.volume.meta(chunk_id)
        headers = self._meta_headers(meta)
        start, end = 0, meta["size"]
        if rng:
            start, end = parse_range(rng, meta["size"])
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{meta['size']}"
        # sendfile sends from the page cache: for a volume written around it (O_DIRECT), a cold read
        # through it cost more than reading straight into a buffer and sending that.
        if end - start >= SENDFILE_MIN and not self.volume.direct:
            scratch = self.rawx.buffers.acquire(BLOCK)
            try:
                opened = self.volume.open_verified(chunk_id, start, end - start, scratch)
            finally:
                self.rawx.buffers.release(scratch)
            if opened is not None:
                return headers, opened
        data, _, buf = self.volume.read(chunk_id, start, end - start, self.rawx.buffers)
        assert buf is not None  # read from the pool
        return headers, (data, buf)

    async def head(self, req: Request) -> Response:
        meta = await self.run(self.volume.meta, req.match["id"])
        return Response(200, self._meta_headers(meta))

    async def delete(self, req: Request) -> Response:
        await self.run(self.volume.delete, req.match["id"])
        return Response(204)

    async def link(self, req: Request) -> Response:
        new_id = check_chunk_id(req.query.get("to", ""))
        ref = {"container": req.query.get("container", ""), "path": req.query.get("path", "")}
        await self.run(self.volume.link, req.match["id"], new_id, ref)
        return Response.json({"chunk_id": new_id, "service_id": self.rawx.service_id}, status=201)

    # -- the volume -----------------------------------------------------------------------------------

    async def listing(self, req: Request) -> Response:
        try:
            older_than = float(req.query.get("older_than", "86400"))
        except ValueError as exc:
            raise BadRequest("older_than must be a number of seconds") from exc
        return Response.json(await self.run(self.volume.listing, older_than))

    async def info(self, _: Request) -> Response:
        return Response.json(self.rawx.info())

    async def scrub_state(self, _: Request) -> Response:
        return Response.json(self._scrubber().state())

    async def scrub_now(self, req: Request) -> Response:
        """Start a pass now: 202 with the new pass, or 200 with the one already running."""
        started, state = self._scrubber().request(parse_rate(req.json()))
        return Response.json(state, status=202 if started else 200)

    def _scrubber(self) -> Scrubber:
        if self.rawx.scrubber is None:
            raise ServiceUnavailable("this storage server runs no scrubber")
        return self.rawx.scrubber

    async def health(self, _: Request) -> Response:
        return Response.json({"ok": True})

    async def prometheus(self, _: Request) -> Response:
        body, content_type = exposition(self.rawx.metrics)
        return Response(body=body, content_type=content_type)
