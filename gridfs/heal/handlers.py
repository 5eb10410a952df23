"""The event handler that repairs objects: on ``chunk.corrupt`` and ``chunk.missing`` (from the
scrubber, through the reverse index's outbox) and ``content.degraded`` (a write or a multipart
completion that recorded missing positions), it runs :class:`gridfs.admin.repair.Repairer` on
the object version the event names.

Events are delivered at least once and may be old: an object or bucket that is gone is done
(nothing left to repair). A repair refused because the object's chunks moved meanwhile (another
repair or a drain) is tried once more on the fresh record. A metachunk with too few good chunks,
or any other error, raises so that the event agent retries it later (a storage server may be
restarting) and, in the end, keeps it as a dead letter an operator sees in ``grid health``.
A scrub finding is closed once its chunk is repaired, unreferenced, or read back whole.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gridfs.admin.repair import Repairer, RepairResult
from gridfs.client.grid import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import DataUnavailable, NoSuchContainer, NoSuchObject, PreconditionFailed
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import parse_chunk_url

log = logging.getLogger("gridfs.heal")


def object_of(data: dict[str, Any]) -> tuple[str, str, str, int | None]:
    """(account, bucket, key, version) an event names: directory events carry ``account`` and
    ``bucket``, reverse-index findings ``container`` ("ACCOUNT/BUCKET"); version None = latest."""
    account, bucket = data.get("account"), data.get("bucket")
    if not (account and bucket):
        account, _, bucket = str(data.get("container") or "").partition("/")
    key = data.get("key") or data.get("path")
    if not (account and bucket and key):
        raise ValueError(f"event names no object (account, bucket, key): {data!r}")
    version = data.get("version")
    return str(account), str(bucket), str(key), int(version) if version not in (None, "") else None


class AccountClients:
    """One GridClient per account, shared by threads: each keeps its chunk pools and service cache."""

    def __init__(self, cfg: GridConfig, depth: int = 3) -> None:
        self.cfg, self.depth = cfg, depth  # depth: objects in flight at once (GridClient's)
        self._clients: dict[str, GridClient] = {}
        self._lock = threading.Lock()

    def __call__(self, account: str) -> GridClient:
        with self._lock:
            client = self._clients.get(account)
            if client is None:
                client = self._clients[account] = GridClient(self.cfg, account=account, depth=self.depth)
            return client


class ObjectRepairHandler:
    def __init__(self, cfg: GridConfig) -> None:
        self._client = AccountClients(cfg)
        self._rdir_client: RdirClient | None = None
        self.repaired = 0

    @classmethod
    def for_grid(cls, cfg: GridConfig) -> ObjectRepairHandler:
        return cls(cfg)

    def __call__(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        account, bucket, key, version = object_of(data)
        for attempt in range(2):
            try:
                result = self.repair(account, bucket, key, version)
                break
            except (NoSuchObject, NoSuchContainer):
                log.info("%s: %s/%s/%s is gone, nothing to repair", event.get("type"), account, bucket, key)
                self._close_finding(data, account, bucket, key, version)
                return
            except PreconditionFailed:
                # Its chunks moved under this repair (a drain, another finding): read it again once;
                # after that the agent's retry, later, will.
                log.info("%s: %s/%s/%s changed while it was being repaired", event.get("type"), account, bucket, key)
                if attempt:
                    raise
        if result.lost:
            # Raise: a server that is only restarting may hold the chunks a later attempt needs.
            raise DataUnavailable(f"{account}/{bucket}/{key} version {result.version}: metachunks "
                                  f"{result.lost} have too few good chunks to rebuild")
        self._close_finding(data, account, bucket, key, version)
        if result.rebuilt:
            self.repaired += 1
            log.info("%s: %s/%s/%s version %s rebuilt %s", event.get("type"), account, bucket, key,
                     result.version, ", ".join(result.rebuilt))

    def _close_finding(self, data: dict[str, Any], account: str, bucket: str, key: str, version: int | None) -> None:
        """A scrub finding closes when its chunk leaves the volume's index. A repair's commit does that
        for a chunk the object still referenced; a chunk no object version references any more (the
        object was deleted or rewritten meanwhile, or it was an orphan) is dropped from the index here,
        or its finding would stay open and keep ``grid health`` degraded for ever."""
        volume, chunk_id = data.get("volume"), data.get("chunk_id")
        if not (volume and chunk_id):
            return  # a directory event (content.degraded): no finding to close
        client = self._client(account)
        try:
            info = client.head(bucket, key, version=version, chunks=True)
            if any(parse_chunk_url(c.url).chunk_id == chunk_id for mc in info.metachunks for c in mc.chunks):
                # Still referenced, so the repair read it back whole and verified (a bad one it would
                # have replaced): the finding was a passing fault. The index entry stays.
                self._rdir().close_findings(str(volume), [str(chunk_id)])
                return
        except (NoSuchObject, NoSuchContainer):
            pass
        self._rdir().delete(str(volume), [str(chunk_id)])

    def _rdir(self) -> RdirClient:
        if self._rdir_client is None:
            self._rdir_client = RdirClient.for_grid(self._client.cfg)
        return self._rdir_client

    def repair(self, account: str, bucket: str, key: str, version: int | None) -> RepairResult:
        return Repairer(self._client(account), bucket).repair(key, version)
