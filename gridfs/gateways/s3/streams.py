"""Bridging aiohttp's streams and the synchronous client library, without buffering objects.

A request body is read on the event loop in pieces of about 1 MiB and handed to the
client's writer thread one piece at a time; digests are updated in that thread
(hashlib releases the GIL). A response is fed from the client's prefetching reader,
one block at a time, written as it arrives.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import Any

from aiohttp import web

from gridfs.gateways.s3.checksums import BodyDigests
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.sigv4 import STREAMING, ChunkedBody, SignedRequest

PIECE = 4 << 20


async def _plain(request: web.Request, length: int) -> AsyncIterator[bytes]:
    left = length
    while left > 0:
        try:
            piece = await request.content.readexactly(min(PIECE, left))
        except asyncio.IncompleteReadError as exc:
            raise S3Error("IncompleteBody", "You did not provide the number of bytes specified by the "
                          "Content-Length HTTP header.") from exc
        left -= len(piece)
        yield piece


class RequestBody:
    """The payload of a PUT/POST, decoded (aws-chunked or plain), as async pieces."""

    def __init__(self, request: web.Request, signed: SignedRequest | None, key: bytes | None) -> None:
        self.request = request
        mode = signed.payload_hash if signed else ""
        self.chunked: ChunkedBody | None = None
        if mode in STREAMING:
            decoded = request.headers.get("x-amz-decoded-content-length")
            if decoded is None or not decoded.isdigit():
                raise S3Error("MissingContentLength", "x-amz-decoded-content-length is required with aws-chunked")
            self.length = int(decoded)
            self.chunked = ChunkedBody(self._read_line, self._read_exactly, mode, signed, key)
        else:
            if request.content_length is None:
                if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raise S3Error("MissingContentLength", "You must provide the Content-Length HTTP header.")
                self.length = 0
            else:
                self.length = request.content_length

    async def _read_line(self) -> bytes:
        try:
            return await self.request.content.readline()
        except ValueError as exc:  # aiohttp's limit on a line: no chunk header is that long
            raise S3Error("IncompleteBody", "malformed aws-chunked chunk header") from exc

    async def _read_exactly(self, n: int) -> bytes:
        """``n`` bytes of an aws-chunked body: IncompleteBody when it ends first (a chunk shorter than its
        header said), and never more than the decoded length (or a chunk's CRLF) at once."""
        if n < 0:
            raise S3Error("IncompleteBody", "malformed aws-chunked chunk header")
        if n > max(self.length, 2):
            raise S3Error("InvalidRequest", f"an aws-chunked chunk of {n} bytes is larger than the "
                          f"x-amz-decoded-content-length of {self.length}")
        try:
            return await self.request.content.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise S3Error("IncompleteBody", f"the aws-chunked body ended {n - len(exc.partial)} bytes short of "
                          "what its chunk header announced") from exc

    def pieces(self) -> AsyncIterator[bytes]:
        if self.chunked is not None:
            return self.chunked.__aiter__()
        return _plain(self.request, self.length)

    @property
    def trailers(self) -> dict[str, str]:
        return self.chunked.trailers if self.chunked else {}


def sync_pieces(loop: asyncio.AbstractEventLoop, pieces: AsyncIterator[bytes], digests: BodyDigests,
                expected_size: int | None) -> Iterator[bytes]:
    """A blocking iterator over an async body, for the client's writer thread.

    Raises (so the writer discards every chunk it stored) when the body is short, long,
    or fails a check; the digests are compared by the caller once this ends. An
    ``expected_size`` of None: no length was declared (a POST form's file), ``pieces``
    bounds it.
    """
    it = pieces.__aiter__()
    while True:
        try:
            piece = asyncio.run_coroutine_threadsafe(it.__anext__(), loop).result()
        except StopAsyncIteration:
            break
        digests.update(piece)
        if expected_size is not None and digests.size > expected_size:
            raise S3Error("IncompleteBody", "the body is longer than its declared length")
        yield piece
    if expected_size is not None and digests.size != expected_size:
        raise S3Error("IncompleteBody", f"the body has {digests.size} bytes, {expected_size} were declared")


# Up to 3.11, asyncio's socket transport copies whatever it cannot send at once, so a
# block's buffer may be reused as soon as ``write`` returns; from 3.12 it keeps a
# reference to the caller's buffer, so the block must be copied first.
TRANSPORT_COPIES = sys.version_info < (3, 12)


async def stream_response(response: web.StreamResponse, request: web.Request, blocks: Iterator[Any],
                          pool: Executor) -> None:
    """Write blocks from a synchronous iterator whose buffers are reused after each step."""
    loop = asyncio.get_running_loop()
    await response.prepare(request)

    def take() -> Any:
        block = next(blocks, None)
        return block if block is None or TRANSPORT_COPIES else bytes(block)

    while True:
        block = await loop.run_in_executor(pool, take)
        if block is None:
            break
        await response.write(block)
    await response.write_eof()
