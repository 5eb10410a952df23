"""HTTP plumbing shared by the internal services and their clients.

Server side (aiohttp): a middleware that requires the namespace secret and turns
:class:`GridError` into JSON error bodies. Client side: :class:`JsonClient`, a keep-alive
JSON client over a urllib3 connection pool with bounded retries; it is safe to share between
threads, to pickle and to use after ``fork`` (connections are not state).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import hmac
import json
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import urllib3
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

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
# Paths any local process may read without the secret; /metrics joins them only when grid.toml says
# ``[metrics] public = true`` (gridfs.common.metrics.public_paths): the conscience's lists every address.
PUBLIC_PATHS = frozenset({"/health"})
METRICS_PATH = "/metrics"


def _header_bytes(value: str) -> bytes:
    """A header value as bytes, for any string: aiohttp decodes invalid UTF-8 into lone surrogates
    (surrogateescape), which a plain ``encode()`` refuses; surrogatepass encodes every string, and two
    strings give the same bytes only when they are equal."""
    return value.encode("utf-8", "surrogatepass")


def check_secret(expected: str, given: str | None) -> None:
    """Raise Unauthorized when the secret is missing, Forbidden when it is wrong (whatever bytes it holds).

    Compared as bytes in constant time."""
    if not given:
        raise Unauthorized(f"missing {SECRET_HEADER} header")
    if not hmac.compare_digest(_header_bytes(expected), _header_bytes(given)):
        raise Forbidden("wrong namespace secret")


def aiohttp_middlewares(secret: str, public: frozenset[str] = PUBLIC_PATHS) -> list[Callable[..., Awaitable[Any]]]:
    """Secret check (but on the ``public`` paths) plus GridError -> JSON error, for every aiohttp service."""
    from aiohttp import web

    @web.middleware
    async def errors(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        try:
            if request.path not in public:
                check_secret(secret, request.headers.get(SECRET_HEADER))
            return await handler(request)
        except GridError as exc:
            return web.json_response(error_body(exc), status=exc.status)
        except json.JSONDecodeError as exc:
            return web.json_response(error_body(BadRequest(f"malformed JSON body: {exc}")), status=400)

    return [errors]


# Methods that mean the same when sent twice: read errors and 503s are retried for them. A POST is
# retried only when its caller marks it idempotent (it carries an op id the server deduplicates).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# How long a call keeps retrying: long enough to ride out a restart of the service it calls.
RETRY_FOR = 15.0
CONNECT_TIMEOUT = 3.0
POOL_SIZE = 32  # kept connections per service; more threads than this open and close their own


class _BoundedRetry(Retry):
    """urllib3's Retry with a deadline instead of a count: backoff sleeps end at ``deadline`` at the
    latest, and no retry starts past it (so the last attempt is made when the budget runs out)."""

    def __init__(self, *args: Any, deadline: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kwargs: Any) -> _BoundedRetry:
        kwargs.setdefault("deadline", self.deadline)
        return super().new(**kwargs)

    def get_backoff_time(self) -> float:
        return min(super().get_backoff_time(), max(0.0, self.deadline - time.monotonic()))

    def increment(self, *args: Any, **kwargs: Any) -> _BoundedRetry:
        after = super().increment(*args, **kwargs)
        if time.monotonic() >= self.deadline:
            last = after.history[-1]
            reason = last.error or ResponseError(f"HTTP {last.status}")
            raise MaxRetryError(kwargs.get("_pool"), last.url, reason)
        return after


class JsonClient:
    """Calls a JSON service at ``base_url``; raises the GridError the server named.

    Connection failures before a request is sent are retried for every call; read errors,
    timeouts and 503 answers only for idempotent methods or calls marked ``idempotent``
    (a POST that carries an op id). Retries back off and stop ``retry_for`` seconds after
    the first attempt; a transport failure that remains is ServiceUnavailable.
    """

    def __init__(self, base_url: str, secret: str, timeout: float = 30.0, retry_for: float = RETRY_FOR) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise BadRequest(f"service URL must be http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.secret = secret
        self.timeout = timeout
        self.retry_for = retry_for
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pid = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"], state["_pid"] = None, 0  # connections are not state
        return state

    def _connections(self) -> urllib3.HTTPConnectionPool:
        """The pool of this process: a forked child builds its own (never shares the parent's sockets)."""
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = urllib3.HTTPConnectionPool(
                self.host, self.port, maxsize=POOL_SIZE, block=False, retries=False,
                timeout=urllib3.Timeout(connect=min(self.timeout, CONNECT_TIMEOUT), read=self.timeout))
            self._pool, self._pid = pool, os.getpid()
        return pool

    def _retry(self, method: str, idempotent: bool) -> _BoundedRetry:
        allowed = IDEMPOTENT_METHODS | {method} if idempotent else IDEMPOTENT_METHODS
        return _BoundedRetry(total=None, redirect=False, allowed_methods=allowed, status_forcelist={503},
                             backoff_factor=0.1, backoff_max=1.0, raise_on_status=False,
                             respect_retry_after_header=False, deadline=time.monotonic() + self.retry_for)

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        *,
        idempotent: bool = False,
    ) -> Any:
        query = ""
        if params:
            query = "?" + urllib.parse.urlencode(
                {k: ("true" if v is True else "false" if v is False else v)
                 for k, v in params.items() if v is not None}
            )
        payload = json.dumps(body).encode() if body is not None else None
        headers = {SECRET_HEADER: self.secret, "Content-Type": "application/json"}
        try:
            resp = self._connections().urlopen(method, path + query, body=payload, headers=headers,
                                               retries=self._retry(method, idempotent))
        except MaxRetryError as exc:
            raise ServiceUnavailable(f"{self.base_url} is not answering: {exc.reason}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"{self.base_url}: {exc}") from exc
        data = resp.data
        try:
            decoded = json.loads(data) if data else None
        except json.JSONDecodeError:
            decoded = None
        if resp.status >= 400:
            raise error_from_body(resp.status, decoded)
        return decoded
