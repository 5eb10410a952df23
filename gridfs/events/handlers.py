"""Event handlers: each takes one event dict ``{"id", "type", "ts", "data"}``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError, InvalidName, NoSuchChunk
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.storage.client import ChunkClient

log = logging.getLogger("gridfs.events")
Handler = Callable[[dict[str, Any]], None]


class ChunkReaper:
    """Deletes chunks that a delete, overwrite or abort left unreferenced.

    A chunk URL names its server's service id: the chunk client must resolve ids (see
    :meth:`for_grid`). A server that is unknown or unreachable fails the event, to be retried.
    """

    def __init__(self, chunks: ChunkClient, pool: ThreadPoolExecutor) -> None:
        self.chunks = chunks
        self.pool = pool
        self.deleted = 0

    @classmethod
    def for_grid(cls, cfg: GridConfig, threads: int = 8) -> ChunkReaper:
        """A reaper whose chunk client finds servers by id through the grid's conscience."""
        services = CachedServices(ConscienceClient(cfg.conscience_url, cfg.secret), "rawx")
        return cls(ChunkClient.for_grid(cfg, services), ThreadPoolExecutor(threads, thread_name_prefix="reaper"))

    def __call__(self, event: dict[str, Any]) -> None:
        urls = event["data"].get("chunks") or []
        failures = [e for e in self.pool.map(self._delete, urls) if e is not None]
        if failures:
            # Raising keeps the cursor here: the event is retried on the next pass.
            raise failures[0]

    def _delete(self, url: str) -> GridError | None:
        try:
            self.chunks.delete(url)
            self.deleted += 1
        except (NoSuchChunk, InvalidName):
            pass  # already gone: deletion is idempotent
        except GridError as exc:
            return exc
        return None


def load_user_handler(spec: str) -> Handler:
    """``package.module:function`` from the namespace config ``[events] handlers``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"event handler {spec!r} must be 'module:function'")
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise ValueError(f"event handler {spec!r} is not callable")
    return fn
