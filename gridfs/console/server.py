"""``python -m gridfs.console``: the web console's HTTP service (aiohttp, like the other services).

Pages: ``GET /login`` (the token form), ``POST /login`` (form field ``token``: a session cookie and a
redirect to ``/``, or 401), ``POST /logout``, ``GET /`` (the console), ``/static/...`` (its script and
style sheet). JSON API under ``/api/``, read by the page and usable directly with the session cookie:

- ``GET /api/session``: ``{"namespace", "csrf", "interval"}``, the CSRF token changes need;
- ``GET /api/cluster``: ``{"namespace", "volumes": [...], "jobs": [...]}`` (volumes as ``grid status``'s rows
  plus ``reachable`` and ``dead``; jobs: running rebuilds, drains and scrub passes with progress);
- ``GET /api/health``: ``grid health --json``'s report;
- ``GET /api/buckets``: ``{"buckets": [{"account", "bucket", "objects", "bytes", "policy", "versioning"}]}``;
- ``GET /api/series``: ``{"interval", "window", "samples": [{"t", "bytes_in", "bytes_out", "free_bytes",
  "total_bytes", "up", "down"}]}``, the last hour;
- ``GET /api/dead``: ``{"dead": [...]}``, the event agent's dead letters;
- ``POST /api/volumes/{id}/lock`` and ``.../unlock``; ``POST /api/dead/retry`` body ``{"ids": [...]}``
  (``{}``: all). Each needs the header ``X-CSRF-Token``.

``/health`` is open; ``/metrics`` needs the namespace secret as on every service. grid.toml ``[console]``:
``sample_interval`` (s, 5), ``window`` (s, 3600), ``accounts`` (whose buckets are listed, default
``["default"]``), ``token_file``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from gridfs.cli.heal import health
from gridfs.common.config import GridConfig, find_config
from gridfs.common.errors import BadRequest, GridError, error_body
from gridfs.common.metrics import RequestMetrics, aiohttp_metrics_route, aiohttp_request_metrics, public_paths
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.console import auth, views
from gridfs.console.sampler import Sampler

STATIC = Path(str(resources.files("gridfs.console") / "static"))
# The page loads nothing from elsewhere and runs no inline script: a CSP that says so limits what an
# injected string could do, and frame-ancestors keeps the lock buttons out of other sites' frames.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.middleware
async def answers(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
    """GridError -> its JSON error body and status (as the other services answer), and the security headers."""
    try:
        response = await handler(request)
    except GridError as exc:
        response = web.json_response(error_body(exc), status=exc.status)
    except web.HTTPException as exc:  # aiohttp's own 404s and 405s get the headers too
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def build_app(cfg: GridConfig, config: Path, sessions: auth.Sessions, sampler: Sampler) -> web.Application:
    registry = CollectorRegistry()

    def page(name: str, status: int = 200, failed: bool = False) -> web.Response:
        text = (STATIC / name).read_text()
        if failed:
            text = text.replace('<p id="failed" hidden>', '<p id="failed">')
        return web.Response(text=text, status=status, content_type="text/html")

    async def login_form(request: web.Request) -> web.Response:
        if sessions.valid(request.cookies.get(auth.COOKIE)):
            return auth.redirect("/")
        return page("login.html")

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        cookie = sessions.login(str(form.get("token", "")).strip())
        if cookie is None:
            return page("login.html", status=401, failed=True)
        response = auth.redirect("/")
        auth.session_cookie(response, cookie, sessions.ttl)
        return response

    async def logout(_: web.Request) -> web.Response:
        response = auth.redirect("/login")
        response.del_cookie(auth.COOKIE, path="/")
        return response

    async def index(_: web.Request) -> web.Response:
        return page("index.html")

    async def health_check(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def session(request: web.Request) -> web.Response:
        return web.json_response({"namespace": cfg.namespace, "interval": sampler.interval,
                                  "csrf": sessions.csrf(request.cookies[auth.COOKIE])})

    async def cluster(_: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(views.cluster, cfg, sampler))

    async def grid_health(_: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(health, config, cfg))

    async def buckets(_: web.Request) -> web.Response:
        return web.json_response({"buckets": await asyncio.to_thread(views.buckets, cfg, views.accounts(cfg))})

    async def series(_: web.Request) -> web.Response:
        return web.json_response({"interval": sampler.interval, "window": sampler.window,
                                  "samples": sampler.series()})

    async def dead(_: web.Request) -> web.Response:
        return web.json_response({"dead": await asyncio.to_thread(views.dead_letters, config)})

    async def retry(request: web.Request) -> web.Response:
        body = await _json(request)
        ids = body.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(type(i) is int for i in ids)):
            raise BadRequest("'ids' must be a list of dead-letter ids (integers)")
        return web.json_response({"revived": await asyncio.to_thread(views.retry, config, ids)})

    def locker(locked: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def set_lock(request: web.Request) -> web.Response:
            volume = request.match_info["volume"]
            await asyncio.to_thread(views.set_lock, cfg, volume, locked)
            return web.json_response({"volume": volume, "locked": locked})

        return set_lock

    app = web.Application(middlewares=[aiohttp_request_metrics(RequestMetrics(registry)), answers,
                                       auth.guard(sessions)])
    app.add_routes([
        web.get("/health", health_check),
        aiohttp_metrics_route(registry, guard=(cfg.secret, public_paths(cfg))),
        web.get("/login", login_form), web.post("/login", login), web.post("/logout", logout),
        web.get("/", index),
        web.static("/static", STATIC),
        web.get("/api/session", session), web.get("/api/cluster", cluster), web.get("/api/health", grid_health),
        web.get("/api/buckets", buckets), web.get("/api/series", series), web.get("/api/dead", dead),
        web.post("/api/dead/retry", retry),
        web.post("/api/volumes/{volume}/lock", locker(True)), web.post("/api/volumes/{volume}/unlock", locker(False)),
    ])
    return app


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def serve(args: argparse.Namespace) -> None:
    log = setup_logging("console", args.log_level)
    config = find_config(args.config)
    cfg = GridConfig.load(config)
    conf = cfg.extra.get("console", {})
    token_file = auth.token_path(cfg)
    if auth.create_token(token_file):
        log.info("new console login token in %s", token_file)
    sessions = auth.Sessions(auth.read_token(token_file))
    sampler = Sampler(cfg, float(conf.get("sample_interval", 5.0)), float(conf.get("window", 3600.0)))
    sock, url = bind(args.host, args.port)
    log.info("console on %s (login token in %s)", url, token_file)
    await serve_app(build_app(cfg, config, sessions, sampler), sock, url, args.ready_file, sampler.run)


def main() -> None:
    p = base_arg_parser("gridfs web console")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
