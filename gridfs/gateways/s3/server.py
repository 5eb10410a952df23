"""The S3 gateway process: one listening socket, several worker processes.

The parent binds the socket (so port 0 picks a free port that every worker shares),
announces its URL, then forks the workers; each runs its own event loop and client
and accepts on the inherited socket. SIGTERM to the parent stops them all.

Run: ``python -m gridfs.gateways.s3 --config grid.toml [--host 127.0.0.1] [--port 9000] [--workers 2]``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import sys
import tempfile

from gridfs.common.service import base_arg_parser, bind_shared, run_workers, serve_app, setup_logging, write_ready_file

log = logging.getLogger("gridfs.s3")


async def _serve_worker(config: str | None, sock: socket.socket, url: str, domain: str) -> None:
    from gridfs.gateways.s3.app import Gateway, build_app

    gateway = Gateway(config, domain)
    await serve_app(build_app(gateway), sock, url, None)


def _shared_metrics_dir() -> str:
    """Prometheus multiprocess mode: each worker writes its counters here, any worker serves the sum."""
    path = tempfile.mkdtemp(prefix="grid-s3-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if "prometheus_client" in sys.modules:  # its value class is chosen at import: choose again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return path


def run(args: argparse.Namespace) -> None:
    setup_logging("s3", args.log_level)
    metrics_dir = _shared_metrics_dir()
    sock, url = bind_shared(args.host, args.port, args.any_port_if_busy)
    domain = getattr(args, "domain", "") or ""

    def serve() -> None:
        asyncio.run(_serve_worker(args.config, sock, url, domain))

    def started(workers: int) -> None:
        log.info("S3 gateway on %s with %d workers", url, workers)
        write_ready_file(args.ready_file, url)

    run_workers(args.workers, serve, started)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(0)


def main() -> None:
    p = base_arg_parser("gridfs S3 gateway")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--any-port-if-busy", action="store_true", help="take a free port when --port is taken")
    p.add_argument("--domain", default="", help="virtual-hosted addressing: BUCKET.DOMAIN (default: [s3] domain)")
    run(p.parse_args())
