"""The storage server's own HTTP/1.1 (gridfs/storage/http1.py) against hostile and unusual clients, over raw
sockets to a real storage server process: what a well-behaved HTTP library would never send."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import xxhash

from gridfs.common.config import GridConfig
from gridfs.common.service import SpawnedService, spawn_service

ID = "B" * 64


@pytest.fixture
def rawx(grid_config: GridConfig, tmp_path: Path) -> Iterator[tuple[SpawnedService, Path]]:
    vol = tmp_path / "vol"
    svc = spawn_service("gridfs.storage", ["--config", str(grid_config.path), "--volume", str(vol),
                                           "--location", "s.r.h.v"], tmp_path / "run", "rawx")
    yield svc, vol
    svc.stop()


class Conn:
    """A raw client connection that keeps the bytes it read past one response (pipelined answers)."""

    def __init__(self, svc: SpawnedService) -> None:
        host, port = svc.addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.pending = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        if self.pending:
            got, self.pending = self.pending[:n], self.pending[n:]
            return got
        return self.sock.recv(n)

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        """One response: status, headers (lower-case names), body (by Content-Length)."""
        data, self.pending = self.pending, b""
        while b"\r\n\r\n" not in data:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError(f"closed after {data!r}")
            data += got
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            got = self.sock.recv(65536)
            if not got:
                break
            rest += got
        self.pending = rest[n:]
        return status, headers, rest[:n]

    def closed(self) -> bool:
        """The server closed the connection (after sending everything already read)."""
        if self.pending:
            return False
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def put_head(secret: str, body: bytes, chunk_id: str = ID, extra: str = "") -> bytes:
    return (f"PUT /chunk/{chunk_id} HTTP/1.1\r\nHost: x\r\nX-Grid-Secret: {secret}\r\n"
            f"X-Grid-Chunk-Hash: {xxhash.xxh3_64_hexdigest(body)}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode()


def test_keep_alive_and_pipelined_requests_on_one_connection(rawx: tuple[SpawnedService, Path],
                                                             grid_config: GridConfig) -> None:
    svc, _ = rawx
    body = os.urandom(300_000)
    with Conn(svc) as s:
        # A PUT, then a GET and a HEAD sent at once behind it (pipelined): answered in order, same connection.
        s.sendall(put_head(grid_config.secret, body) + body)
        status, _, answer = s.read_response()
        assert status == 201 and b'"size": 300000' in answer
        get = f"GET /chunk/{ID} HTTP/1.1\r\nX-Grid-Secret: {grid_config.secret}\r\n\r\n".encode()
        head = f"HEAD /chunk/{ID} HTTP/1.1\r\nX-Grid-Secret: {grid_config.secret}\r\n\r\n".encode()
        s.sendall(get + head)
        status, headers, got = s.read_response()
        assert status == 200 and got == body and headers["x-grid-chunk-size"] == "300000"
        status, headers, got = s.read_response()
        assert status == 200 and got == b"" and headers["x-grid-chunk-hash"] == xxhash.xxh3_64_hexdigest(body)
        # HTTP/1.0 without keep-alive: answered, then closed.
        s.sendall(f"GET /chunk/{ID} HTTP/1.0\r\nX-Grid-Secret: {grid_config.secret}\r\nRange: bytes=0-9\r\n\r\n"
                  .encode())
        status, headers, got = s.read_response()
        assert status == 206 and got == body[:10] and headers["content-range"] == "bytes 0-9/300000"
        assert s.closed()


def test_refused_upload_is_answered_while_the_client_still_sends_its_body(
        rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    """A wrong secret, a stale service id or a bad hash header on an 8 MiB PUT: the client (which sends its
    whole body before reading) gets the error, not a broken pipe, and nothing reaches the disk."""
    svc, vol = rawx
    body = os.urandom(8 << 20)
    cases = [({"X-Grid-Secret": "wrong"}, 403), ({"X-Grid-Service-Id": "rawx-0000000000000000"}, 421),
             ({"X-Grid-Chunk-Hash": "nothex"}, 400), ({"X-Grid-Secret": ""}, 401)]
    with requests.Session() as http:
        for extra, status in cases:
            headers = {"X-Grid-Secret": grid_config.secret, "X-Grid-Chunk-Hash": xxhash.xxh3_64_hexdigest(body),
                       **extra}
            if not headers["X-Grid-Secret"]:
                del headers["X-Grid-Secret"]
            r = http.put(f"{svc.url}/chunk/{ID}", data=body, headers=headers, timeout=30)
            assert r.status_code == status, (extra, r.status_code, r.text)
            assert "error" in r.json()
        # The connection is still good for a real upload after the refusals.
        r = http.put(f"{svc.url}/chunk/{ID}", data=body, timeout=30, headers={
            "X-Grid-Secret": grid_config.secret, "X-Grid-Chunk-Hash": xxhash.xxh3_64_hexdigest(body)})
        assert r.status_code == 201, r.text
    assert [p.name for p in vol.glob("*/*") if p.is_file()] == [ID]


@pytest.mark.parametrize("request_bytes, status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /health HTTP/2.0\r\n\r\n", 400),
    (b"GET health HTTP/1.1\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", 400),
    (b"PUT /chunk/" + ID.encode() + b" HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"PUT /chunk/" + ID.encode() + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"PUT /chunk/" + ID.encode() + b" HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
])
def test_malformed_requests_get_a_clear_error_and_the_connection_closes(
        rawx: tuple[SpawnedService, Path], request_bytes: bytes, status: int) -> None:
    svc, vol = rawx
    with Conn(svc) as s:
        s.sendall(request_bytes)
        got, _, body = s.read_response()
        assert got == status, body
        assert b'"error"' in body
        assert s.closed()
    assert not [p for p in vol.glob("*/*") if p.is_file()]


def test_expect_100_continue_and_refusals_before_the_body(rawx: tuple[SpawnedService, Path],
                                                          grid_config: GridConfig) -> None:
    svc, vol = rawx
    body = os.urandom(1 << 20)
    with Conn(svc) as s:
        s.sendall(put_head(grid_config.secret, body, extra="Expect: 100-continue\r\n"))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        status, _, _ = s.read_response()
        assert status == 201
    with Conn(svc) as s:  # refused before the body is sent: the client never has to send it
        s.sendall(put_head("wrong", body, chunk_id="C" * 64, extra="Expect: 100-continue\r\n"))
        status, _, answer = s.read_response()
        assert status == 403 and b"Forbidden" in answer
        assert s.closed()
    with Conn(svc) as s:  # too large to be a chunk: refused at once
        s.sendall(f"PUT /chunk/{'D' * 64} HTTP/1.1\r\nX-Grid-Secret: {grid_config.secret}\r\n"
                  f"X-Grid-Chunk-Hash: {'0' * 16}\r\nContent-Length: {1 << 40}\r\n\r\n".encode())
        status, _, answer = s.read_response()
        assert status == 413 and b"PayloadTooLarge" in answer
    assert [p.name for p in vol.glob("*/*") if p.is_file()] == [ID]


def test_unknown_paths_methods_and_path_tricks(rawx: tuple[SpawnedService, Path], grid_config: GridConfig) -> None:
    svc, vol = rawx
    auth = {"X-Grid-Secret": grid_config.secret}
    assert requests.get(f"{svc.url}/nowhere", headers=auth, timeout=5).status_code == 404
    r = requests.patch(f"{svc.url}/chunk/{ID}", headers=auth, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["code"] == "MethodNotAllowed"
    for path in ["/chunk/..%2F..%2Fetc%2Fpasswd", "/chunk/%2e%2e", "/chunk/" + "A" * 65, "/chunk/a%00b"]:
        r = requests.get(f"{svc.url}{path}", headers=auth, timeout=5)
        assert r.status_code in (400, 404), (path, r.status_code)
    assert requests.get(f"{svc.url}/health", timeout=5).json() == {"ok": True}  # public
    assert requests.get(f"{svc.url}/info", timeout=5).status_code == 401
    assert not [p for p in vol.glob("*/*") if p.is_file()]
