"""The storage server's HTTP/1.1: a raw asyncio protocol that receives bodies straight into pooled buffers.

Why not aiohttp here: a chunk PUT through aiohttp's stream reader costs a fresh ``bytes`` object per
socket read and a copy of each into the buffer the volume writes from; this protocol asks the kernel to
``recv_into`` that buffer directly (``asyncio.BufferedProtocol``), and sends a GET's pooled buffer without
building a response object around it. DESIGN.md section 3 measured a raw protocol at 2.2-2.5 GB/s of PUT
ingest against aiohttp's 1.5-1.7 on one core.

What it implements, and nothing more: HTTP/1.0 and 1.1 requests with a ``Content-Length`` body (a
storage server's clients always know their chunk's size; chunked uploads are refused with 411), keep-alive,
``Expect: 100-continue``, one request at a time per connection (reading pauses while a request is
handled), flow control on the way out, idle and stalled-connection timeouts. Malformed requests get a
JSON error naming what is wrong and the connection is closed whenever the framing can no longer be
trusted. Routing is by method and path pattern (``/chunk/{id}``); a route says how large a body it
takes; every request but those to the router's public paths must carry the namespace secret. Each answer
is reported to ``on_request(request, status, body bytes sent)`` (the server's metrics).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gridfs.common.errors import (
    BadRequest,
    GridError,
    LengthRequired,
    NotFound,
    PayloadTooLarge,
    error_body,
)
from gridfs.common.http import PUBLIC_PATHS, SECRET_HEADER, check_secret
from gridfs.common.metrics import INVALID, UNMATCHED
from gridfs.common.service import install_stop_signals, write_ready_file
from gridfs.storage.store import Buffer, BufferPool

log = logging.getLogger("rawx.http")

MAX_HEAD = 32 << 10  # request line + headers
SMALL_BODY = 1 << 20  # what a route that is not a chunk upload accepts
IDLE_TIMEOUT = 75.0  # a kept-alive connection with no request this long is closed (as aiohttp does)
STALL_TIMEOUT = 60.0  # a request whose bytes stop coming this long is dropped
TOKEN_RE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
REQUEST_LINE_RE = re.compile(rb"^([A-Z]{1,16}) (\S{1,8190}) HTTP/1\.([01])\Z")


class HeadTooLarge(GridError):
    code = "RequestHeaderFieldsTooLarge"
    status = 431


class MethodNotAllowed(GridError):
    code = "MethodNotAllowed"
    status = 405


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    version: int  # 0 or 1: HTTP/1.0 or HTTP/1.1
    content_length: int = 0
    body: memoryview = field(default_factory=lambda: memoryview(b""))
    match: dict[str, str] = field(default_factory=dict)  # the path's {names}
    route: str = UNMATCHED  # the pattern of the route that took it, for metrics (never the path itself)
    started: float = field(default_factory=time.monotonic)  # when its head was read, for latency metrics

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The body as JSON, None when there is none."""
        if not self.body.nbytes:
            return None
        try:
            return json.loads(bytes(self.body))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"malformed JSON body: {exc}") from None


@dataclass(frozen=True)
class FileBody:
    """A body sent from a file with sendfile(2): ``count`` bytes of open ``fd`` from ``offset``."""

    fd: int
    offset: int
    count: int


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | memoryview = b""
    content_type: str = "application/json"
    release: Callable[[], None] | None = None  # gives the body's buffer (or file) back once it is sent
    file: FileBody | None = None  # the body, from a file instead of ``body``

    @property
    def length(self) -> int:
        return self.file.count if self.file is not None else len(self.body)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, body=json.dumps(value).encode())

    @classmethod
    def error(cls, exc: GridError) -> Response:
        """The JSON error body every gridfs service answers (``gridfs.common.errors.error_body``)."""
        return cls.json(error_body(exc), status=exc.status)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Route:
    method: str
    pattern: str  # "/chunk/{id}", "/chunk/{id}/link", "/info"
    handler: Handler
    max_body: int = SMALL_BODY
    # Checks what it can from the head alone, before the body is read (a bad chunk id, a missing hash):
    # a refused upload costs no buffer and no transfer.
    precheck: Callable[[Request], None] | None = None

    def matches(self, parts: list[str]) -> dict[str, str] | None:
        want = self.pattern.strip("/").split("/")
        if len(want) != len(parts):
            return None
        found = {}
        for w, p in zip(want, parts, strict=True):
            if w.startswith("{") and w.endswith("}"):
                found[w[1:-1]] = p
            elif w != p:
                return None
        return found


