"""Client of the conscience, and a cached service list for placement.

The client library places every metachunk, so it must not ask the conscience each
time: :class:`CachedServices` refreshes at most every ``ttl`` seconds, shared by all
threads of a process, and survives pickling (Dask, multiprocessing) without its lock.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from gridfs.common.errors import ServiceUnavailable
from gridfs.common.http import JsonClient

log = logging.getLogger(__name__)


class ConscienceClient:
    """The conscience's HTTP API (see docs/PROTOCOLS.md); raises the GridError it names."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.http = JsonClient(url, secret, timeout=timeout)

    def heartbeat(self, payload: dict) -> None:
        self.http.call("POST", "/v1/heartbeat", body=payload)

    def services(self, type: str | None = None) -> list[dict]:
        """Every registered service (of ``type``, if given), with its current scores."""
        return list(self.http.call("GET", "/v1/services", params={"type": type}) or [])

    def lock(self, addr: str) -> None:
        """Stop new writes to ``addr`` (reads go on). NotFound if it is not registered."""
        self.http.call("POST", "/v1/lock", body={"addr": addr})

    def unlock(self, addr: str) -> None:
        self.http.call("POST", "/v1/unlock", body={"addr": addr})

    def forget(self, addr: str) -> None:
        """Drop a service (and its lock) from the registry. NotFound if unknown."""
        self.http.call("DELETE", "/v1/services", params={"addr": addr})


class CachedServices:
    """The service list of one type, refreshed at most every ``ttl`` seconds.

    When a refresh fails because the conscience is unreachable (restarting, say), the
    last list is served for up to ``max_stale`` seconds so writes go on; after that the
    error reaches the caller. Failed refreshes are retried at most every ``ttl`` too,
    so a dead conscience is not hammered by every metachunk.
    """

    def __init__(
        self, client: ConscienceClient, type: str = "rawx", ttl: float = 1.0, max_stale: float = 30.0
    ) -> None:
        self.client, self.type, self.ttl, self.max_stale = client, type, ttl, max_stale
        self._lock = threading.Lock()
        self._services: list[dict] = []
        self._fetched_at: float | None = None  # monotonic time of the last good refresh
        self._tried_at: float | None = None  # monotonic time of the last attempt

    def __getstate__(self) -> dict[str, Any]:
        # Locks do not pickle; the cached list would be stale by the time it is unpickled.
        return {"client": self.client, "type": self.type, "ttl": self.ttl, "max_stale": self.max_stale}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["client"], state["type"], state["ttl"], state.get("max_stale", 30.0))  # type: ignore[misc]

    def get(self) -> list[dict]:
        """The current list (a copy, safe to modify)."""
        # One thread refreshes while the others wait for its answer instead of asking too.
        with self._lock:
            now = time.monotonic()
            if self._tried_at is None or now - self._tried_at >= self.ttl:
                self._tried_at = now
                try:
                    self._services = self.client.services(self.type)
                    self._fetched_at = time.monotonic()
                except ServiceUnavailable as exc:
                    if self._fetched_at is None or now - self._fetched_at > self.max_stale:
                        self._tried_at = None  # nothing usable: let the next caller try again
                        raise
                    log.warning("conscience unreachable, using a %.1f s old service list: %s",
                                now - self._fetched_at, exc)
            return list(self._services)

    def invalidate(self) -> None:
        """Make the next :meth:`get` ask the conscience (after a write to a listed service failed)."""
        with self._lock:
            self._tried_at = None
