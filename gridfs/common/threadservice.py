"""A service whose work is one background thread (the rebuilder, the lifecycle worker): the thread runs
``worker.run()`` until SIGTERM, then ``worker.shutdown()``; the service answers ``/health`` only and
does not register with the conscience (nothing calls it).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from gridfs.common.config import GridConfig
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging


class ThreadWorker(Protocol):
    def run(self) -> None: ...

    def shutdown(self) -> None: ...


Make = Callable[[GridConfig, str], Any]
Health = Callable[[Any, str], dict[str, Any]]


def main(name: str, description: str, state_help: str, make: Make, health: Health) -> None:
    """``python -m MODULE --config grid.toml --state DIR``: ``make(cfg, state)`` builds the worker;
    ``health(worker, state)`` is added to ``/health``'s ``{"ok": true}``."""
    p = base_arg_parser(description)
    p.add_argument("--state", required=True, help=state_help)
    asyncio.run(_serve(p.parse_args(), name, make, health))


async def _serve(args: argparse.Namespace, name: str, make: Make, health: Health) -> None:
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

    app = web.Application(middlewares=aiohttp_middlewares(cfg.secret))
    app.add_routes([web.get("/health", answer_health)])
    await serve_app(app, sock, url, args.ready_file, run)
