"""The storage server process: HTTP chunk API on one volume, plus heartbeats.

Its service id (``rawx-...``) is written on the volume at first start (``VOLUME/service.id``),
so it stays the same whatever address the server listens on; chunk URLs name it. A request
that names another id (``X-Grid-Service-Id``) is answered 421 WrongService before anything
is read or written: the caller holds a stale address, now another server's.

PUT bodies are received into a buffer and handed to a worker thread that verifies
the declared xxh3_64 (or, from clients without xxh3, the declared CRC32C: the server then
computes the xxh3_64 it keeps and answers it), writes, fsyncs and renames (all GIL-releasing). A body cut short is
dropped before anything touches the disk.

A scrubber thread (gridfs/storage/scrub.py) reads the volume back in the background; ``POST /scrub``
starts a pass now, ``GET /scrub`` tells how it goes, and the heartbeat carries the last pass's outcome.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from gridfs.common.config import GridConfig
from gridfs.common.errors import (
    BadRequest,
    InvalidRange,
    LengthRequired,
    PayloadTooLarge,
    ServiceUnavailable,
    WrongService,
)
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.names import check_chunk_id
from gridfs.common.service import (
    base_arg_parser,
    bind,
    load_or_create_service_id,
    send_heartbeats,
    serve_app,
    setup_logging,
)
from gridfs.common.stats import StatsCollector
from gridfs.storage.client import SERVICE_ID_HEADER
from gridfs.storage.iostats import IOCollector
from gridfs.storage.scrub import Scrubber, parse_rate
from gridfs.storage.store import BufferPool, Volume

log = logging.getLogger("rawx")
MAX_CHUNK = 512 << 20
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
HASH_RE = re.compile(r"^[0-9a-fA-F]{16}$")
CRC_RE = re.compile(r"^[0-9a-fA-F]{8}$")
REF_HEADERS = {
    "X-Grid-Content-Path": "path", "X-Grid-Content-Id": "content_id", "X-Grid-Content-Version": "version",
    "X-Grid-Chunk-Pos": "pos", "X-Grid-Content-Policy": "policy", "X-Grid-Content-Container": "container",
}


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


class RawxApp:
    def __init__(self, volume: Volume, location: str, pool: ThreadPoolExecutor, service_id: str) -> None:
        self.volume, self.location, self.pool, self.service_id = volume, location, pool, service_id
        self.buffers = BufferPool()
        self.inflight = 0
        self.scrubber: Scrubber | None = None
        self.metrics = CollectorRegistry()
        self.requests = Counter("grid_rawx_requests", "requests", ["method", "status"], registry=self.metrics)
        self.bytes_in = Counter("grid_rawx_bytes_in", "chunk bytes received", registry=self.metrics)
        self.bytes_out = Counter("grid_rawx_bytes_out", "chunk bytes sent", registry=self.metrics)
        Gauge("grid_rawx_chunks", "chunks stored", registry=self.metrics).set_function(lambda: volume.chunks)
        Gauge("grid_rawx_corrupt_seen", "corrupt chunks refused", registry=self.metrics).set_function(
            lambda: volume.corrupt_seen)
        self.metrics.register(IOCollector(volume.io))  # grid_rawx_io_*: the volume's I/O pattern

    async def run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    @web.middleware
    async def count(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.inflight += 1
        try:
            resp = await handler(request)
            self.requests.labels(request.method, resp.status).inc()
            return resp
        finally:
            self.inflight -= 1

    @web.middleware
    async def check_service(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        named = request.headers.get(SERVICE_ID_HEADER)
        if named is not None and named != self.service_id:
            raise WrongService(f"this is {self.service_id}, not {named}: the address used for {named} is stale")
        return await handler(request)

    async def put(self, request: web.Request) -> web.Response:
        chunk_id = check_chunk_id(request.match_info["id"])
        size = request.content_length
        if size is None:
            raise LengthRequired("PUT of a chunk needs Content-Length")
        if size > MAX_CHUNK:
            raise PayloadTooLarge(f"chunk of {size} bytes is over the {MAX_CHUNK}-byte limit")
        digest = request.headers.get("X-Grid-Chunk-Hash", "")
        crc = request.headers.get("X-Grid-Chunk-Crc32c", "")
        if not (HASH_RE.match(digest) or (not digest and CRC_RE.match(crc))):
            raise BadRequest("X-Grid-Chunk-Hash (xxh3_64, 16 hex digits) or X-Grid-Chunk-Crc32c (8 hex digits) "
                             "is required")
        buf = self.buffers.acquire(size)
        try:
            view = memoryview(buf)[:size]
            pos = 0
            async for piece in request.content.iter_any():
                n = len(piece)
                if pos + n > size:
                    raise BadRequest("body longer than Content-Length")
                view[pos : pos + n] = piece
                pos += n
            if pos != size:  # the client went away mid-body: nothing is written
                raise BadRequest(f"body cut short at {pos} of {size} bytes")
            ref = {v: urllib.parse.unquote(request.headers[k]) for k, v in REF_HEADERS.items() if k in request.headers}
            stored = await self.run(self.volume.put, chunk_id, view, digest, ref, crc)
        finally:
            self.buffers.release(buf)
        self.bytes_in.inc(size)
        # "hash": the xxh3_64 kept with the chunk, for a client that declared only a CRC32C to record.
        return web.json_response({"chunk_id": chunk_id, "size": size, "hash": stored}, status=201)

    def _meta_headers(self, meta: dict) -> dict[str, str]:
        return {"X-Grid-Chunk-Hash": meta["hash"], "X-Grid-Chunk-Size": str(meta["size"]),
                "X-Grid-Content-Path": urllib.parse.quote(str(meta.get("path", ""))),
                "X-Grid-Chunk-Pos": str(meta.get("pos", ""))}

    async def get(self, request: web.Request) -> web.StreamResponse:
        chunk_id = check_chunk_id(request.match_info["id"])
        meta = await self.run(self.volume.meta, chunk_id)
        headers = self._meta_headers(meta)
        start, end = 0, meta["size"]
        rng = request.headers.get("Range")
        if rng:
            start, end = parse_range(rng, meta["size"])
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{meta['size']}"
        data, _, buf = await self.run(self.volume.read, chunk_id, start, end - start, self.buffers)
        try:
            resp = web.StreamResponse(status=206 if rng else 200, headers=headers)
            resp.content_type = "application/octet-stream"
            resp.content_length = data.nbytes
            await resp.prepare(request)
            await resp.write(data)
            await resp.write_eof()
        finally:
            self.buffers.release(buf)  # only once the bytes are handed to the transport
        self.bytes_out.inc(data.nbytes)
        return resp

    async def head(self, request: web.Request) -> web.Response:
        meta = await self.run(self.volume.meta, check_chunk_id(request.match_info["id"]))
        return web.Response(status=200, headers=self._meta_headers(meta))

    async def delete(self, request: web.Request) -> web.Response:
        await self.run(self.volume.delete, check_chunk_id(request.match_info["id"]))
        return web.Response(status=204)

    async def link(self, request: web.Request) -> web.Response:
        chunk_id = check_chunk_id(request.match_info["id"])
        new_id = check_chunk_id(request.query.get("to", ""))
        ref = {"container": request.query.get("container", ""), "path": request.query.get("path", "")}
        await self.run(self.volume.link, chunk_id, new_id, ref)
        return web.json_response({"chunk_id": new_id, "service_id": self.service_id}, status=201)

    async def listing(self, request: web.Request) -> web.Response:
        try:
            older_than = float(request.query.get("older_than", "86400"))
        except ValueError as exc:
            raise BadRequest("older_than must be a number of seconds") from exc
        return web.json_response(await self.run(self.volume.listing, older_than))

    async def info(self, _: web.Request) -> web.Response:
        free, total = self.volume.space()
        return web.json_response({"id": self.service_id, "location": self.location, "volume": str(self.volume.root),
                                  "free_bytes": free,
                                  "total_bytes": total, "chunks": self.volume.chunks, "inflight": self.inflight,
                                  "io": self.volume.io.snapshot()})

    async def scrub_state(self, _: web.Request) -> web.Response:
        return web.json_response(self._scrubber().state())

    async def scrub_now(self, request: web.Request) -> web.Response:
        """Start a pass now: 202 with the new pass, or 200 with the one already running."""
        body = await request.json() if request.can_read_body else None
        started, state = self._scrubber().request(parse_rate(body))
        return web.json_response(state, status=202 if started else 200)

    def _scrubber(self) -> Scrubber:
        if self.scrubber is None:
            raise ServiceUnavailable("this storage server runs no scrubber")
        return self.scrubber

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def prometheus(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def build(self, secret: str) -> web.Application:
        # check_service is innermost: its WrongService becomes a JSON 421 like any GridError.
        app = web.Application(middlewares=[self.count, *aiohttp_middlewares(secret), self.check_service],
                              client_max_size=MAX_CHUNK)
        app.add_routes([
            web.put("/chunk/{id}", self.put), web.get("/chunk/{id}", self.get, allow_head=False),
            web.get("/chunks", self.listing),
            web.head("/chunk/{id}", self.head), web.delete("/chunk/{id}", self.delete),
            web.post("/chunk/{id}/link", self.link), web.get("/info", self.info),
            web.get("/scrub", self.scrub_state), web.post("/scrub", self.scrub_now),
            web.get("/health", self.health), web.get("/metrics", self.prometheus),
        ])
        return app


def heartbeat_payload(rawx: RawxApp, addr: str) -> Callable[[], dict]:
    """What the storage server tells the conscience each second: who and where it is, real figures, and
    the outcome of its last scrub pass (so ``grid status`` need not ask every server)."""
    stats = StatsCollector(rawx.volume.root)

    def payload() -> dict:
        free, total = rawx.volume.space()
        tags = {"volume": str(rawx.volume.root), **(rawx.scrubber.tags() if rawx.scrubber else {})}
        return {"type": "rawx", "id": rawx.service_id, "addr": addr, "location": rawx.location, "tags": tags,
                "stats": {**stats.sample(), "free_bytes": free, "total_bytes": total, "inflight": rawx.inflight,
                          "chunks": rawx.volume.chunks, **rawx.volume.io.heartbeat()}}

    return payload


async def serve(args: argparse.Namespace) -> None:
    setup_logging("rawx", args.log_level)
    cfg = GridConfig.load(args.config)
    volume = Volume(args.volume, args.max_bytes, args.throttle)
    service_id = load_or_create_service_id(volume.root, "rawx")
    rawx = RawxApp(volume, args.location, ThreadPoolExecutor(8, thread_name_prefix="rawx-io"), service_id)
    sock, url = bind(args.host, args.port)
    log.info("rawx %s for %s at %s on %s", service_id, Path(args.volume), args.location, url)
    payload = heartbeat_payload(rawx, url.removeprefix("http://"))
    rawx.scrubber = Scrubber.for_grid(volume, service_id, cfg, rawx.buffers)
    rawx.scrubber.start()
    try:
        await serve_app(rawx.build(cfg.secret), sock, url, args.ready_file,
                        lambda stop: send_heartbeats(cfg, payload, stop))
    finally:
        # Off the event loop: the scrubber may be inside a read or a call to the reverse index.
        await asyncio.to_thread(rawx.scrubber.stop)


def main() -> None:
    p = base_arg_parser("gridfs storage server (rawx)")
    p.add_argument("--volume", required=True)
    p.add_argument("--location", required=True, help="site.rack.host.volume")
    p.add_argument("--max-bytes", type=int, default=None, help="volume capacity (default: the disk's)")
    p.add_argument("--throttle", type=float, default=0.0, metavar="MB/s",
                   help="test mode: pace the volume's writes and reads to this rate, like a busy disk (0: off)")
    asyncio.run(serve(p.parse_args()))
