"""Prometheus metrics every service serves at ``GET /metrics``: the request figures they share, and who may read them.

One registry per process (a service's own figures are registered in it next to these). Every
request a service answers is counted by method, route and status, timed into a latency histogram,
and its body bytes in and out are summed, through :class:`RequestMetrics`: the aiohttp services by
:func:`aiohttp_request_metrics`, the storage server by its own HTTP/1.1 (``gridfs.storage.http1``)
calling :meth:`RequestMetrics.observe`. Routes are the route *patterns* (``/v1/meta2/{cid}/object``),
never the paths asked for, so a scraper cannot be made to keep one series per name a client tried.

``/metrics`` needs the namespace secret (``X-Grid-Secret``) like every internal route: the
conscience's metrics list every service's address. grid.toml ``[metrics] public = true`` opens it
to any local scraper (see docs/METRICS.md).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError, error_body
from gridfs.common.http import METRICS_PATH, PUBLIC_PATHS, SECRET_HEADER, check_secret

# Seconds: from a fast metadata read (under a millisecond) to a large chunk on a slow disk.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# fsync and commit times: a flush to a cache is tens of microseconds, to a rotating disk tens of milliseconds.
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNMATCHED = "unmatched"  # the route of a request no route took (404, 405)
INVALID = "INVALID"  # the method of a request whose head could not be parsed (its method is not known)
CLIENT_GONE = 499  # the status of a request whose client closed the connection before the answer


def public_paths(cfg: GridConfig) -> frozenset[str]:
    """The paths a service answers without the secret: ``/health``, and ``/metrics`` when ``[metrics] public``."""
    section = cfg.extra.get("metrics", {})
    return PUBLIC_PATHS | {METRICS_PATH} if isinstance(section, dict) and section.get("public") is True \
        else PUBLIC_PATHS


class RequestMetrics:
    """Requests by method, route and status, their latency, and body bytes in and out.

    ``registry`` None: the metrics belong to no registry, as Prometheus multiprocess mode wants (each
    worker writes its values to files, :func:`exposition` sums them)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("grid_requests", "requests answered, by method, route and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("grid_request_seconds", "time from a request's head to its answer",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.bytes_in = Counter("grid_request_body_bytes", "request body bytes received",
                                ["method", "route"], registry=registry)
        self.bytes_out = Counter("grid_response_body_bytes", "response body bytes sent",
                                 ["method", "route"], registry=registry)

    def observe(self, method: str, route: str, status: int, seconds: float, bytes_in: int = 0,
                bytes_out: int = 0) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if bytes_in:
            self.bytes_in.labels(method, route).inc(bytes_in)
        if bytes_out:
            self.bytes_out.labels(method, route).inc(bytes_out)


def exposition(registry: CollectorRegistry | None) -> tuple[bytes, str]:
    """The text a scrape answers, and its content type. ``registry`` None: the sum over the worker
    processes of a service in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    if registry is None:
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def aiohttp_metrics_route(registry: CollectorRegistry | None, blocking: bool = False,
                          guard: tuple[str, frozenset[str]] | None = None) -> web.RouteDef:
    """``GET /metrics`` of an aiohttp service (the secret is checked by ``aiohttp_middlewares``).
    ``blocking``: its collectors wait on locks or databases, so the scrape runs on a thread, not the loop.
    ``guard``: (secret, public paths) for a service whose middlewares check no secret (a gateway)."""

    async def scrape(request: web.Request) -> web.Response:
        if guard is not None and METRICS_PATH not in guard[1]:
            try:
                check_secret(guard[0], request.headers.get(SECRET_HEADER))
            except GridError as exc:
                return web.json_response(error_body(exc), status=exc.status)
        body, content_type = await asyncio.to_thread(exposition, registry) if blocking else exposition(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return web.get(METRICS_PATH, scrape)


def process_registry() -> CollectorRegistry | None:
    """Where a service's metrics go: a registry of the process, or None in multiprocess mode (the values
    live in files, summed at scrape time by :func:`exposition`)."""
    return None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else CollectorRegistry()


def share_between_workers() -> str:
    """Prometheus multiprocess mode for a service of forked workers: each writes its values to files in the
    folder made here (the caller removes it at exit), and any of them answers a scrape with the sum
    (:func:`exposition` of None). Call before forking."""
    path = tempfile.mkdtemp(prefix="grid-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()  # chosen when prometheus_client was imported: choose again
    return path


def aiohttp_route(request: web.Request) -> str:
    """The pattern of the route that took a request (``/v1/meta2/{cid}/object``)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def aiohttp_request_metrics(
    metrics: RequestMetrics, route_of: Callable[[web.Request], str] = aiohttp_route
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware that counts and times every request; put it first, so that it sees the answer the
    other middlewares made of an error. ``route_of``: how to name a request's route (a gateway with one
    catch-all route names its operation instead)."""

    @web.middleware
    async def count(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        started = time.monotonic()
        status, sent = 500, 0
        try:
            response = await handler(request)
            # A streamed answer has been sent by now (its length counted); another one has a length to send.
            status, sent = response.status, response.content_length or response.body_length
            if request.method == "HEAD":  # its Content-Length is what a GET would send
                sent = 0
            return response
        except web.HTTPException as exc:  # aiohttp's own 404 and 405
            status = exc.status
            raise
        except asyncio.CancelledError:  # the client went away before its answer (nginx's 499)
            status = CLIENT_GONE
            raise
        finally:
            metrics.observe(request.method, route_of(request), status, time.monotonic() - started,
                            request.content_length or 0, sent)

    return count
