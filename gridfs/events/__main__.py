"""``python -m gridfs.events``: the event agent process.

It serves ``/health``, ``/metrics`` and ``/v1/status`` so ``grid up`` and operators can
see it, and runs the agent loop in a thread.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from gridfs.common.config import GridConfig
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.directory.client import DirectoryClient
from gridfs.events.agent import EventAgent
from gridfs.events.handlers import ChunkReaper, load_user_handler
from gridfs.storage.client import ChunkClient


def build_agent(cfg: GridConfig, state: str) -> EventAgent:
    agent = EventAgent(DirectoryClient(cfg.directory_url, cfg.secret), state)
    agent.subscribe("content.deleted", ChunkReaper(ChunkClient(cfg.secret), ThreadPoolExecutor(8)))
    for event_type, specs in cfg.extra.get("events", {}).get("handlers", {}).items():
        for spec in specs:
            agent.subscribe(event_type, load_user_handler(spec))
    return agent


async def serve(args: argparse.Namespace) -> None:
    cfg = GridConfig.load(args.config)
    log = setup_logging("events", args.log_level)
    agent = build_agent(cfg, args.state)
    registry = CollectorRegistry()
    Gauge("grid_events_cursor", "last handled event id", registry=registry).set_function(lambda: agent.cursor)
    Gauge("grid_events_handled", "events handled since start", registry=registry).set_function(lambda: agent.handled)
    Gauge("grid_events_failures", "handler failures since start", registry=registry).set_function(
        lambda: agent.failures
    )

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_: web.Request) -> web.Response:
        return web.json_response({"cursor": agent.cursor, "handled": agent.handled, "failures": agent.failures})

    app = web.Application(middlewares=aiohttp_middlewares(cfg.secret))
    app.add_routes([web.get("/health", health), web.get("/metrics", metrics), web.get("/v1/status", status)])
    sock, url = bind(args.host, args.port)
    log.info("event agent on %s from event %d", url, agent.cursor)

    async def run_agent(stop: asyncio.Event) -> None:
        thread = threading.Thread(target=agent.run, name="event-agent", daemon=True)
        thread.start()
        await stop.wait()
        agent.stopped.set()
        await asyncio.to_thread(thread.join, 5)

    await serve_app(app, sock, url, args.ready_file, run_agent)


def main() -> None:
    p = base_arg_parser("gridfs event agent")
    p.add_argument("--state", required=True, help="file holding the cursor")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
