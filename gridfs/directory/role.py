"""What every directory service (meta0, meta1, meta2) shares: identity, threads, HTTP, heartbeats.

Each role is a process of its own with a data folder, a service id kept in that folder,
and a heartbeat to the conscience (type ``meta0``/``meta1``/``meta2``), so the services
that point to it name its id and find its current address through the conscience.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.common.errors import BadRequest, GridError, ServiceUnavailable
from gridfs.common.http import PUBLIC_PATHS, aiohttp_middlewares
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics
from gridfs.common.service import load_or_create_service_id
from gridfs.common.stats import StatsCollector
from gridfs.conscience.client import CachedServices, ConscienceClient

log = logging.getLogger("directory")


def int_query(r: web.Request, name: str, default: int) -> int:
    try:
        return int(r.query.get(name, default))
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


class RoleService:
    kind = "meta"

    def __init__(self, data: Path, secret: str, conscience_url: str) -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.secret = secret
        self.service_id = load_or_create_service_id(data, self.kind)
        self.conscience = ConscienceClient(conscience_url, secret)
        self.pool = ThreadPoolExecutor(8, thread_name_prefix=self.kind)
        self.inflight = 0
        self.metrics = CollectorRegistry()  # served at /metrics
        self._stats: StatsCollector | None = None
        # Disk space counted as this service's (None: the disk's). On a disk shared with other services
        # (a local grid), the disk's used fraction says nothing of this one: see ``space``.
        self.capacity: int | None = None
        self._peers: dict[str, CachedServices] = {}

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Database and peer calls block: they run in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    # -- peers ----------------------------------------------------------------------------------

    def peers(self, kind: str) -> CachedServices:
        if kind not in self._peers:
            self._peers[kind] = CachedServices(self.conscience, kind, ttl=1.0)
        return self._peers[kind]

    def address_of(self, kind: str, service_id: str) -> str:
        """``http://host:port`` of a service, by id, as the conscience last heard it."""
        for fresh in (False, True):
            if fresh:
                self.peers(kind).invalidate()
            for svc in self.peers(kind).get():
                if svc.get("id") == service_id:
                    return f"http://{svc['addr']}"
        raise ServiceUnavailable(f"{kind} service {service_id} is not registered with the conscience")

    # -- HTTP -----------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def outbox_read(self, limit: int) -> dict:
        raise NotImplementedError

    def outbox_ack(self, acks: dict[str, Any]) -> dict:
        raise NotImplementedError

    def outbox_backlog(self) -> int | None:
        """Events waiting in this service's outboxes for the event agent; None for a role without one."""
        return None

    def outbox_routes(self) -> list[web.RouteDef]:
        """``GET /v1/outbox?limit=`` (oldest events first) and ``POST /v1/outbox/ack {"acks": {DB: ID}}``."""

        async def read(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.outbox_read, int_query(r, "limit", 1000)))

        async def ack(r: web.Request) -> web.Response:
            acks = (await r.json()).get("acks")
            if not isinstance(acks, dict):
                raise BadRequest('body must be {"acks": {"<db>": <last id>}}')
            return web.json_response(await self.run(self.outbox_ack, acks))

        return [web.get("/v1/outbox", read), web.post("/v1/outbox/ack", ack)]

    def build_app(self, public: frozenset[str] = PUBLIC_PATHS) -> web.Application:
        """The role's routes, ``/health`` and ``/metrics``; ``public``: the paths answered without the secret."""
        self.metrics.register(OutboxCollector(self))

        @web.middleware
        async def count(request: web.Request, handler: Any) -> Any:
            self.inflight += 1
            try:
                return await handler(request)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                if isinstance(exc, GridError):
                    raise
                raise BadRequest(f"malformed request: {exc!r}") from exc
            finally:
                self.inflight -= 1

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"ok": True, "id": self.service_id, "role": self.kind})

        app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(self.metrics)),
                                           *aiohttp_middlewares(self.secret, public), count],
                              client_max_size=64 << 20)
        # blocking: the outbox backlog is counted in the databases, under their locks.
        app.add_routes([*self.routes(), web.get("/health", health), aiohttp_metrics_route(self.metrics, blocking=True)])
        return app

    def space(self) -> tuple[int, int]:
        """(free, total) bytes: the disk's, or at most ``capacity`` of them. The databases are small beside
        the free space that matters, so free is the disk's up to the capacity, not the capacity less them."""
        usage = shutil.disk_usage(self.data)
        if self.capacity is None:
            return usage.free, usage.total
        return min(usage.free, self.capacity), self.capacity

    def heartbeat(self, addr: str, location: str) -> dict:
        """What the conscience hears every second: who, where, and real load figures."""
        if self._stats is None:
            self._stats = StatsCollector(self.data)
        free, total = self.space()
        return {"type": self.kind, "id": self.service_id, "addr": addr, "location": location,
                "tags": {"data": str(self.data)},
                "stats": {**self._stats.sample(), "free_bytes": free, "total_bytes": total,
                          "inflight": self.inflight}}


class OutboxCollector(Collector):
    """``grid_outbox_events``: the event agent's backlog at this service, counted at scrape time."""

    def __init__(self, service: RoleService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = self.service.outbox_backlog()
        if waiting is not None:
            yield GaugeMetricFamily("grid_outbox_events", "events waiting in this service's outboxes for the "
                                    "event agent", value=waiting)
