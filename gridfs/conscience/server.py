"""The conscience service: heartbeats in, scored service lists out.

The registry lives in memory, keyed by service id (``rawx-...``, sent in each heartbeat;
a heartbeat without one is keyed by its address, as before ids existed). The same id
heard from a new address moves the service there; an entry of another id at that
address is dropped (that server is gone: the address now belongs to the newcomer). Scores are computed when asked,
from the last heartbeat of each service (see ``scoring.py``), so they are never staler
than the last heartbeat. With ``--data DIR`` the registry and the locks are saved to
``DIR/conscience.json`` (atomically), so a restart keeps locks and first-seen times
(no ramp-up of the whole grid after a conscience restart).

Times: silence and ramp-up are measured on the monotonic clock, so a wall-clock jump
cannot silence every service at once; the API reports wall-clock ``first_seen`` and
``last_seen`` (Unix seconds) derived from it.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest, InvalidName, NotFound
from gridfs.common.http import PUBLIC_PATHS, aiohttp_middlewares
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics, public_paths
from gridfs.common.names import check_service_id
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.conscience.scoring import OPTIONAL_STATS, STAT_DEFAULTS, ScoringRules, is_full, is_silent, scores

log = logging.getLogger("conscience")

TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")
# host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
ADDR_RE = re.compile(r"^(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})\Z")
LOCATION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){3}\Z")
MAX_TAGS = 64
# Figures a service may report for operators that play no part in scoring (no default: a service
# type that does not report one shows none).
REPORTED_STATS = ("chunks",)
STATE_FILE = "conscience.json"
STATE_VERSION = 2  # 2: services carry their id (version 1 files load with id = addr)
FLUSH_INTERVAL = 5.0  # heartbeat-only changes (last_seen, stats) are saved at most this often


def _number(name: str, value: Any) -> float:
    # bool is an int subclass in Python; true/false is not a figure.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadRequest(f"heartbeat stat {name!r} must be a finite number >= 0, got {value!r}")
    return float(value)


def parse_heartbeat(body: Any) -> tuple[str, str, str, str, dict[str, Any], dict[str, float]]:
    """Validate a heartbeat body: (id, type, addr, location, tags, stats), or BadRequest.

    A heartbeat without ``id`` (a service older than ids) is known by its address."""
    if not isinstance(body, dict):
        raise BadRequest("heartbeat body must be a JSON object")
    kind, addr, location = body.get("type"), body.get("addr"), body.get("location")
    if not isinstance(kind, str) or not TYPE_RE.match(kind):
        raise BadRequest(f"heartbeat 'type' must be 1-32 of a-z 0-9 _ -, got {kind!r}")
    m = ADDR_RE.match(addr) if isinstance(addr, str) else None
    if m is None or not 0 < int(m.group(1)) < 65536:
        raise BadRequest(f"heartbeat 'addr' must be host:port, got {addr!r}")
    if not isinstance(location, str) or not LOCATION_RE.match(location):
        raise BadRequest(
            f"heartbeat 'location' must be site.rack.host.volume (4 words of A-Z a-z 0-9 _ -), got {location!r}"
        )
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS or not all(
        isinstance(k, str) and (v is None or isinstance(v, str | int | float | bool)) for k, v in tags.items()
    ):
        raise BadRequest(f"heartbeat 'tags' must be an object of at most {MAX_TAGS} scalar values")
    raw_stats = body.get("stats")
    if not isinstance(raw_stats, dict):
        raise BadRequest("heartbeat 'stats' must be an object")
    # Unknown stat names are dropped: the registry keeps only what scoring understands.
    stats = {k: _number(k, raw_stats[k]) for k in (*STAT_DEFAULTS, *OPTIONAL_STATS, *REPORTED_STATS) if k in raw_stats}
    service_id = body.get("id")
    if service_id is None:
        return addr, kind, addr, location, tags, stats
    try:
        return check_service_id(service_id), kind, addr, location, tags, stats
    except InvalidName as exc:
        raise BadRequest(f"heartbeat 'id': {exc}") from None


@dataclass
class Service:
    id: str  # the address for a service that sends no id
    type: str
    addr: str
    location: str
    tags: dict[str, Any]
    stats: dict[str, float]
    first_seen: float  # monotonic
    last_seen: float  # monotonic
    up: bool = True  # as last reported in the logs; scores use the clock, not this flag

    @property
    def name(self) -> str:
        """How logs name it: the id, with the address when they differ."""
        return self.id if self.id == self.addr else f"{self.id} ({self.addr})"


@dataclass
class Registry:
    rules: ScoringRules
    state_file: Path | None = None
    services: dict[str, Service] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    heartbeats: int = 0
    dirty: bool = False  # heartbeat-only changes not yet saved
    last_awake: float = field(default_factory=time.monotonic)  # when this process last ran (monotonic)

    # -- our own stalls ---------------------------------------------------------------------------

    def awake(self, now: float) -> None:
        """Take out of everyone's silence the time this process itself did not run.

        Housekeeping runs at least every ``timeout / 4``, so a longer gap means the conscience was
        frozen (a blocked fsync, a starved or paused machine): heartbeats sent meanwhile were never
        read, and counting that gap as their senders' silence would list a live grid as dead at
        once (writes then fail with NotEnoughServices). Services that were up when the stall began
        get the gap added to their last heartbeat; a service that is really gone still goes silent,
        one timeout of our own running time after its last heartbeat."""
        gap = now - self.last_awake
        if gap > self.rules.timeout / 2:
            forgiven = 0
            for svc in self.services.values():
                if not is_silent(self.last_awake, svc.last_seen, self.rules):
                    svc.last_seen = min(now, svc.last_seen + gap)
                    forgiven += 1
            log.warning("the conscience did not run for %.1f s: that time is not counted as silence of "
                        "the %d services that were up", gap, forgiven)
        self.last_awake = max(self.last_awake, now)

    # -- clocks ---------------------------------------------------------------------------------

    @staticmethod
    def _wall(mono: float, now_mono: float, now_wall: float) -> float:
        return now_wall - (now_mono - mono)

    # -- persistence ------------------------------------------------------------------------------

    def load(self) -> None:
        if not self.state_file or not self.state_file.exists():
            return
        try:
            state = json.loads(self.state_file.read_text())
            now_mono, now_wall = time.monotonic(), time.time()
            services = {}
            for s in state["services"]:
                sid = s.get("id") or s["addr"]
                services[sid] = Service(
                    sid, s["type"], s["addr"], s["location"], dict(s.get("tags") or {}), dict(s.get("stats") or {}),
                    first_seen=now_mono - max(0.0, now_wall - float(s["first_seen"])),
                    # Counted as heard at the restart: heartbeats are saved only every few seconds, so
                    # the saved time can be older than the timeout for a service that beat until the
                    # crash. Listing it silent would stop every write until its next beat; a service
                    # really gone goes silent one timeout from now.
                    last_seen=now_mono,
                )
            locked = {str(a) for a in state.get("locked", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Starting is better than refusing to; keep the bad file for the operator.
            aside = self.state_file.with_name(f"{self.state_file.name}.corrupt-{int(time.time())}")
            os.replace(self.state_file, aside)
            log.error("could not read %s (%s); starting with an empty registry, file kept as %s",
                      self.state_file, exc, aside)
            return
        self.services, self.locked = services, locked
        log.info("restored %d services and %d locks from %s", len(services), len(locked), self.state_file)

    def save(self) -> None:
        """Write the registry atomically: a crash leaves the old file or the new one."""
        if not self.state_file:
            return
        now_mono, now_wall = time.monotonic(), time.time()
        state = {
            "version": STATE_VERSION,
            "locked": sorted(self.locked),
            "services": [
                {"id": s.id, "type": s.type, "addr": s.addr, "location": s.location, "tags": s.tags,
                 "stats": s.stats,
                 "first_seen": self._wall(s.first_seen, now_mono, now_wall),
                 "last_seen": self._wall(s.last_seen, now_mono, now_wall)}
                for s in self.services.values()
            ],
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)
        with contextlib.suppress(OSError):  # the rename is durable only once the directory is
            fd = os.open(self.state_file.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.dirty = False

    def persist(self) -> None:
        """Save now; on failure (disk full, say) keep serving and let housekeeping retry."""
        try:
            self.save()
        except OSError as exc:
            self.dirty = True
            log.error("could not save the registry to %s: %s", self.state_file, exc)

    # -- changes ----------------------------------------------------------------------------------

    def heartbeat(self, body: Any) -> None:
        sid, kind, addr, location, tags, stats = parse_heartbeat(body)
        now = time.monotonic()
        self.awake(now)
        self.heartbeats += 1
        replaced = self._drop_others_at(addr, sid)
        svc = self.services.get(sid)
        if svc is None or svc.type != kind:
            svc = self.services[sid] = Service(sid, kind, addr, location, tags, stats, now, now)
            for old, was_locked in replaced:
                # An entry without id at this address was most likely this very service before
                # it sent ids: its lock and first-seen time carry over.
                if old.id == old.addr and old.type == kind:
                    svc.first_seen = old.first_seen
                    if was_locked:
                        self.locked.add(sid)
            log.info("new %s service %s at %s", kind, svc.name, location)
            self.persist()  # structural change: saved at once
            return
        if not svc.up:
            log.info("%s %s at %s is back after %.1f s of silence", kind, svc.name, location, now - svc.last_seen)
        moved = svc.location != location or svc.addr != addr
        if svc.addr != addr:
            log.info("%s %s moved from address %s to %s", kind, sid, svc.addr, addr)
        if svc.location != location:
            log.info("%s %s moved from %s to %s", kind, svc.name, svc.location, location)
        svc.addr, svc.location, svc.tags, svc.stats, svc.last_seen, svc.up = addr, location, tags, stats, now, True
        if moved or replaced:
            self.persist()
        else:
            self.dirty = True

    def _drop_others_at(self, addr: str, sid: str) -> list[tuple[Service, bool]]:
        """Entries of other ids at ``addr`` are stale: that address now belongs to ``sid``.
        Returns each dropped entry and whether it was locked. The lock of a service with an id
        stays: it comes back locked wherever it registers next (a drain survives a restart)."""
        dropped = []
        for other in [s for s in self.services.values() if s.addr == addr and s.id != sid]:
            del self.services[other.id]
            dropped.append((other, other.id in self.locked))
            if other.id == other.addr:
                self.locked.discard(other.id)
            log.info("dropped %s %s: %s now answers at %s", other.type, other.name, sid, addr)
        return dropped

    def resolve(self, key: Any) -> str:
        """The id of the service named by ``key``: its id, or its current address."""
        if not isinstance(key, str) or not key:
            raise BadRequest("name a service by \"id\" or \"addr\"")
        if key in self.services:
            return key
        found = next((s.id for s in self.services.values() if s.addr == key), None)
        if found is None:
            raise NotFound(f"no service {key!r} is registered")
        return found

    def set_locked(self, key: Any, locked: bool) -> str:
        """Lock or unlock the service named by id or address; returns its id."""
        sid = self.resolve(key)
        was = sid in self.locked
        (self.locked.add if locked else self.locked.discard)(sid)
        if was != locked:
            log.info("%s %s", "locked" if locked else "unlocked", self.services[sid].name)
            self.persist()
        return sid

    def forget(self, key: Any) -> None:
        sid = self.resolve(key)
        svc = self.services.pop(sid)
        self.locked.discard(sid)  # a lock outliving its service would surprise a re-registration
        log.info("forgot %s %s at %s", svc.type, svc.name, svc.location)
        self.persist()

    def check_silence(self) -> None:
        """Log each service going silent once, when it happens (not only when listed)."""
        now = time.monotonic()
        self.awake(now)
        for svc in self.services.values():
            if svc.up and is_silent(now, svc.last_seen, self.rules):
                svc.up = False
                log.warning("%s %s at %s went silent (no heartbeat for %.1f s)",
                            svc.type, svc.name, svc.location, now - svc.last_seen)

    # -- views ------------------------------------------------------------------------------------

    def listing(self, kind: str | None = None) -> list[dict[str, Any]]:
        self.check_silence()
        now_mono, now_wall = time.monotonic(), time.time()
        out = []
        for svc in self.services.values():
            if kind and svc.type != kind:
                continue
            locked = svc.id in self.locked
            silent = is_silent(now_mono, svc.last_seen, self.rules)
            put, get = scores(svc.stats, now=now_mono, first_seen=svc.first_seen, last_seen=svc.last_seen,
                              locked=locked, rules=self.rules)
            out.append({
                "id": svc.id, "type": svc.type, "addr": svc.addr, "location": svc.location, "tags": svc.tags,
                "stats": {**STAT_DEFAULTS, **svc.stats}, "score_put": put, "score_get": get, "locked": locked,
                "first_seen": round(self._wall(svc.first_seen, now_mono, now_wall), 3),
                "last_seen": round(self._wall(svc.last_seen, now_mono, now_wall), 3),
                "up": not silent,
                # Why a service takes no writes, for clients to say so: silent ("up" false), locked, or full.
                "full": is_full(svc.stats, self.rules),
            })
        return sorted(out, key=lambda s: (s["type"], s["location"], s["addr"]))


class RegistryCollector(Collector):
    """Prometheus view of the registry, computed at scrape time like the API's scores."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = self.registry.listing()
        count = GaugeMetricFamily("grid_conscience_services", "registered services", labels=["type", "state"])
        states: dict[tuple[str, str], int] = {}
        for r in rows:
            state = "silent" if not r["up"] else "locked" if r["locked"] else "up"
            states[(r["type"], state)] = states.get((r["type"], state), 0) + 1
        for (kind, state), n in sorted(states.items()):
            count.add_metric([kind, state], n)
        yield count
        labels = ["type", "id", "addr", "location"]
        put = GaugeMetricFamily("grid_conscience_score_put", "write score 0-100", labels=labels)
        get = GaugeMetricFamily("grid_conscience_score_get", "read score 0-100", labels=labels)
        for r in rows:
            put.add_metric([r["type"], r["id"], r["addr"], r["location"]], r["score_put"])
            get.add_metric([r["type"], r["id"], r["addr"], r["location"]], r["score_get"])
        yield put
        yield get


