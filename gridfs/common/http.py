"""HTTP plumbing shared by the internal services and their clients.

Server side (aiohttp): a middleware that requires the namespace secret and turns
:class:`GridError` into JSON error bodies. Client side: :class:`JsonClient`, a small
keep-alive JSON client over ``http.client`` with one connection per thread and host,
so it is safe to share between threads and to pickle (connections are not state).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import hmac
import http.client
import json
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from gridfs.common.errors import (
    BadRequest,
    Forbidden,
    GridError,
    ServiceUnavailable,
    Unauthorized,
    error_body,
    error_from_body,
)

SECRET_HEADER = "X-Grid-Secret"
# Paths any local process may read without the secret (health and Prometheus scrapes).
PUBLIC_PATHS = frozenset({"/health", "/metrics"})


def check_secret(expected: str, given: str | None) -> None:
    """Raise Unauthorized when the secret is missing, Forbidden when it is wrong."""
    if not given:
        raise Unauthorized(f"missing {SECRET_HEADER} header")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("wrong namespace secret")


def aiohttp_middlewares(secret: str) -> list[Callable[..., Awaitable[Any]]]:
    """Secret check plus GridError -> JSON error, for every aiohttp service."""
    from aiohttp import web

    @web.middleware
    async def errors(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        try:
            if request.path not in PUBLIC_PATHS:
                check_secret(secret, request.headers.get(SECRET_HEADER))
            return await handler(request)
        except GridError as exc:
            return web.json_response(error_body(exc), status=exc.status)
        except json.JSONDecodeError as exc:
            return web.json_response(error_body(BadRequest(f"malformed JSON body: {exc}")), status=400)

    return [errors]


class JsonClient:
    """Calls a JSON service at ``base_url``; raises the GridError the server named."""

    def __init__(self, base_url: str, secret: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise BadRequest(f"service URL must be http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.secret = secret
        self.timeout = timeout
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        query = ""
        if params:
            query = "?" + urllib.parse.urlencode(
                {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in params.items() if v is not None}
            )
        payload = json.dumps(body).encode() if body is not None else None
        headers = {SECRET_HEADER: self.secret, "Content-Type": "application/json"}
        # One retry on a stale keep-alive connection; a refused connection is final.
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, path + query, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionRefusedError, TimeoutError) as exc:
                self._drop()
                raise ServiceUnavailable(f"{self.base_url} is not answering: {exc}") from exc
            except (http.client.HTTPException, ConnectionError, OSError) as exc:
                self._drop()
                if attempt:
                    raise ServiceUnavailable(f"{self.base_url}: {exc}") from exc
        try:
            decoded = json.loads(data) if data else None
        except json.JSONDecodeError:
            decoded = None
        if resp.status >= 400:
            raise error_from_body(resp.status, decoded)
        return decoded
