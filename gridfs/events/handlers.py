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
from gridfs.storage.client import ChunkClient, parse_chunk_url

log = logging.getLogger("gridfs.events")
Handler = Callable[[dict[str, Any]], None]


class ChunkReaper:
    """Deletes chunks that a delete, overwrite or abort left unreferenced.

    A chunk URL names its server's service id: the chunk client must resolve ids (see
    :meth:`for_grid`). A server that is unreachable fails the event, to be retried; but a
    chunk on a server the conscience no longer lists (removed), or lists silent and locked
    (a lost volume being rebuilt, or retired), is left where it is: retrying a dead disk
    forever would only fill the dead letters, and the orphan crawler removes such chunks if
    the server ever comes back.
    """

    def __init__(self, chunks: ChunkClient, pool: ThreadPoolExecutor, services: CachedServices | None = None) -> None:
        self.chunks = chunks
        self.pool = pool
        self.services = services  # None: no conscience to ask, every chunk is deleted or retried
        self.deleted = 0
        self.left = 0

    @classmethod
    def for_grid(cls, cfg: GridConfig, threads: int = 8) -> ChunkReaper:
        """A reaper whose chunk client finds servers by id through the grid's conscience."""
        services = CachedServices(ConscienceClient(cfg.conscience_url, cfg.secret), "rawx")
        return cls(ChunkClient.for_grid(cfg, services), ThreadPoolExecutor(threads, thread_name_prefix="reaper"),
                   services)

    def _retired(self, url: str) -> bool:
        """The chunk's server is gone for good: unlisted, or silent and locked."""
        if self.services is None:
            return False
        service = parse_chunk_url(url).service
        row = next((s for s in self.services.get() if service in (s.get("id"), s["addr"])), None)
        return row is None or (not row.get("up", True) and bool(row.get("locked")))

    def __call__(self, event: dict[str, Any]) -> None:
        urls = event["data"].get("chunks") or []
        failures = [e for e in self.pool.map(self._delete, urls) if e is not None]
        if failures:
            # Raising keeps the cursor here: the event is retried on the next pass.
            raise failures[0]

    def _delete(self, url: str) -> GridError | None:
        try:
            if self._retired(url):
                self.left += 1
                log.info("left %s: its storage server is removed, or silent and locked", url)
                return None
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
