"""The event handler that keeps the reverse index: chunks in, chunks out, per volume.

``content.new`` and ``content.chunks`` (a repair) upsert an entry for every chunk of the
event under the volume its URL names; ``content.deleted`` deletes its chunks by id. A
batch of events (the agent hands over what it read from one outbox) costs one call to the rdir
service whatever the number of events and volumes it touches.
A chunk URL of the old form names an address: it is mapped to the service id through
the conscience's storage list, and skipped (logged) if no listed server has it.

An rdir that is down must not hold the agent for a full retry budget per batch: calls give up
quickly, and for ``PAUSE`` seconds after a failure the indexer fails at once, so those events
go to the agent's retry list and the other handlers go on.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import InvalidName, ServiceUnavailable
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import ChunkRef, parse_chunk_url

log = logging.getLogger("gridfs.rdir")
UPSERTS = ("content.new", "content.chunks")
DELETES = ("content.deleted",)
RETRY_FOR = 1.0  # seconds one call may spend retrying (a restart on the same port)
PAUSE = 2.0  # seconds of failing fast after the rdir did not answer


class RdirIndexer:
    def __init__(self, rdir: RdirClient, rawx: CachedServices) -> None:
        self.rdir, self.rawx = rdir, rawx
        self._down_until = 0.0  # monotonic

    @classmethod
    def for_grid(cls, cfg: GridConfig) -> RdirIndexer:
        conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
        return cls(RdirClient(conscience, cfg.secret, retry_for=RETRY_FOR), CachedServices(conscience, "rawx"))

    def _volume(self, ref: ChunkRef) -> str | None:
        if ref.service_id:
            return ref.service_id
        for fresh in (False, True):
            if fresh:
                self.rawx.invalidate()
            for svc in self.rawx.get():
                if svc["addr"] == ref.addr and svc.get("id"):
                    return str(svc["id"])
        return None

    def _parse(self, url: Any) -> tuple[str, str] | None:
        """(volume, chunk id) of a chunk URL, or None (logged) when it cannot be placed."""
        try:
            ref = parse_chunk_url(url)
        except InvalidName as exc:
            log.warning("not indexed: %s", exc)
            return None
        volume = self._volume(ref)
        if volume is None:
            log.warning("not indexed: no storage server listed at %s (chunk %s)", ref.addr, ref.chunk_id)
            return None
        return volume, ref.chunk_id

    def __call__(self, event: dict[str, Any]) -> None:
        self.handle_batch([event])

    def handle_batch(self, events: list[dict[str, Any]]) -> None:
        """Every event's changes in one call: pushes in event order (a later entry for a chunk id, a
        rename's, replaces an earlier one), deletes after them (a chunk deleted in the batch was
        pushed before it: ids are never reused)."""
        push: dict[str, list[dict]] = defaultdict(list)
        delete: dict[str, list[str]] = defaultdict(list)
        for event in events:
            self._collect(event, push, delete)
        if not (push or delete):
            return
        if time.monotonic() < self._down_until:
            raise ServiceUnavailable("the rdir service did not answer a moment ago: retried later")
        try:
            self.rdir.apply(dict(push), dict(delete))
        except ServiceUnavailable:
            self._down_until = time.monotonic() + PAUSE
            raise

    def _collect(self, event: dict[str, Any], push: dict[str, list[dict]], delete: dict[str, list[str]]) -> None:
        data = event["data"]
        if event["type"] in UPSERTS:
            container = f"{data['account']}/{data['bucket']}"
            for chunk in data.get("chunks") or []:
                placed = self._parse(chunk.get("url"))
                if placed is not None:
                    push[placed[0]].append({
                        "chunk_id": placed[1], "container": container, "key": data["key"],
                        "version": int(data["version"]), "content_id": data.get("content_id", ""),
                        "pos": chunk["pos"], "size": int(chunk["size"])})
        elif event["type"] in DELETES:
            for url in data.get("chunks") or []:
                placed = self._parse(url)
                if placed is not None:
                    delete[placed[0]].append(placed[1])
