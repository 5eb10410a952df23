"""``python -m gridfs.heal --config grid.toml --state DIR``: the rebuilder service.

It runs :class:`gridfs.heal.service.Rebuilder` in a thread and serves ``/health`` and ``/metrics`` (the
running job's progress, jobs finished); it does not register with the conscience (nothing calls it: its
jobs show in the reverse index).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.common.config import GridConfig
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics, public_paths
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.heal.service import Rebuilder
from gridfs.rdir.metrics import job_families


class RebuilderCollector(Collector):
    """The job in progress (``grid_heal_job_*``, as the reverse index serves every volume's) and the jobs
    finished since start, by kind and final state."""

    def __init__(self, rebuilder: Rebuilder) -> None:
        self.rebuilder = rebuilder

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        running = self.rebuilder.running_job()
        yield from job_families("grid_heal_job", [running] if running else [])
        finished = CounterMetricFamily("grid_heal_jobs_finished", "rebuilds run to their end since start",
                                       labels=["kind", "state"])
        for (kind, state), n in sorted(self.rebuilder.finished.items()):
            finished.add_metric([kind, state], n)
        yield finished


async def serve(args: argparse.Namespace) -> None:
    cfg = GridConfig.load(args.config)
    log = setup_logging("heal", args.log_level)
    rebuilder = Rebuilder(cfg, args.state)
    sock, url = bind(args.host, args.port)
    log.info("rebuilder on %s, state in %s", url, args.state)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "job": rebuilder.current})

    async def run(stop: asyncio.Event) -> None:
        thread = threading.Thread(target=rebuilder.run, name="rebuilder", daemon=True)
        thread.start()
        await stop.wait()
        rebuilder.shutdown()  # a job in progress stops between objects and stays resumable
        await asyncio.to_thread(thread.join, 10)

    metrics = CollectorRegistry()
    metrics.register(RebuilderCollector(rebuilder))
    app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(metrics)),
                                       *aiohttp_middlewares(cfg.secret, public_paths(cfg))])
    app.add_routes([web.get("/health", health), aiohttp_metrics_route(metrics)])
    await serve_app(app, sock, url, args.ready_file, run)


def main() -> None:
    p = base_arg_parser("gridfs rebuilder: rebuilds storage volumes silent longer than [heal] rebuild_grace")
    p.add_argument("--state", required=True, help="folder for the rebuilder's state (the last job's record)")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
