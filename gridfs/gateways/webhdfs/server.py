"""The WebHDFS gateway process: one listening socket (127.0.0.1 by default), several workers.

Run: ``python -m gridfs.gateways.webhdfs --config grid.toml [--host 127.0.0.1] [--port 9870]
[--workers 2] [--require-secret]``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import sys

from gridfs.common.metrics import share_between_workers
from gridfs.common.service import base_arg_parser, bind_shared, run_workers, serve_app, setup_logging, write_ready_file

log = logging.getLogger("gridfs.webhdfs")


async def _serve_worker(config: str | None, sock: socket.socket, url: str, require_secret: bool) -> None:
    from gridfs.gateways.webhdfs.app import Gateway, build_app

    await serve_app(build_app(Gateway(config, require_secret)), sock, url, None)


def run(args: argparse.Namespace) -> None:
    setup_logging("webhdfs", args.log_level)
    metrics_dir = share_between_workers()
    sock, url = bind_shared(args.host, args.port, args.any_port_if_busy)

    def serve() -> None:
        asyncio.run(_serve_worker(args.config, sock, url, args.require_secret))

    def started(workers: int) -> None:
        mode = "the namespace secret or a token" if args.require_secret else "simple authentication (user.name)"
        log.info("WebHDFS gateway on %s/webhdfs/v1 with %d workers, %s", url, workers, mode)
        write_ready_file(args.ready_file, url)

    run_workers(args.workers, serve, started)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(0)


def main() -> None:
    p = base_arg_parser("gridfs WebHDFS gateway")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--any-port-if-busy", action="store_true", help="take a free port when --port is taken")
    p.add_argument("--require-secret", action="store_true",
                   help="every call must carry delegation=TOKEN (the namespace secret or a grid webhdfs token)")
    run(p.parse_args())
