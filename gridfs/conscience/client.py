"""Client of the conscience, and a cached service list for placement.

The client library places every metachunk, so it must not ask the conscience each
time: :class:`CachedServices` refreshes at most every ``ttl`` seconds, shared by all
threads of a process, and survives pickling (Dask, multiprocessing) without its lock.
It also resolves the service ids that chunk URLs name to current addresses, and tells
readers which services the conscience reports down, so they go to parity at once.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from gridfs.common.errors import ServiceUnavailable
from gridfs.common.http import RETRY_FOR, JsonClient

log = logging.getLogger(__name__)
# How long a refresh retries when a service list is already at hand to fall back on:
# a read must not wait the full retry time of a conscience that is restarting.
QUICK_RETRY_FOR = 1.0


class ConscienceClient:
    """The conscience's HTTP API (see docs/PROTOCOLS.md); raises the GridError it names."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0, retry_for: float = RETRY_FOR) -> None:
        self.url = url.rstrip("/")
        self.http = JsonClient(url, secret, timeout=timeout, retry_for=retry_for)

    def quick(self) -> ConscienceClient:
        """The same conscience, with retries cut to ``QUICK_RETRY_FOR`` seconds."""
        return ConscienceClient(self.url, self.http.secret, self.http.timeout, QUICK_RETRY_FOR)

    def heartbeat(self, payload: dict) -> None:
        self.http.call("POST", "/v1/heartbeat", body=payload)

    def services(self, type: str | None = None) -> list[dict]:
        """Every registered service (of ``type``, if given), with its current scores."""
        return list(self.http.call("GET", "/v1/services", params={"type": type}) or [])

    def lock(self, service: str) -> None:
        """Stop new writes to a service, named by id or address (reads go on). NotFound if it is not registered."""
        self.http.call("POST", "/v1/lock", body=_named(service))

    def unlock(self, service: str) -> None:
        self.http.call("POST", "/v1/unlock", body=_named(service))

    def forget(self, service: str) -> None:
        """Drop a service (and its lock) from the registry, named by id or address. NotFound if unknown."""
        self.http.call("DELETE", "/v1/services", params=_named(service))


def _named(service: str) -> dict[str, str]:
    # An address always has a port (host:port); an id never has a colon.
    return {"addr": service} if ":" in service else {"id": service}


class CachedServices:
    """The service list of one type, refreshed at most every ``ttl`` seconds.

    When a refresh fails because the conscience is unreachable (restarting, say), the
    last list is served for up to ``max_stale`` seconds so writes go on; after that the
    error reaches the caller. Failed refreshes are retried at most every ``ttl`` too,
    so a dead conscience is not hammered by every metachunk; once a list is at hand,
    a refresh gives up within about a second rather than riding out a long outage.
    """

    def __init__(
        self, client: ConscienceClient, type: str = "rawx", ttl: float = 1.0, max_stale: float = 30.0
    ) -> None:
        self.client, self.type, self.ttl, self.max_stale = client, type, ttl, max_stale
        self._quick = client.quick()
        self._lock = threading.Lock()
        self._services: list[dict] = []
        self._by_name: dict[str, dict] = {}  # id and address -> row of the current list
        self._fetched_at: float | None = None  # monotonic time of the last good refresh
        self._tried_at: float | None = None  # monotonic time of the last attempt

    def __getstate__(self) -> dict[str, Any]:
        # Locks do not pickle; the cached list would be stale by the time it is unpickled.
        return {"client": self.client, "type": self.type, "ttl": self.ttl, "max_stale": self.max_stale}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["client"], state["type"], state["ttl"], state.get("max_stale", 30.0))  # type: ignore[misc]

    def get(self) -> list[dict]:
        """The current list (a copy, safe to modify)."""
        with self._lock:
            return list(self._current())

    def _current(self, strict: bool = True) -> list[dict]:
        """The list, refreshed if it is older than ``ttl``; call with the lock held.

        ``strict``: raise when the conscience does not answer and the list is older than
        ``max_stale`` (placement must not use a long-dead view); otherwise keep the last list."""
        # One thread refreshes while the others wait for its answer instead of asking too.
        now = time.monotonic()
        if self._tried_at is None or now - self._tried_at >= self.ttl:
            self._tried_at = now
            try:
                source = self.client if self._fetched_at is None else self._quick
                self._services = source.services(self.type)
                self._by_name = {s["addr"]: s for s in self._services}
                self._by_name.update({s["id"]: s for s in self._services if s.get("id")})
                self._fetched_at = time.monotonic()
            except ServiceUnavailable as exc:
                if strict and (self._fetched_at is None or now - self._fetched_at > self.max_stale):
                    self._tried_at = None  # nothing usable: let the next caller try again
                    raise
                log.warning("conscience unreachable, using the last service list (%s s old): %s",
                            "never fetched" if self._fetched_at is None else f"{now - self._fetched_at:.1f}", exc)
        return self._services

    def _row(self, service: str, wait: bool = True) -> dict | None:
        """The row of a service (id or address) in the freshest list at hand. With ``wait``
        False, a refresh another thread is doing is not waited for. A conscience that does not
        answer leaves the last list in use: an address gone stale is caught by the server's id
        check (421), and reads must not stop because the registry is restarting."""
        if self._lock.acquire(blocking=wait or self._fetched_at is None):  # no list yet: wait for the first
            try:
                self._current(strict=False)
            finally:
                self._lock.release()
        return self._by_name.get(service)

    def addr_of(self, service_id: str) -> str:
        """The current address of a service (by id); an unknown id makes the list refresh once."""
        row = self._row(service_id)
        if row is None:
            self.invalidate()
            row = self._row(service_id)
        if row is None:
            raise ServiceUnavailable(f"no {self.type} service {service_id} is registered with the conscience")
        return row["addr"]

    def is_down(self, service: str) -> bool:
        """Whether the conscience reports this service (id, or address of an old chunk URL) down:
        silent, or not serving reads. Unknown services, or no answer from the conscience: not down
        (the read is tried, and fails over on its own if it must)."""
        row = self._row(service, wait=False)
        return row is not None and (not row.get("up", True) or not row.get("score_get", 1))

    def invalidate(self) -> None:
        """Make the next :meth:`get` ask the conscience (after a write to a listed service failed)."""
        with self._lock:
            self._tried_at = None
