"""The conscience service: heartbeats in, scored service lists out.

State lives in memory; locks are persisted to ``--data`` so a restart keeps them.
Scores are computed when asked, from the last heartbeat of each service.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest, NotFound
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.conscience.scoring import ScoringRules, scores

log = logging.getLogger("conscience")
LOCATION_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){3}$")
ADDR_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]{3,100}$")
STATS = ("cpu_idle", "io_idle", "free_bytes", "total_bytes", "inflight")


@dataclass
class Service:
    type: str
    addr: str
    location: str
    tags: dict
    stats: dict
    first_seen: float
    last_seen: float
    locked: bool = False
    up: bool = True


@dataclass
class Registry:
    rules: ScoringRules
    lock_file: Path | None = None
    services: dict[str, Service] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)

    def load_locks(self) -> None:
        if self.lock_file and self.lock_file.exists():
            self.locked = set(json.loads(self.lock_file.read_text()))

    def save_locks(self) -> None:
        if self.lock_file:
            tmp = self.lock_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(sorted(self.locked)))
            os.replace(tmp, self.lock_file)

    def heartbeat(self, body: dict) -> None:
        try:
            kind, addr, location = body["type"], body["addr"], body.get("location", "")
            stats = {k: float(body["stats"].get(k, 0)) for k in STATS}
            tags = dict(body.get("tags") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"malformed heartbeat: {exc!r}") from exc
        if not isinstance(kind, str) or not re.match(r"^[a-z0-9]{1,32}$", kind):
            raise BadRequest("heartbeat 'type' must be 1-32 of a-z 0-9")
        if not isinstance(addr, str) or not ADDR_RE.match(addr):
            raise BadRequest("heartbeat 'addr' must be host:port")
        if not isinstance(location, str) or not LOCATION_RE.match(location):
            raise BadRequest("heartbeat 'location' must be site.rack.host.volume")
        now = time.time()
        svc = self.services.get(addr)
        if svc is None or svc.type != kind:
            log.info("new %s service %s at %s", kind, addr, location)
            svc = self.services[addr] = Service(kind, addr, location, tags, stats, now, now)
        elif not svc.up:
            log.info("%s %s is back", kind, addr)
        svc.location, svc.tags, svc.stats, svc.last_seen, svc.up = location, tags, stats, now, True

    def listing(self, kind: str | None) -> list[dict]:
        now = time.time()
        out = []
        for svc in self.services.values():
            if kind and svc.type != kind:
                continue
            silent = now - svc.last_seen > self.rules.timeout
            if silent and svc.up:
                log.warning("%s %s went silent", svc.type, svc.addr)
            svc.up = not silent
            put, get = scores(svc.stats, now=now, first_seen=svc.first_seen, last_seen=svc.last_seen,
                              locked=svc.addr in self.locked, rules=self.rules)
            out.append({
                "type": svc.type, "addr": svc.addr, "location": svc.location, "tags": svc.tags,
                "stats": svc.stats, "score_put": put, "score_get": get, "locked": svc.addr in self.locked,
                "first_seen": svc.first_seen, "last_seen": svc.last_seen, "up": svc.up,
            })
        return sorted(out, key=lambda s: (s["type"], s["location"], s["addr"]))


def build_app(secret: str, registry: Registry) -> web.Application:
    metrics = CollectorRegistry()
    beats = Counter("grid_conscience_heartbeats", "heartbeats received", registry=metrics)
    Gauge("grid_conscience_services", "registered services", registry=metrics).set_function(
        lambda: len(registry.services))

    async def heartbeat(request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest("heartbeat body must be a JSON object")
        registry.heartbeat(body)
        beats.inc()
        return web.json_response({"ok": True})

    async def services(request: web.Request) -> web.Response:
        return web.json_response(registry.listing(request.query.get("type")))

    async def set_lock(request: web.Request) -> web.Response:
        body = await request.json()
        addr = body.get("addr") if isinstance(body, dict) else None
        if addr not in registry.services:
            raise NotFound(f"no service {addr!r} is registered")
        if request.path.endswith("/lock"):
            registry.locked.add(addr)
        else:
            registry.locked.discard(addr)
        registry.save_locks()
        log.info("%s %s", "locked" if addr in registry.locked else "unlocked", addr)
        return web.json_response({"addr": addr, "locked": addr in registry.locked})

    async def forget(request: web.Request) -> web.Response:
        addr = request.query.get("addr", "")
        if registry.services.pop(addr, None) is None:
            raise NotFound(f"no service {addr!r} is registered")
        return web.json_response({"ok": True})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(middlewares=aiohttp_middlewares(secret))
    app.add_routes([
        web.post("/v1/heartbeat", heartbeat), web.get("/v1/services", services),
        web.post("/v1/lock", set_lock), web.post("/v1/unlock", set_lock), web.delete("/v1/services", forget),
        web.get("/health", health), web.get("/metrics", prometheus),
    ])
    return app


async def serve(args: argparse.Namespace) -> None:
    setup_logging("conscience", args.log_level)
    cfg = GridConfig.load(args.config)
    lock_file = Path(args.data) / "conscience-locks.json" if args.data else None
    if lock_file:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    registry = Registry(ScoringRules(args.timeout, args.ramp, args.full), lock_file)
    registry.load_locks()
    sock, url = bind(args.host, args.port)
    log.info("conscience on %s", url)
    await serve_app(build_app(cfg.secret, registry), sock, url, args.ready_file)


def main() -> None:
    p = base_arg_parser("gridfs conscience")
    p.add_argument("--data", default=None, help="folder for persisted locks")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--ramp", type=float, default=3.0)
    p.add_argument("--full", type=float, default=0.90)
    asyncio.run(serve(p.parse_args()))
