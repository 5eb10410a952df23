"""The S3 gateway process: one listening socket, several worker processes.

The parent binds the socket (so port 0 picks a free port that every worker shares),
announces its URL, then forks the workers; each runs its own event loop and client
and accepts on the inherited socket. SIGTERM to the parent stops them all.

Each connection is aiohttp's HTTP/1.1 handler with two changes: what aiohttp answers by
itself (a request it cannot parse) is an S3 XML error, not plain text; and a connection
that has not sent a whole request head within ``--header-timeout`` seconds (idle
keep-alive time included) is closed, so a client that stops mid-headers no longer holds
it forever. A body that stalls is the app's to time out (``--body-timeout``). A stopping
worker gives requests in flight ``SHUTDOWN_GRACE`` seconds, not aiohttp's 60.

Run: ``python -m gridfs.gateways.s3 --config grid.toml [--host 127.0.0.1] [--port 9000] [--workers 2]
[--header-timeout 60] [--body-timeout 60]`` (the timeouts default to ``header_timeout`` and
``body_timeout`` under ``[s3]`` in grid.toml, else 60 seconds).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from gridfs.common.service import (
    base_arg_parser,
    bind_shared,
    install_stop_signals,
    run_workers,
    setup_logging,
    write_ready_file,
)
from gridfs.gateways.s3.errors import S3Error

log = logging.getLogger("gridfs.s3")
# Seconds a stopping worker gives requests in flight, twice over (aiohttp waits for the handler, then for the
# connection): well inside the 10 s that grid down allows before SIGKILL, so that a client stalled mid-body
# cannot keep a worker alive until it is killed (and the metrics folder left behind).
SHUTDOWN_GRACE = 3.0


def parser_error(status: int, exc: BaseException | None) -> S3Error:
    """What aiohttp could not parse (or, 500, a handler that raised), as the S3 error a client expects."""
    if status >= 500:
        return S3Error("InternalError", "We encountered an internal error. Please try again.")
    first = next((line for line in str(getattr(exc, "message", exc) or "").splitlines() if line.strip()), "")
    text = "".join(c if c.isprintable() and c.isascii() else "?" for c in first.strip().rstrip(":")[:200])
    if isinstance(exc, http_exceptions.InvalidURLError):
        return S3Error("InvalidURI", "Couldn't parse the specified URI.")
    if isinstance(exc, http_exceptions.LineTooLong) or "too many headers" in text.lower():
        return S3Error("RequestHeaderSectionTooLarge", "Your request header section exceeds the maximum allowed "
                       f"size: {text}")
    return S3Error("InvalidRequest", f"The request could not be parsed as HTTP/1.1: {text}")


class S3Protocol(RequestHandler):
    """aiohttp's connection handler, answering S3 XML errors where aiohttp answers plain text."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        from gridfs.gateways.s3.app import error_response

        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.debug("unparsable request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:  # as aiohttp: an answer has begun, the connection is lost
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = error_response(parser_error(status, exc), "", secrets.token_hex(8).upper(), request.method)
        response.force_close()
        return response


async def _serve_worker(config: str | None, sock: socket.socket, url: str, domain: str,
                        timeouts: tuple[float | None, float | None] = (None, None)) -> None:
    from gridfs.gateways.s3.app import build_app
    from gridfs.gateways.s3.context import Gateway

    gateway = Gateway(config, domain, *timeouts)
    runner = web.AppRunner(build_app(gateway), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    loop = asyncio.get_running_loop()
    manager = runner.server
    assert manager is not None

    def connection() -> S3Protocol:
        # aiohttp's keep-alive timer closes a connection whose next request head has not fully arrived
        # in time, from the connection's start or the previous answer's end: the header timeout.
        return S3Protocol(manager, loop=loop, access_log=None, keepalive_timeout=gateway.header_timeout)

    server = await loop.create_server(connection, sock=sock)
    stop = asyncio.Event()
    install_stop_signals(loop, stop)
    await stop.wait()
    server.close()
    await runner.cleanup()


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
    timeouts = (getattr(args, "header_timeout", None), getattr(args, "body_timeout", None))

    def serve() -> None:
        asyncio.run(_serve_worker(args.config, sock, url, domain, timeouts))

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
    p.add_argument("--header-timeout", type=float, default=None, metavar="SECONDS",
                   help="close a connection that has not sent a whole request head in this time, idle keep-alive "
                        "time included (default: [s3] header_timeout, else 60)")
    p.add_argument("--body-timeout", type=float, default=None, metavar="SECONDS",
                   help="fail a request whose body sends nothing for this long, RequestTimeout (default: [s3] "
                        "body_timeout, else 60)")
    run(p.parse_args())
