"""``python -m gridfs.functions --config grid.toml --state DIR --location site.rack.host.fn``: a function runner.

One per node. It registers with the conscience as type ``functions`` (its id kept in
DIR/service.id) under its node's location, which is how the event agent sends it the
events of objects whose data is on this node, and serves:

- ``POST /v1/call`` body ``{"entry": signed spec, "event": {...}}``: runs the call in a
  subprocess under the spec's time and memory limits and answers its outcome
  ``{"ok", "error", "stderr", "seconds"}`` (200 either way: a failed call is an answer);
  an entry not signed with the namespace secret is refused (400) before anything runs;
- ``/health``.

At most ``--workers`` calls (default 2) run at once; the others wait their turn.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.metrics import (
    RequestMetrics,
    aiohttp_metrics_route,
    aiohttp_request_metrics,
    public_paths,
)
from gridfs.common.service import (
    base_arg_parser,
    bind,
    load_or_create_service_id,
    send_heartbeats,
    serve_app,
    setup_logging,
)
from gridfs.functions.dispatch import RUNNER_TYPE
from gridfs.functions.registry import unseal
from gridfs.functions.runner import CallResult, run_call


def outcome_of(result: CallResult) -> str:
    """A call's outcome as a label of few values: ok, timeout, memory, crashed or error."""
    if result.ok:
        return "ok"
    for prefix, outcome in (("Timeout:", "timeout"), ("Crashed:", "crashed")):
        if result.error.startswith(prefix):
            return outcome
    return "memory" if "memory limit" in result.error else "error"


CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # a call is an interpreter start or more


def build_app(cfg: GridConfig, config_path: str, workers: int, running: list[int]) -> web.Application:
    slots = asyncio.Semaphore(workers)
    registry = CollectorRegistry()
    calls = Counter("grid_function_calls", "user function calls run on this node, by function and outcome",
                    ["function", "outcome"], registry=registry)
    seconds = Histogram("grid_function_call_seconds", "a call's time, interpreter start included, by function",
                        ["function"], buckets=CALL_BUCKETS, registry=registry)
    Gauge("grid_function_calls_running", "calls running now", registry=registry).set_function(lambda: running[0])

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "running": running[0]})

    async def call(r: web.Request) -> web.Response:
        body = await r.json()
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise BadRequest("expected {'entry': ..., 'event': {...}}")
        spec = unseal(body.get("entry"), cfg.secret)  # the security check: nothing unsigned runs
        async with slots:
            running[0] += 1
            try:
                result = await asyncio.to_thread(run_call, spec, body["event"], config_path)
            finally:
                running[0] -= 1
        calls.labels(spec.name, outcome_of(result)).inc()
        seconds.labels(spec.name).observe(result.seconds)
        return web.json_response(result.to_dict())

    app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(registry)),
                                       *aiohttp_middlewares(cfg.secret, public_paths(cfg))])
    app.add_routes([web.get("/health", health), web.post("/v1/call", call), aiohttp_metrics_route(registry)])
    return app


async def serve(args: argparse.Namespace) -> None:
    log = setup_logging("functions", args.log_level)
    cfg = GridConfig.load(args.config)
    service_id = load_or_create_service_id(Path(args.state), RUNNER_TYPE)
    sock, url = bind(args.host, args.port)
    addr = url.removeprefix("http://")
    running = [0]
    log.info("function runner %s at %s (%s), %d workers", service_id, url, args.location, args.workers)

    def heartbeat() -> dict:
        return {"type": RUNNER_TYPE, "id": service_id, "addr": addr, "location": args.location,
                "tags": {}, "stats": {"inflight": running[0]}}

    await serve_app(build_app(cfg, str(Path(args.config).resolve()), args.workers, running), sock, url,
                    args.ready_file, lambda stop: send_heartbeats(cfg, heartbeat, stop))


def main() -> None:
    p = base_arg_parser("gridfs function runner (one per node)")
    p.add_argument("--state", required=True, help="folder for the runner's service id")
    p.add_argument("--location", required=True,
                   help="site.rack.host.NAME: host is this node's, as in its storage servers' locations")
    p.add_argument("--workers", type=int, default=2, help="calls run at once (default 2)")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
