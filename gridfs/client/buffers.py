"""Reusable metachunk buffers.

A fresh 48 MiB buffer costs more in page faults than hashing and encoding it, so
buffers are kept and handed out again (DESIGN.md section 3). They are anonymous maps, page-aligned,
so that a source file can be read into one straight from the disk (gridfs.common.fileio.SourceFile).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading

import numpy as np

from gridfs.common.fileio import private_map


class BufferPool:
    """A free list of numpy byte buffers, by size. Thread-safe; never blocks."""

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._free: dict[int, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def acquire(self, size: int) -> np.ndarray:
        with self._lock:
            stack = self._free.get(size)
            if stack:
                return stack.pop()
        return np.frombuffer(private_map(size), dtype=np.uint8) if size else np.empty(0, dtype=np.uint8)

    def release(self, buf: np.ndarray) -> None:
        with self._lock:
            stack = self._free.setdefault(buf.nbytes, [])
            if len(stack) < self._keep:
                stack.append(buf)
