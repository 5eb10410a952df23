"""Turning what callers pass to ``put`` into a sequence of metachunk views.

Bytes-like input is sliced without copying; files are read with ``readinto`` into
reused buffers (a path through :class:`SourceFile`: from the disk, not the page cache, when it is large
and not cached); iterators of unknown length are packed into buffers as they come.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

from gridfs.client.buffers import BufferPool
from gridfs.common.fileio import SourceFile

Release = Callable[[], None]
PutData = bytes | bytearray | memoryview | np.ndarray | BinaryIO | Iterable[bytes] | str | os.PathLike


def _noop() -> None:
    return None


def known_size(data: Any) -> int | None:
    """The size of ``data`` without consuming it, or None when it can't be known."""
    if isinstance(data, bytes | bytearray | memoryview):
        return memoryview(data).nbytes
    if isinstance(data, np.ndarray):
        return data.nbytes
    if isinstance(data, str | os.PathLike):
        return os.path.getsize(data)
    if hasattr(data, "fileno") and hasattr(data, "tell"):
        try:
            st = os.fstat(data.fileno())
            if st.st_size or os.path.isfile(getattr(data, "name", "")):
                return st.st_size - data.tell()
        except (OSError, io.UnsupportedOperation):
            return None
    return None


def peek(data: Any, limit: int) -> tuple[Any, int | None]:
    """Read up to ``limit + 1`` bytes of a stream of unknown length.

    Returns data that still yields every byte, and the size when the stream ended
    within the limit (so a small object piped in still gets the small-object policy).
    """
    if limit <= 0:
        return data, None
    reader = (lambda n: data.read(n)) if hasattr(data, "read") else None
    it = None if reader else iter(data)
    head: list[bytes] = []
    got = 0
    while got <= limit:
        piece = reader(limit + 1 - got) if reader else next(it, b"")  # type: ignore[arg-type, misc]
        if not piece:
            whole = b"".join(head)
            return whole, len(whole)
        head.append(bytes(piece))
        got += len(piece)

    def rest() -> Iterator[bytes]:
        yield from head
        if reader:
            yield from iter(lambda: reader(1 << 20), b"")
        else:
            yield from it  # type: ignore[misc]

    return rest(), None


class MetachunkSource:
    """Yields ``(view, release)`` pairs of at most ``meta_size`` bytes each.

    At most ``depth`` buffers are out at once: iteration blocks until the consumer
    releases one, which bounds memory and gives back-pressure to the reader.
    """

    def __init__(self, data: Any, meta_size: int, pool: BufferPool, depth: int = 3) -> None:
        self.data = data
        self.meta_size = meta_size
        self.pool = pool
        self._slots = threading.Semaphore(depth)

    def _borrow(self) -> tuple[np.ndarray, Release]:
        self._slots.acquire()
        buf = self.pool.acquire(self.meta_size)

        def release() -> None:
            self.pool.release(buf)
            self._slots.release()

        return buf, release

    def __iter__(self) -> Iterator[tuple[np.ndarray, Release]]:
        data = self.data
        if isinstance(data, bytes | bytearray | memoryview | np.ndarray):
            yield from self._from_memory(np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8))
        elif isinstance(data, str | os.PathLike):
            with SourceFile(data) as f:  # straight from the disk when large and not in the page cache
                yield from self._from_file(f)
        elif hasattr(data, "readinto"):
            yield from self._from_file(data)
        elif hasattr(data, "read"):
            yield from self._from_iterable(iter(lambda: data.read(self.meta_size), b""))
        else:
            yield from self._from_iterable(data)

    def _from_memory(self, arr: np.ndarray) -> Iterator[tuple[np.ndarray, Release]]:
        for start in range(0, arr.nbytes, self.meta_size):
            yield arr[start : start + self.meta_size], _noop

    def _from_file(self, f: BinaryIO) -> Iterator[tuple[np.ndarray, Release]]:
        while True:
            buf, release = self._borrow()
            view = memoryview(buf)
            filled = 0
            while filled < self.meta_size:
                n = f.readinto(view[filled:])
                if not n:
                    break
                filled += n
            if not filled:
                release()
                return
            yield buf[:filled], release
            if filled < self.meta_size:
                return

    def _from_iterable(self, pieces: Iterable[bytes]) -> Iterator[tuple[np.ndarray, Release]]:
        buf, release = self._borrow()
        filled = 0
        for piece in pieces:
            src = np.frombuffer(memoryview(piece).cast("B"), dtype=np.uint8)
            while src.nbytes:
                n = min(src.nbytes, self.meta_size - filled)
                buf[filled : filled + n] = src[:n]
                filled += n
                src = src[n:]
                if filled == self.meta_size:
                    yield buf, release
                    buf, release = self._borrow()
                    filled = 0
        if filled:
            yield buf[:filled], release
        else:
            release()