def build_app(secret: str, registry: Registry, public: frozenset[str] = PUBLIC_PATHS) -> web.Application:
    metrics = CollectorRegistry()
    served = RequestMetrics(metrics)
    beats = Counter("grid_conscience_heartbeats", "heartbeats accepted", registry=metrics)
    refused = Counter("grid_conscience_heartbeats_refused", "malformed heartbeats refused", registry=metrics)
    metrics.register(RegistryCollector(registry))

    async def heartbeat(request: web.Request) -> web.Response:
        try:
            registry.heartbeat(await request.json())
        except (BadRequest, json.JSONDecodeError):
            refused.inc()
            raise
        beats.inc()
        return web.json_response({"ok": True})

    async def services(request: web.Request) -> web.Response:
        return web.json_response(registry.listing(request.query.get("type") or None))

    def named(where: Any) -> Any:
        # {"id": ...} or {"addr": ...}, in a JSON body or a query string
        return (where.get("id") or where.get("addr")) if hasattr(where, "get") else None

    async def set_lock(request: web.Request, locked: bool) -> web.Response:
        sid = registry.set_locked(named(await request.json()), locked)
        return web.json_response({"id": sid, "addr": registry.services[sid].addr, "locked": locked})

    async def lock(request: web.Request) -> web.Response:
        return await set_lock(request, True)

    async def unlock(request: web.Request) -> web.Response:
        return await set_lock(request, False)

    async def forget(request: web.Request) -> web.Response:
        key = named(request.query)
        if not key:
            raise BadRequest("DELETE /v1/services needs ?id=SERVICE_ID or ?addr=host:port")
        registry.forget(key)
        return web.json_response({"ok": True})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "services": len(registry.services)})

    # Scraped on the event loop: the registry is only ever read and changed there.
    app = web.Application(middlewares=[aiohttp_request_metrics(served), *aiohttp_middlewares(secret, public)])
    app.add_routes([
        web.post("/v1/heartbeat", heartbeat),
        web.get("/v1/services", services),
        web.delete("/v1/services", forget),
        web.post("/v1/lock", lock),
        web.post("/v1/unlock", unlock),
        web.get("/health", health),
        aiohttp_metrics_route(metrics),
    ])
    return app


