"""A service whose work is one background thread (the rebuilder, the lifecycle worker): the thread runs
``worker.run()`` until SIGTERM, then ``worker.shutdown()``; the service answers ``/health`` and
``/metrics`` (its requests, and what the worker's collector reports) and does not register with the
conscience (nothing calls it).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from gridfs.common.config import GridConfig
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics, public_paths
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging


class ThreadWorker(Protocol):
    def run(self) -> None: ...

    def shutdown(self) -> None: ...


Make = Callable[[GridConfig, str], Any]
Health = Callable[[Any, str], dict[str, Any]]
MakeCollector = Callable[[Any], Collector]


def main(name: str, description: str, state_help: str, make: Make, health: Health,
         collector: MakeCollector | None = None) -> None:
    """``python -m MODULE --config grid.toml --state DIR``: ``make(cfg, state)`` builds the worker;
    ``health(worker, state)`` is added to ``/health``'s ``{"ok": true}``; ``collector(worker)``, if given,
    adds the worker's own figures to ``/metrics``."""
    p = base_arg_parser(description)
    p.add_argument("--state", required=True, help=state_help)
    asyncio.run(_serve(p.parse_args(), name, make, health, collector))


async def _serve(args: argparse.Namespace, name: str, make: Make, health: Health,
                 collector: MakeCollector | None) -> None:
    cfg = GridConfig.load(args.config)
    log = setup_logging(name, args.log_level)
    worker: ThreadWorker = make(cfg, args.state)
    sock, url = bind(args.host, args.port)
    log.info("%s on %s, state in %s", name, url, args.state)

    async def answer_health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, **health(worker, args.state)})

    async def run(stop: asyncio.Event) -> None:
        thread = threading.Thread(target=worker.run, name=name, daemon=True)
        thread.start()
        await stop.wait()
        worker.shutdown()  # the worker stops between two steps of its work
        await asyncio.to_thread(thread.join, 10)

    metrics = CollectorRegistry()
    if collector is not None:
        metrics.register(collector(worker))
    app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(metrics)),
                                       *aiohttp_middlewares(cfg.secret, public_paths(cfg))])
    app.add_routes([web.get("/health", answer_health), aiohttp_metrics_route(metrics)])
    await serve_app(app, sock, url, args.ready_file, run)
