"""The outboxes the event agent drains: every meta1, meta2 and rdir service the conscience lists.

Each source is known by its service id, so a service restarted on another address keeps
its place (and its recorded positions). A source that does not answer is polled again
after a growing delay while the others go on.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gridfs.common.errors import GridError
from gridfs.common.http import JsonClient
from gridfs.conscience.client import ConscienceClient

log = logging.getLogger("gridfs.events")
# rdir: the scrubber's findings become chunk.corrupt / chunk.missing events in its outbox.
SOURCE_TYPES = ("meta1", "meta2", "rdir")


@dataclass
class Source:
    """One service's outbox: ``GET /v1/outbox?limit=N`` and ``POST /v1/outbox/ack``."""

    id: str
    addr: str
    http: JsonClient
    next_poll: float = 0.0  # monotonic
    delay: float = 0.0  # back-off after failures, 0 while it answers
    error: str = ""
    last_ok: float | None = field(default=None)  # wall clock

    def read(self, limit: int) -> dict[str, Any]:
        """``{"events": [{"db", "id", "type", "ts", "data"}], "more": bool}``, oldest first per database."""
        return self.http.call("GET", "/v1/outbox", params={"limit": limit})

    def ack(self, upto: dict[str, int]) -> None:
        """Delete each database's events up to the id given (idempotent, so safe to resend)."""
        self.http.call("POST", "/v1/outbox/ack", body={"acks": upto})

    def answered(self) -> None:
        self.delay, self.error, self.last_ok = 0.0, "", time.time()

    def failed(self, exc: Exception, first: float, cap: float) -> None:
        self.delay = min(cap, self.delay * 2 or first)
        self.next_poll = time.monotonic() + self.delay
        if str(exc) != self.error:
            log.warning("outbox of %s (%s) not reachable, next try in %.1f s: %s", self.id, self.addr, self.delay, exc)
        self.error = str(exc)

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "addr": self.addr, "error": self.error, "last_ok": self.last_ok,
                "retry_in": round(max(0.0, self.next_poll - time.monotonic()), 3) if self.error else 0.0}


class OutboxSources:
    """The current sources, refreshed from the conscience at most every ``refresh`` seconds.

    When the conscience does not answer, the last list is kept: the outboxes themselves
    may well be up.
    """

    def __init__(self, conscience: ConscienceClient, secret: str, refresh: float = 3.0, timeout: float = 10.0) -> None:
        self.conscience, self.secret, self.refresh, self.timeout = conscience, secret, refresh, timeout
        self.sources: dict[str, Source] = {}
        self._refreshed_at: float | None = None

    def current(self) -> list[Source]:
        now = time.monotonic()
        if self._refreshed_at is None or now - self._refreshed_at >= self.refresh:
            self._refreshed_at = now
            try:
                rows = [row for t in SOURCE_TYPES for row in self.conscience.services(t)]
            except GridError as exc:
                log.warning("conscience not reachable, keeping %d known outboxes: %s", len(self.sources), exc)
            else:
                self._update(rows)
        return list(self.sources.values())

    def _update(self, rows: list[dict[str, Any]]) -> None:
        seen: dict[str, Source] = {}
        for row in rows:
            sid, addr = row.get("id") or row["addr"], row["addr"]
            known = self.sources.get(sid)
            if known is None or known.addr != addr:
                # No retries inside a call: a source that does not answer is backed off from as a
                # whole, and must not hold the agent's loop up while the other sources wait.
                known = Source(sid, addr, JsonClient(f"http://{addr}", self.secret, timeout=self.timeout, retry_for=0))
            seen[sid] = known
        self.sources = seen
