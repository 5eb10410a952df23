"""The shared I/O context of a client: storage handles, service cache, pools, buffers.

Three pools, so that no task ever waits on a task queued behind it in its own pool:
``prefetch_pool`` runs read-ahead of whole ranges, ``meta_pool`` one metachunk each
(encode, place, fan out), ``chunk_pool`` the chunk transfers themselves.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gridfs.client.buffers import BufferPool
from gridfs.common.errors import GridError
from gridfs.conscience.client import CachedServices
from gridfs.storage.client import ChunkClient

log = logging.getLogger("gridfs.client")


@dataclass
class IOContext:
    chunks: ChunkClient
    services: CachedServices
    chunk_pool: ThreadPoolExecutor
    meta_pool: ThreadPoolExecutor
    prefetch_pool: ThreadPoolExecutor
    buffers: BufferPool
    chunk_size: int
    depth: int = 3

    def shutdown(self) -> None:
        for pool in (self.prefetch_pool, self.meta_pool, self.chunk_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def delete_chunks(self, urls: list[str]) -> None:
        """Best-effort parallel delete of chunks no record points to."""

        def one(url: str) -> None:
            try:
                self.chunks.delete(url)
            except GridError as exc:
                log.debug("could not delete %s: %s", url, exc)

        list(self.chunk_pool.map(one, urls))
