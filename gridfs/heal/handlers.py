"""The event handler that repairs objects: on ``chunk.corrupt`` and ``chunk.missing`` (from the
scrubber, through the reverse index's outbox) and ``content.degraded`` (a write or a multipart
completion that recorded missing positions), it runs :class:`gridfs.admin.repair.Repairer` on
the object version the event names.

Events are delivered at least once and may be old: an object or bucket that is gone, or a
version whose content changed meanwhile, is done (there is nothing left to repair, or the new
content is whole by construction). A metachunk with too few good chunks, or any other error,
raises so that the event agent retries it later (a storage server may be restarting) and, in
the end, keeps it as a dead letter an operator sees in ``grid health``.

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

    def __init__(self, cfg: GridConfig) -> None:
        self.cfg = cfg
        self._clients: dict[str, GridClient] = {}
        self._lock = threading.Lock()

    def __call__(self, account: str) -> GridClient:
        with self._lock:
            client = self._clients.get(account)
            if client is None:
                client = self._clients[account] = GridClient(self.cfg, account=account)
            return client


class ObjectRepairHandler:
    def __init__(self, cfg: GridConfig) -> None:
        self._client = AccountClients(cfg)
        self.repaired = 0

    @classmethod
    def for_grid(cls, cfg: GridConfig) -> ObjectRepairHandler:
        return cls(cfg)

    def __call__(self, event: dict[str, Any]) -> None:
        account, bucket, key, version = object_of(event.get("data") or {})
        try:
            result = self.repair(account, bucket, key, version)
        except (NoSuchObject, NoSuchContainer):
            log.info("%s: %s/%s/%s is gone, nothing to repair", event.get("type"), account, bucket, key)
            return
        except PreconditionFailed:
            log.info("%s: %s/%s/%s changed while it was being repaired", event.get("type"), account, bucket, key)
            return
        if result.lost:
            # Raise: a server that is only restarting may hold the chunks a later attempt needs.
            raise DataUnavailable(f"{account}/{bucket}/{key} version {result.version}: metachunks "
                                  f"{result.lost} have too few good chunks to rebuild")
        if result.rebuilt:
            self.repaired += 1
            log.info("%s: %s/%s/%s version %s rebuilt %s", event.get("type"), account, bucket, key,
                     result.version, ", ".join(result.rebuilt))

    def repair(self, account: str, bucket: str, key: str, version: int | None) -> RepairResult:
        return Repairer(self._client(account), bucket).repair(key, version)
