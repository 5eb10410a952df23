"""Chunk client: PUT/GET/HEAD/DELETE/link against storage servers.

Chunk URLs name the storage server by its service id, not its address:
``rawx://SERVICE_ID/CHUNK_ID``. The client resolves the id to the server's current
address through a :class:`Resolver` (the conscience's cached service list), sends the id
in ``X-Grid-Service-Id`` so that a server now listening on a stale address answers 421
(WrongService), and on that answer or a refused connection asks the resolver again and
retries once at the fresh address. Old records hold ``http://HOST:PORT/chunk/CHUNK_ID``:
those go straight to that address, as they always did.

One keep-alive ``http.client`` connection per thread and server; bodies are sent
from memoryviews and read with ``readinto`` straight into the caller's buffer.
Connecting gives up after ``connect_timeout`` (a dead server must not hold a read
up), answers are awaited for ``timeout``.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import http.client
import json
import struct
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from gridfs.common.config import DEFAULT_CONNECT_TIMEOUT, GridConfig
from gridfs.common.errors import GridError, InvalidName, ServiceUnavailable, WrongService, error_from_body
from gridfs.common.http import SECRET_HEADER, Connection
from gridfs.common.names import SERVICE_ID_RE, check_chunk_id, check_service_id

BufferLike = bytes | bytearray | memoryview | Any
# The largest chunk a batch (``put_batch``) may carry: the storage server packs such chunks together.
MAX_BATCHED_CHUNK = 1 << 20
BATCH_MANIFEST = struct.Struct(">I")
Answer = tuple[http.client.HTTPResponse, memoryview | None]
SERVICE_ID_HEADER = "X-Grid-Service-Id"
SCHEME = "rawx://"


@dataclass(frozen=True)
class ChunkRef:
    """What a chunk URL names: the service id (``rawx://``) or, in an old record, the address."""

    service_id: str | None
    addr: str | None
    chunk_id: str

    @property
    def service(self) -> str:
        """The service id, or the address when the URL is of the old form."""
        return self.service_id or self.addr or ""


def chunk_url(service_id: str, chunk_id: str) -> str:
    return f"{SCHEME}{check_service_id(service_id)}/{check_chunk_id(chunk_id)}"


def legacy_chunk_url(addr: str, chunk_id: str) -> str:
    """The old form, ``http://HOST:PORT/chunk/ID``, that records written before service ids hold."""
    return f"http://{addr}/chunk/{check_chunk_id(chunk_id)}"


def service_chunk_url(svc: dict, chunk_id: str) -> str:
    """The URL of a new chunk on a listed service: by id, or by address for a server that sends none."""
    sid = svc.get("id") or ""
    return chunk_url(sid, chunk_id) if SERVICE_ID_RE.match(sid) else legacy_chunk_url(svc["addr"], chunk_id)


def parse_chunk_url(url: str) -> ChunkRef:
    """Split a chunk URL of either form; InvalidName for anything else."""
    if isinstance(url, str) and url.startswith(SCHEME):
        service_id, _, chunk_id = url[len(SCHEME):].partition("/")
        return ChunkRef(check_service_id(service_id), None, check_chunk_id(chunk_id))
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme != "http" or not parts.netloc or not parts.path.startswith("/chunk/"):
        raise InvalidName(f"not a chunk URL: {url!r} (rawx://SERVICE_ID/CHUNK_ID or http://HOST:PORT/chunk/ID)")
    return ChunkRef(None, parts.netloc, check_chunk_id(parts.path.removeprefix("/chunk/")))


class Resolver(Protocol):
    """Service id -> current address (the conscience's cached list, see CachedServices)."""

    def addr_of(self, service_id: str) -> str: ...

    def invalidate(self) -> None: ...


class _Unreachable(ServiceUnavailable):
    """No connection could be made: nothing was sent, so the request may go elsewhere."""


class ChunkClient:
    def __init__(
        self, secret: str, timeout: float = 60.0, *, resolver: Resolver | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.secret = secret
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.resolver = resolver
        self._local = threading.local()

    @classmethod
    def for_grid(cls, cfg: GridConfig, resolver: Resolver) -> ChunkClient:
        """The chunk client of a grid: its secret, its connect timeout, ids resolved by ``resolver``."""
        return cls(cfg.secret, resolver=resolver, connect_timeout=cfg.connect_timeout)

    def __getstate__(self) -> dict[str, Any]:
        return {"secret": self.secret, "timeout": self.timeout, "resolver": self.resolver,
                "connect_timeout": self.connect_timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["secret"], state["timeout"], resolver=state.get("resolver"),  # type: ignore[misc]
                      connect_timeout=state.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))

    def _conn(self, addr: str) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(addr)
        if conn is None:
            host, _, port = addr.rpartition(":")
            conn = conns[addr] = Connection(host.strip("[]"), int(port), self.timeout, self.connect_timeout)
        return conn

    def _drop(self, addr: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(addr, None)
        if conn is not None:
            conn.close()

    def _request(
        self, method: str, ref: ChunkRef, path: str, body: BufferLike | None = None,
        headers: dict[str, str] | None = None, into: memoryview | None = None,
    ) -> Answer:
        """Send to the server ``ref`` names: by address for an old URL, else by id through the resolver."""
        hdrs = {SECRET_HEADER: self.secret, **(headers or {})}
        view = memoryview(body).cast("B") if body is not None else None
        if view is not None:
            hdrs["Content-Length"] = str(view.nbytes)
        if ref.service_id is None:
            assert ref.addr is not None
            return self._exchange(ref.addr, method, path, hdrs, view, into)
        if self.resolver is None:
            raise ServiceUnavailable(f"cannot find {ref.service_id}: this chunk client has no resolver (conscience)")
        hdrs[SERVICE_ID_HEADER] = ref.service_id
        addr = self.resolver.addr_of(ref.service_id)
        try:
            return self._exchange(addr, method, path, hdrs, view, into)
        except (WrongService, _Unreachable):
            # The server moved, or another one now listens there. Nothing was stored or sent
            # (421 is answered before the body is read, _Unreachable before any byte left),
            # so one retry at the address the conscience knows now is safe.
            self.resolver.invalidate()
            fresh = self.resolver.addr_of(ref.service_id)
            if fresh == addr:
                raise
            return self._exchange(fresh, method, path, hdrs, view, into)

    def _exchange(
        self, addr: str, method: str, path: str, hdrs: dict[str, str], view: memoryview | None,
        into: memoryview | None,
    ) -> Answer:
        # A stale keep-alive connection fails before any response: retry once on a new one.
        # The server keeps nothing of a PUT body it did not receive whole, so a re-send is safe.
        for attempt in (0, 1):
            conn = self._conn(addr)
            fresh = conn.sock is None
            if fresh:
                try:
                    conn.connect()
                except OSError as exc:
                    self._drop(addr)
                    raise _Unreachable(f"storage server {addr} is not answering: {exc}") from exc
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.endheaders()
                if view is not None and view.nbytes:
                    conn.sock.sendall(view)
                resp = conn.getresponse()
                if resp.status >= 400:
                    data = resp.read()
                    try:
                        decoded = json.loads(data) if data else None
                    except ValueError:
                        decoded = None
                    raise error_from_body(resp.status, decoded)
                return resp, self._read_body(resp, into)
            except GridError:
                raise
            except TimeoutError as exc:
                self._drop(addr)
                raise ServiceUnavailable(f"storage server {addr} did not answer within {self.timeout:g} s") from exc
            except (http.client.HTTPException, OSError) as exc:
                self._drop(addr)
                if attempt or fresh:
                    raise ServiceUnavailable(f"storage server {addr}: {exc!r}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _read_body(resp: http.client.HTTPResponse, into: memoryview | None) -> memoryview | None:
        length = resp.getheader("Content-Length")
        if into is None:
            return memoryview(resp.read())
        n = int(length) if length is not None else into.nbytes
        if n > into.nbytes:
            raise ServiceUnavailable(f"server sent {n} bytes for a {into.nbytes}-byte buffer")
        filled = 0
        while filled < n:
            got = resp.readinto(into[filled:n])
            if not got:
                raise ServiceUnavailable(f"connection closed after {filled} of {n} bytes")
            filled += got
        resp.read()  # drain, so the connection can be reused
        return into[:n]

    def _chunk(self, method: str, url: str, suffix: str = "", **kwargs: Any) -> Answer:
        ref = parse_chunk_url(url)
        return self._request(method, ref, f"/chunk/{ref.chunk_id}{suffix}", **kwargs)

    def put(self, url: str, data: BufferLike, *, chunk_hash: str, headers: dict[str, str] | None = None) -> None:
        self._chunk("PUT", url, body=data, headers={**(headers or {}), "X-Grid-Chunk-Hash": chunk_hash})

    def put_batch(self, chunks: list[tuple[str, BufferLike, str, dict]]) -> None:
        """Store small chunks ``(url, body, xxh3_64 hex, back-reference)``, all on one server, in one
        request: the server packs them and makes them durable together, all or none."""
        refs = [parse_chunk_url(url) for url, *_ in chunks]
        if len({r.service for r in refs}) != 1:
            raise ValueError("a batch of chunks goes to one server")
        manifest = json.dumps([{"id": r.chunk_id, "size": memoryview(body).nbytes, "hash": digest, "ref": ref}
                               for r, (_url, body, digest, ref) in zip(refs, chunks, strict=True)]).encode()
        payload = bytearray(BATCH_MANIFEST.pack(len(manifest)) + manifest)
        for _url, body, _digest, _ref in chunks:
            payload += memoryview(body).cast("B")
        self._request("POST", ChunkRef(refs[0].service_id, refs[0].addr, ""), "/chunks", body=payload)

    def get(self, url: str, offset: int = 0, length: int | None = None, into: memoryview | None = None) -> memoryview:
        headers = {}
        if offset or length is not None:
            if length == 0:
                return memoryview(b"") if into is None else into[:0]
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        _, body = self._chunk("GET", url, headers=headers, into=into)
        assert body is not None
        if length is not None and body.nbytes != length:
            raise ServiceUnavailable(f"{url}: got {body.nbytes} bytes, wanted {length}")
        return body

    def head(self, url: str) -> dict:
        resp, _ = self._chunk("HEAD", url)
        return {k.lower(): v for k, v in resp.getheaders()}

    def delete(self, url: str) -> None:
        self._chunk("DELETE", url)

    def link(self, url: str, new_id: str, *, container: str = "", path: str = "") -> str:
        """Hard-link a chunk under a new id; ``container`` and ``path`` name the object the link is for.

        Returns the link's ``rawx://`` URL (the server names its id), even for an old-form source URL.
        """
        query = urllib.parse.urlencode({"to": new_id, "container": container, "path": path})
        _, body = self._chunk("POST", url, f"/link?{query}", body=b"")
        assert body is not None
        return chunk_url(json.loads(bytes(body))["service_id"], new_id)

    def list_chunks(self, service: str, older_than: float) -> list[dict]:
        """Chunks on one server (a service id, or an address) older than ``older_than`` seconds,
        with their back-references."""
        ref = ChunkRef(service, None, "") if SERVICE_ID_RE.match(service) else ChunkRef(None, service, "")
        _, body = self._request("GET", ref, f"/chunks?older_than={older_than}")
        assert body is not None
        return json.loads(bytes(body))
