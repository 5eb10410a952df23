"""The storage server process: HTTP chunk API on one volume (routes in ``api``, served by the raw
asyncio protocol of ``http1``), plus heartbeats.

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
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from gridfs.common.config import GridConfig
from gridfs.common.metrics import RequestMetrics, public_paths
from gridfs.common.service import base_arg_parser, bind, load_or_create_service_id, send_heartbeats, setup_logging
from gridfs.common.stats import StatsCollector
from gridfs.storage.api import ChunkApi
from gridfs.storage.http1 import Request, Router, serve_http
from gridfs.storage.iostats import IOCollector
from gridfs.storage.metrics import ScrubCollector, VolumeCollector
from gridfs.storage.scrub import Scrubber
from gridfs.storage.store import BufferPool, Volume

log = logging.getLogger("rawx")
PACK_BELOW = 128 << 10


class RawxApp:
    """A storage server's state: its volume, buffers, counters and scrubber (routes: gridfs.storage.api)."""

    def __init__(self, volume: Volume, location: str, service_id: str) -> None:
        self.volume, self.location, self.service_id = volume, location, service_id
        self.buffers = BufferPool()
        self.inflight = 0
        self.scrubber: Scrubber | None = None
        self.metrics = CollectorRegistry()
        self.requests = RequestMetrics(self.metrics)  # every answer, through http1's on_request (count)
        self.bytes_in = Counter("grid_rawx_bytes_in", "chunk bytes received", registry=self.metrics)
        self.bytes_out = Counter("grid_rawx_bytes_out", "chunk bytes sent", registry=self.metrics)
        Gauge("grid_rawx_corrupt_seen", "corrupt chunks refused", registry=self.metrics).set_function(
            lambda: volume.corrupt_seen)
        self.metrics.register(IOCollector(volume.io))  # grid_rawx_io_*: the volume's I/O pattern
        self.metrics.register(VolumeCollector(volume, service_id, location))
        self.metrics.register(ScrubCollector(lambda: self.scrubber))

    def info(self) -> dict:
        free, total = self.volume.space()
        return {"id": self.service_id, "location": self.location, "volume": str(self.volume.root),
                "free_bytes": free, "total_bytes": total, "chunks": self.volume.chunks, "inflight": self.inflight,
                "io": self.volume.io.snapshot()}

    def count(self, req: Request, status: int, sent: int) -> None:
        self.requests.observe(req.method, req.route, status, time.monotonic() - req.started, req.body.nbytes, sent)


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
    volume = Volume(args.volume, args.max_bytes, args.throttle, args.pack_below, direct=not args.buffered_writes)
    service_id = load_or_create_service_id(volume.root, "rawx")
    rawx = RawxApp(volume, args.location, service_id)
    api = ChunkApi(rawx, ThreadPoolExecutor(8, thread_name_prefix="rawx-io"))
    sock, url = bind(args.host, args.port)
    log.info("rawx %s for %s at %s on %s", service_id, Path(args.volume), args.location, url)
    payload = heartbeat_payload(rawx, url.removeprefix("http://"))
    rawx.scrubber = Scrubber.for_grid(volume, service_id, cfg, rawx.buffers)
    rawx.scrubber.start()
    try:
        router = Router(cfg.secret, api.routes(), public_paths(cfg))
        await serve_http(router, sock, url, args.ready_file, rawx.buffers, rawx.count,
                         lambda stop: send_heartbeats(cfg, payload, stop))
    finally:
        # Off the event loop: the scrubber may be inside a read or a call to the reverse index.
        await asyncio.to_thread(rawx.scrubber.stop)


def main() -> None:
    p = base_arg_parser("gridfs storage server (rawx)")
    p.add_argument("--volume", required=True)
    p.add_argument("--location", required=True, help="site.rack.host.volume")
    p.add_argument("--max-bytes", type=int, default=None, help="volume capacity (default: the disk's)")
    p.add_argument("--buffered-writes", action="store_true",
                   help="write chunk files through the page cache (default: straight to the disk, O_DIRECT, where "
                        "the file system takes it)")
    p.add_argument("--throttle", type=float, default=0.0, metavar="MB/s",
                   help="test mode: pace the volume's writes and reads to this rate, like a busy disk (0: off)")
    p.add_argument("--pack-below", type=int, default=PACK_BELOW, metavar="BYTES",
                   help=f"a chunk of at most this size is appended to a pack file with other small chunks "
                        f"(one fsync for many) instead of a file of its own (default {PACK_BELOW}; 0: never)")
    asyncio.run(serve(p.parse_args()))