async def housekeeping(registry: Registry, stop: asyncio.Event) -> None:
    """Log silences as they happen and save heartbeat-only changes now and then."""
    tick = min(1.0, registry.rules.timeout / 4)
    last_flush = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)
        registry.check_silence()
        if registry.dirty and (stop.is_set() or time.monotonic() - last_flush >= FLUSH_INTERVAL):
            registry.persist()
            last_flush = time.monotonic()


async def serve(args: argparse.Namespace) -> None:
    setup_logging("conscience", args.log_level)
    cfg = GridConfig.load(args.config)
    state_file = None
    if args.data:
        Path(args.data).mkdir(parents=True, exist_ok=True)
        state_file = Path(args.data) / STATE_FILE
    registry = Registry(ScoringRules(args.timeout, args.ramp, args.full), state_file)
    registry.load()
    sock, url = bind(args.host, args.port)
    log.info("conscience on %s (timeout %.1f s, ramp %.1f s, full at %.0f %%)",
             url, args.timeout, args.ramp, args.full * 100)
    await serve_app(build_app(cfg.secret, registry, public_paths(cfg)), sock, url, args.ready_file,
                    background=lambda stop: housekeeping(registry, stop))


def main() -> None:
    p = base_arg_parser("gridfs conscience: service registry and scores")
    p.add_argument("--data", default=None, help="folder where the registry and locks are saved (optional)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds without heartbeat before score 0")
    p.add_argument("--ramp", type=float, default=3.0, help="seconds for a new service to reach its full score")
    p.add_argument("--full", type=float, default=0.90, help="used fraction from which a volume takes no writes")
    args = p.parse_args()
    try:
        ScoringRules(args.timeout, args.ramp, args.full)
    except ValueError as exc:
        p.error(str(exc))
    asyncio.run(serve(args))
