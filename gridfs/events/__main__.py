"""``python -m gridfs.events``: the event agent process.

It runs the agent loop in a thread and serves, besides ``/health`` and ``/metrics``:

- ``GET /v1/status``: events handled, handler failures, pending retries, dead letters,
  the sources and, per source and database, the last event id handled;
- ``GET /v1/dead``: the dead letters (event, handler, attempts, last error);
- ``POST /v1/dead/retry`` body ``{"ids": [...]}`` (or ``{}`` for all): back on the retry
  list, due now, attempts reset; answers ``{"revived": n}``;
- ``GET /v1/functions/NAME/calls?limit=50``: the last calls of a user function (outcome,
  node, error, end of stderr), from the bounded log of :mod:`gridfs.functions.calllog`.

Configuration, grid.toml ``[events]``: ``retry_base`` (s, default 1), ``retry_max`` (s, 60),
``max_attempts`` (10), ``poll_interval`` (s, 0.2), ``batch`` (500), ``refresh`` (s between
asking the conscience for the sources, 3), and ``[events.handlers]`` TYPE = ["module:function"].
``[functions]``: ``enabled`` (true: run the user functions registered in the grid, see
:mod:`gridfs.functions`), ``refresh`` (s between reads of the registry, 2), ``threads`` (calls in
flight at once, 8).
``[heal] index`` and ``[heal] repair`` (both true by default) subscribe the reverse-index
feeder and the object repair handler (see :func:`subscribe_healing`); ``[notify] enabled`` (true)
the S3 bucket notifications (:mod:`gridfs.events.notify`), ``[notify] timeout`` (s, 5) per webhook POST.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest
from gridfs.common.http import PUBLIC_PATHS, aiohttp_middlewares
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics, public_paths
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.conscience.client import ConscienceClient
from gridfs.events.agent import EventAgent
from gridfs.events.handlers import ChunkReaper, load_user_handler
from gridfs.events.notify import S3Notifier
from gridfs.events.sources import OutboxSources
from gridfs.events.store import EventStore, RetryPolicy, state_db
from gridfs.functions.calllog import CallLog
from gridfs.functions.dispatch import FunctionSet
from gridfs.rdir.indexer import DELETES, UPSERTS, RdirIndexer


def build_agent(cfg: GridConfig, state: str) -> EventAgent:
    conf = cfg.extra.get("events", {})
    # quick(): a conscience that is away must not hold up the outboxes, the last list is kept.
    sources = OutboxSources(ConscienceClient(cfg.conscience_url, cfg.secret).quick(), cfg.secret,
                            refresh=float(conf.get("refresh", 3.0)))
    agent = EventAgent(sources, EventStore(state_db(state)), RetryPolicy.from_config(conf),
                       batch=int(conf.get("batch", 500)), interval=float(conf.get("poll_interval", 0.2)))
    agent.subscribe("content.deleted", ChunkReaper.for_grid(cfg))
    subscribe_healing(agent, cfg)
    if cfg.extra.get("notify", {}).get("enabled", True):  # S3 bucket notifications to webhooks
        notifier = S3Notifier.for_grid(cfg)
        for event_type in ("content.new", "content.deleted"):
            agent.subscribe(event_type, notifier)
    for event_type, specs in conf.get("handlers", {}).items():
        for spec in specs:
            agent.subscribe(event_type, load_user_handler(spec))
    if cfg.extra.get("functions", {}).get("enabled", True):
        agent.refreshers.append(FunctionSet.for_grid(cfg, CallLog(state_db(state).parent / "functions.db")))
    return agent


def subscribe_healing(agent: EventAgent, cfg: GridConfig) -> None:
    """``[heal] index`` (default true): keep the reverse index per volume from the directory's events.
    ``[heal] repair`` (default true): repair an object when a chunk of it is found corrupt or missing,
    or when it was written short of its policy."""
    heal = cfg.extra.get("heal", {})
    if heal.get("index", True):
        indexer = RdirIndexer.for_grid(cfg)
        for event_type in (*UPSERTS, *DELETES):
            agent.subscribe(event_type, indexer)
    if heal.get("repair", True):
        from gridfs.heal.handlers import ObjectRepairHandler

        repair = ObjectRepairHandler.for_grid(cfg)
        for event_type in ("chunk.corrupt", "chunk.missing", "content.degraded"):
            agent.subscribe(event_type, repair)


class LagCollector(Collector):
    """``grid_events_lag_seconds{source}``: how old the oldest event of the last batch read from each
    source was when read (0 once a read finds the outbox empty): how far behind the agent runs."""

    def __init__(self, agent: EventAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("grid_events_lag_seconds", "age of the oldest event of the last batch read, per "
                                "source (0: its outbox was empty)", labels=["source"])
        for source, seconds in sorted(self.agent.lag.items()):
            lag.add_metric([source], seconds)
        yield lag


def build_app(secret: str, agent: EventAgent, public: frozenset[str] = PUBLIC_PATHS) -> web.Application:
    registry = CollectorRegistry()
    registry.register(LagCollector(agent))
    for name, doc, value in (
        ("grid_events_handled", "events handled since start", lambda: agent.handled),
        ("grid_events_failures", "handler failures since start", lambda: agent.failures),
        ("grid_events_retries", "handler calls waiting for a retry", lambda: agent.store.counts()["retries"]),
        ("grid_events_dead", "dead letters", lambda: agent.store.counts()["dead"]),
    ):
        Gauge(name, doc, registry=registry).set_function(value)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(agent.status))

    async def dead(_: web.Request) -> web.Response:
        return web.json_response({"dead": await asyncio.to_thread(agent.store.dead_letters)})

    async def revive(r: web.Request) -> web.Response:
        body = await r.json() if r.can_read_body else {}
        ids = body.get("ids") if isinstance(body, dict) else None
        if ids is not None and not (isinstance(ids, list) and all(type(i) is int for i in ids)):
            raise BadRequest("'ids' must be a list of dead-letter ids (integers)")
        return web.json_response({"revived": await asyncio.to_thread(agent.store.revive, ids)})

    async def function_calls(r: web.Request) -> web.Response:
        functions = next((f for f in agent.refreshers if isinstance(f, FunctionSet)), None)
        if functions is None:
            raise BadRequest("user functions are off in this agent ([functions] enabled = false)")
        limit = int(r.query.get("limit", "50"))
        return web.json_response({"calls": await asyncio.to_thread(functions.calls.read, r.match_info["name"],
                                                                    limit)})

    app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(registry)),
                                       *aiohttp_middlewares(secret, public)])
    # blocking: the retry and dead-letter counts are read from the agent's database.
    app.add_routes([web.get("/health", health), aiohttp_metrics_route(registry, blocking=True),
                    web.get("/v1/status", status),
                    web.get("/v1/dead", dead), web.post("/v1/dead/retry", revive),
                    web.get("/v1/functions/{name}/calls", function_calls)])
    return app


async def serve(args: argparse.Namespace) -> None:
    cfg = GridConfig.load(args.config)
    log = setup_logging("events", args.log_level)
    agent = build_agent(cfg, args.state)
    sock, url = bind(args.host, args.port)
    log.info("event agent on %s, state in %s: %s", url, args.state, agent.store.counts())

    async def run_agent(stop: asyncio.Event) -> None:
        thread = threading.Thread(target=agent.run, name="event-agent", daemon=True)
        thread.start()
        await stop.wait()
        agent.stopped.set()
        await asyncio.to_thread(thread.join, 5)

    await serve_app(build_app(cfg.secret, agent, public_paths(cfg)), sock, url, args.ready_file, run_agent)


def main() -> None:
    p = base_arg_parser("gridfs event agent")
    p.add_argument("--state", required=True, help="folder for the agent's database (retries, dead letters)")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
