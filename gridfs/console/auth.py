"""Who may use the console: a login token, signed session cookies and a CSRF check on every change.

The token is a random string in a file of its own beside grid.toml (mode 0600; ``[console] token_file``
names another place), made by ``grid up`` and printed by it. It is not the namespace secret: a browser
holding it can look at the grid and lock volumes, not read or write chunks.

The login page trades the token for a session cookie: ``ISSUED.HMAC(key, "session ISSUED")``, HttpOnly
(page scripts cannot read it) and SameSite=Strict (no other site's page makes the browser send it). The
key is derived from the token, so sessions survive a console restart and a new token ends them all; the
cookie itself gives nothing away about the token. State-changing requests also need the header
``X-CSRF-Token``: an HMAC of the session, which the page gets from ``GET /api/session``; a page of another
origin can neither read that answer (no CORS) nor guess it. A cookie is not marked Secure: the console
listens on plain HTTP on 127.0.0.1.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gridfs.common.config import ConfigError, GridConfig, create_secret_file

COOKIE = "grid_console"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = 12 * 3600.0  # seconds a login lasts: a working day, then the token is asked again
TOKEN_NAME = "console.token"
SETTING = "token_file"
# Paths answered without a session: the login form, its style sheet, and /health. /metrics has its own
# guard (the namespace secret, as on every service).
OPEN_PATHS = frozenset({"/login", "/static/console.css", "/static/favicon.svg", "/health", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_path(cfg: GridConfig) -> Path:
    """``[console] token_file``, else ``console.token`` beside grid.toml."""
    named = cfg.extra.get("console", {}).get(SETTING, "")
    if named:
        return Path(named)
    return (cfg.path.parent if cfg.path else Path.cwd()) / TOKEN_NAME


def create_token(path: Path) -> bool:
    """A new random login token at ``path`` (0600) unless one is there; True when this call made it."""
    return create_secret_file(path, secrets.token_urlsafe(32))


def read_token(path: Path) -> str:
    try:
        mode, text = path.stat().st_mode, path.read_text().strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"no console token at {path} (grid up makes one)") from exc
    if mode & 0o077:
        raise ConfigError(f"the console token {path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    if not text:
        raise ConfigError(f"the console token {path} is empty")
    return text


class Sessions:
    """Logins, session cookies and CSRF tokens, all derived from the login token (no state kept)."""

    def __init__(self, token: str, ttl: float = SESSION_TTL) -> None:
        self._token = token.encode()
        self._key = hashlib.sha256(b"gridfs console sessions\0" + self._token).digest()
        self.ttl = ttl

    def _mac(self, what: str) -> str:
        return hmac.new(self._key, what.encode(), hashlib.sha256).hexdigest()

    def login(self, given: str) -> str | None:
        """A new session cookie value for the right token, None for any other (compared in constant time)."""
        if not hmac.compare_digest(self._token, given.encode("utf-8", "surrogatepass")):
            return None
        issued = str(int(time.time()))
        return f"{issued}.{self._mac('session ' + issued)}"

    def valid(self, cookie: str | None) -> bool:
        issued, _, mac = (cookie or "").partition(".")
        if not issued.isdigit() or not hmac.compare_digest(mac.encode(), self._mac("session " + issued).encode()):
            return False
        return 0 <= time.time() - int(issued) < self.ttl

    def csrf(self, cookie: str) -> str:
        return self._mac("csrf " + cookie)

    def csrf_ok(self, cookie: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(cookie).encode(), (given or "").encode())


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    """The API answers JSON; a page request without a session goes to the login form."""
    if request.path.startswith("/api/") or request.method not in SAFE_METHODS:
        return web.json_response({"error": {"code": status, "message": message}}, status=status)
    return redirect("/login")


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` as a plain response (one that takes a cookie; aiohttp deprecates returning its
    HTTPException classes)."""
    return web.Response(status=303, headers={"Location": location})


def guard(sessions: Sessions) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware: a valid session for everything but :data:`OPEN_PATHS`, and for changes a CSRF token
    and, when the browser names one, this console's own origin."""

    @web.middleware
    async def check(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        cookie = request.cookies.get(COOKIE)
        if not sessions.valid(cookie):
            return refuse(request, 401, "log in first (the token grid up printed)")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return refuse(request, 403, f"request from another origin ({origin})")
            if not sessions.csrf_ok(cookie or "", request.headers.get(CSRF_HEADER)):
                return refuse(request, 403, f"missing or wrong {CSRF_HEADER} header")
        return await handler(request)

    return check


def session_cookie(response: web.StreamResponse, value: str, ttl: float) -> None:
    response.set_cookie(COOKIE, value, max_age=int(ttl), path="/", httponly=True, samesite="Strict")