class Router:
    def __init__(self, secret: str, routes: list[Route], public: frozenset[str] = PUBLIC_PATHS) -> None:
        self.secret = secret
        self.routes = routes
        self.public = public  # paths answered without the secret

    def resolve(self, req: Request) -> Route:
        """The route for a request (its path names filled in), or the error to answer: 404, 405, 401/403."""
        parts = req.path.strip("/").split("/")
        allowed = []
        for route in self.routes:
            found = route.matches(parts)
            if found is None:
                continue
            req.route = route.pattern  # a refused request counts under the route it asked for too
            if route.method == req.method:
                if req.path not in self.public:
                    check_secret(self.secret, req.header(SECRET_HEADER))
                req.match = found
                return route
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(f"{req.method} is not allowed on {req.path} (allowed: {', '.join(allowed)})")
        raise NotFound(f"no such resource {req.path}")


def parse_head(raw: bytes) -> Request:
    """Request line and headers (without the final blank line), validated."""
    lines = raw.split(b"\r\n")
    m = REQUEST_LINE_RE.match(lines[0])
    if m is None:
        raise BadRequest(f"malformed request line {lines[0][:100]!r}")
    method, target, minor = m.group(1).decode(), m.group(2).decode("latin-1"), int(m.group(3))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN_RE.match(name):  # also refuses obsolete line folding (a leading space)
            raise BadRequest(f"malformed header line {line[:100]!r}")
        key = name.decode().lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key == "content-length" and headers[key] != text:
                raise BadRequest("conflicting Content-Length headers")
            text = f"{headers[key]}, {text}" if key != "content-length" else text
        headers[key] = text
    if not target.startswith("/"):
        raise BadRequest(f"request target must be a path, got {target[:100]!r}")
    path, _, qs = target.partition("?")
    try:
        query = dict(urllib.parse.parse_qsl(qs, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise BadRequest(f"malformed query string: {exc}") from None
    req = Request(method, urllib.parse.unquote(path), query, headers, minor)
    if "transfer-encoding" in headers:
        # Chunked uploads are not taken (and both framings at once is how requests get smuggled).
        raise LengthRequired("send a Content-Length, not Transfer-Encoding")
    cl = headers.get("content-length")
    if cl is not None:
        if not cl.isdigit() or len(cl) > 15:
            raise BadRequest(f"malformed Content-Length {cl[:20]!r}")
        req.content_length = int(cl)
    return req


def _keep_alive(req: Request) -> bool:
    conn = req.header("connection").lower()
    return "keep-alive" in conn if req.version == 0 else "close" not in conn


class HttpProtocol(asyncio.BufferedProtocol):
    """One connection: head -> (body into a pooled buffer) -> handler -> response, again while kept alive."""

    def __init__(self, router: Router, buffers: BufferPool, on_request: Callable[[Request, int, int], None]) -> None:
        self.router, self.buffers, self.on_request = router, buffers, on_request
        self.transport: asyncio.Transport | None = None
        self.head = bytearray(MAX_HEAD)
        self.head_len = 0
        self.scanned = 0  # head bytes already searched for the blank line
        self.req: Request | None = None
        self.route: Route | None = None
        self.body: Buffer | None = None  # pooled
        self.body_view = memoryview(b"")
        self.body_pos = 0
        self.discard = 0  # body bytes of a refused request still to skip before the next request
        self.scratch = bytearray(1 << 16)
        self.busy = False  # a handler is running: reading is paused
        self.closing = False
        self.eof = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.last_active = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.writable.set()
        if self.timer is not None:
            self.timer.cancel()
        if self.body is not None and not self.busy:
            # A body cut short: the request is dropped before anything touched the disk.
            self.buffers.release(self.body)
            self.body = None

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def _arm_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(10.0, self._check_timeout)

    def _check_timeout(self) -> None:
        if self.closing or self.transport is None:
            return
        quiet = time.monotonic() - self.last_active
        mid_request = self.head_len > 0 or self.body is not None or self.discard > 0
        if not self.busy and quiet > (STALL_TIMEOUT if mid_request else IDLE_TIMEOUT):
            self._close()
            return
        self._arm_timer()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # -- reading ------------------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.body is not None:
            return self.body_view[self.body_pos :]
        if self.discard:
            return memoryview(self.scratch)[: min(len(self.scratch), self.discard)]
        return memoryview(self.head)[self.head_len :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        if self.body is not None:
            self.body_pos += nbytes
            if self.body_pos == self.body_view.nbytes:
                self._dispatch()
            return
        if self.discard:
            self.discard -= nbytes
            return
        self.head_len += nbytes
        self._next_request()

    def eof_received(self) -> bool:
        # The client has sent all it will: a request being handled still gets its answer, then the
        # connection closes; a request mid-body is dropped (connection_lost).
        self.eof = True
        return self.busy

    def _next_request(self) -> None:
        """Parse a complete head waiting in ``self.head``, if there is one, and start its request."""
        if self.busy or self.closing:
            return
        end = self.head.find(b"\r\n\r\n", max(0, self.scanned - 3), self.head_len)
        if end < 0:
            self.scanned = self.head_len
            if self.head_len == len(self.head):
                self._refuse_unparsed(HeadTooLarge(f"request head over {MAX_HEAD} bytes"))
            return
        raw = bytes(self.head[:end])
        rest = self.head_len - (end + 4)
        self.head[:rest] = self.head[end + 4 : self.head_len]  # bytes of the body or of the next request
        self.head_len, self.scanned = rest, 0
        try:
            req = parse_head(raw)
        except GridError as exc:
            self._refuse_unparsed(exc)
            return
        route = None
        try:
            route = self.router.resolve(req)
            if req.content_length > route.max_body:
                raise PayloadTooLarge(f"body of {req.content_length} bytes is over this route's "
                                      f"{route.max_body}-byte limit")
            if route.precheck is not None:
                route.precheck(req)
        except GridError as exc:
            self._skip_body(req, exc, route.max_body if route is not None else 4 * SMALL_BODY)
            return
        self.req, self.route = req, route
        if req.header("expect").lower() == "100-continue" and req.content_length:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.body = self.buffers.acquire(max(1, req.content_length))
        self.body_view = memoryview(self.body)[: req.content_length]
        self.body_pos = 0
        self._take_from_head()

    def _take_from_head(self) -> None:
        """Move body bytes that arrived with the head into the body buffer."""
        n = min(self.head_len, self.body_view.nbytes - self.body_pos)
        if n:
            self.body_view[self.body_pos : self.body_pos + n] = self.head[:n]
            self.head[: self.head_len - n] = self.head[n : self.head_len]
            self.head_len -= n
            self.body_pos += n
        if self.body_pos == self.body_view.nbytes:
            self._dispatch()

    def _skip_body(self, req: Request, exc: GridError, limit: int) -> None:
        """Answer a refused request and skip its body, so that the client, still sending it, reads the
        answer (closing at once would show it a broken pipe instead) and the connection stays usable. A
        body over ``limit``, or one the client waits to be invited to send (100-continue), is not
        waited for: the answer goes out and the connection closes."""
        if req.content_length > limit or req.header("expect").lower() == "100-continue":
            self.on_request(req, exc.status, 0)
            self._refuse(exc, close=True)
            return
        skip = min(self.head_len, req.content_length)
        self.head[: self.head_len - skip] = self.head[skip : self.head_len]
        self.head_len -= skip
        self.discard = req.content_length - skip
        self._respond_now(req, exc)

    def _refuse_unparsed(self, exc: GridError) -> None:
        """Answer a head that could not be parsed and close: the framing cannot be trusted any more. It is
        counted under the method INVALID (its own is not known, or not to be trusted)."""
        self.on_request(Request(INVALID, "", {}, {}, 1), exc.status, 0)
        self._refuse(exc, close=True)

    def _refuse(self, exc: GridError, close: bool) -> None:
        self._write(Response.error(exc), close=close, method="")
        if close:
            self._close()

    def _respond_now(self, req: Request, exc: GridError) -> None:
        keep = _keep_alive(req)
        self.on_request(req, exc.status, 0)
        self._write(Response.error(exc), close=not keep, method=req.method)
        if not keep:
            self._close()
        elif not self.discard:
            self._next_request()

    # -- handling -----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        assert self.transport is not None and self.req is not None
        self.busy = True
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._handle(self.req))

    async def _handle(self, req: Request) -> None:
        assert self.route is not None and self.body is not None
        body, req.body = self.body, self.body_view
        try:
            try:
                resp = await self.route.handler(req)
            except GridError as exc:
                resp = Response.error(exc)
            except Exception as exc:  # a bug: answer 500 rather than hang the client
                log.exception("%s %s failed", req.method, req.path)
                resp = Response.error(GridError(f"{type(exc).__name__}: {exc}"))
        finally:
            self.buffers.release(body)
            self.body, self.body_view, self.req = None, memoryview(b""), None
        self.on_request(req, resp.status, 0 if req.method == "HEAD" else resp.length)
        if self.closing:
            if resp.release:
                resp.release()
            return
        keep = _keep_alive(req)
        if resp.file is not None and req.method != "HEAD":
            await self._send_file(resp, close=not keep)
        else:
            self._write(resp, close=not keep, method=req.method)
        await self.writable.wait()  # flow control: nothing more is read until the answer has left
        self.busy = False
        if not keep or self.eof:
            self._close()
            return
        if not self.closing:
            assert self.transport is not None
            self.transport.resume_reading()
            self._next_request()

    @staticmethod
    def _head(resp: Response, close: bool) -> bytes:
        try:
            reason = http.HTTPStatus(resp.status).phrase
        except ValueError:
            reason = "Unknown"
        n = resp.length
        lines = [f"HTTP/1.1 {resp.status} {reason}"]
        if resp.status not in (204, 304):
            lines.append(f"Content-Length: {n}")
        if n:
            lines.append(f"Content-Type: {resp.content_type}")
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_file(self, resp: Response, close: bool) -> None:
        """The head, then the body straight from the page cache (sendfile(2)): no copy of ours, and
        none into the socket either (the socket takes references to the cached pages)."""
        assert self.transport is not None and resp.file is not None
        try:
            self.transport.write(self._head(resp, close))
            with os.fdopen(resp.file.fd, "rb", closefd=False) as f:
                await asyncio.get_running_loop().sendfile(self.transport, f, resp.file.offset, resp.file.count)
        except (ConnectionError, OSError, RuntimeError) as exc:  # the client left mid-body: so must we
            log.debug("sendfile cut short: %s", exc)
            self._close()
        finally:
            if resp.release:
                resp.release()

    def _write(self, resp: Response, close: bool, method: str) -> None:
        assert self.transport is not None
        n = resp.length
        head = self._head(resp, close)
        try:
            if method == "HEAD" or not n:
                self.transport.write(head)
            elif n <= 64 << 10:
                self.transport.write(head + bytes(resp.body))
            else:
                self.transport.write(head)
                self.transport.write(resp.body)  # the transport keeps what the socket did not take yet
        finally:
            if resp.release:
                resp.release()


async def serve_http(
    router: Router,
    sock: socket.socket,
    url: str,
    ready_file: str | None,
    buffers: BufferPool,
    on_request: Callable[[Request, int, int], None],
    background: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> None:
    """Serve ``router`` on the bound ``sock`` until SIGTERM/SIGINT, as ``serve_app`` does for aiohttp
    services: announce ``url`` once listening; ``background(stop)`` runs beside and returns once stopped."""
    loop = asyncio.get_running_loop()
    sock.listen(1024)
    sock.setblocking(False)
    server = await loop.create_server(lambda: HttpProtocol(router, buffers, on_request), sock=sock)
    stop = asyncio.Event()
    install_stop_signals(loop, stop)
    task = asyncio.create_task(background(stop)) if background else None
    write_ready_file(ready_file, url)
    try:
        await stop.wait()
        if task is not None:
            await task
    finally:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)
