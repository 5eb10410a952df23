"""Chunk client: PUT/GET/HEAD/DELETE/link against storage servers.

One keep-alive ``http.client`` connection per thread and server; bodies are sent
from memoryviews and read with ``readinto`` straight into the caller's buffer.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from typing import Any

from gridfs.common.errors import GridError, ServiceUnavailable, error_from_body
from gridfs.common.http import SECRET_HEADER

BufferLike = bytes | bytearray | memoryview | Any


def chunk_url(addr: str, chunk_id: str) -> str:
    return f"http://{addr}/chunk/{chunk_id}"


def _split(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")


class ChunkClient:
    def __init__(self, secret: str, timeout: float = 60.0) -> None:
        self.secret = secret
        self.timeout = timeout
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"secret": self.secret, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["secret"], state["timeout"])  # type: ignore[misc]

    def _conn(self, netloc: str) -> http.client.HTTPConnection:
        conns = self._local.__dict__.setdefault("conns", {})
        conn = conns.get(netloc)
        if conn is None:
            host, _, port = netloc.rpartition(":")
            conn = conns[netloc] = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return conn

    def _drop(self, netloc: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(netloc, None)
        if conn is not None:
            conn.close()

    def _request(
        self, method: str, url: str, body: BufferLike | None = None, headers: dict[str, str] | None = None,
        into: memoryview | None = None,
    ) -> tuple[http.client.HTTPResponse, memoryview | None]:
        netloc, path = _split(url)
        hdrs = {SECRET_HEADER: self.secret, **(headers or {})}
        view = memoryview(body).cast("B") if body is not None else None
        if view is not None:
            hdrs["Content-Length"] = str(view.nbytes)
        # A stale keep-alive connection fails before any response: retry once on a new one.
        # The server keeps nothing of a PUT body it did not receive whole, so a re-send is safe.
        for attempt in (0, 1):
            conn = self._conn(netloc)
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
                got = self._read_body(resp, into)
                return resp, got
            except GridError:
                raise
            except (ConnectionRefusedError, TimeoutError) as exc:
                self._drop(netloc)
                raise ServiceUnavailable(f"storage server {netloc} is not answering: {exc}") from exc
            except (http.client.HTTPException, OSError) as exc:
                self._drop(netloc)
                if attempt:
                    raise ServiceUnavailable(f"storage server {netloc}: {exc!r}") from exc
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

    def put(self, url: str, data: BufferLike, *, chunk_hash: str, headers: dict[str, str] | None = None) -> None:
        self._request("PUT", url, data, {**(headers or {}), "X-Grid-Chunk-Hash": chunk_hash})

    def get(self, url: str, offset: int = 0, length: int | None = None, into: memoryview | None = None) -> memoryview:
        headers = {}
        if offset or length is not None:
            if length == 0:
                return memoryview(b"") if into is None else into[:0]
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        _, body = self._request("GET", url, headers=headers, into=into)
        assert body is not None
        if length is not None and body.nbytes != length:
            raise ServiceUnavailable(f"{url}: got {body.nbytes} bytes, wanted {length}")
        return body

    def head(self, url: str) -> dict:
        resp, _ = self._request("HEAD", url)
        return {k.lower(): v for k, v in resp.getheaders()}

    def delete(self, url: str) -> None:
        self._request("DELETE", url)

    def link(self, url: str, new_id: str, *, container: str = "", path: str = "") -> str:
        """Hard-link a chunk under a new id; ``container`` and ``path`` name the object the link is for."""
        netloc, _ = _split(url)
        query = urllib.parse.urlencode({"to": new_id, "container": container, "path": path})
        self._request("POST", f"{url}/link?{query}", b"")
        return chunk_url(netloc, new_id)

    def list_chunks(self, addr: str, older_than: float) -> list[dict]:
        """Chunks on one server older than ``older_than`` seconds, with their back-references."""
        _, body = self._request("GET", f"http://{addr}/chunks?older_than={older_than}")
        assert body is not None
        return json.loads(bytes(body))
