"""The event agent: drains the directory's outboxes and dispatches each event to its handlers.

Delivery is at least once, so handlers are idempotent. For each batch read from a source:
every handler subscribed to an event's type runs (on the batch's events of its types, in order;
in one call for a handler with ``handle_batch``); a handler that raises gets a row on the
retry list (:mod:`gridfs.events.store`); the rows and the positions are committed; only
then is the batch acked, which deletes it from the outbox. A crash before the ack means
the batch is delivered again. One failing handler holds up nothing: the event is acked
once every handler succeeded or has its retry row, and retries run beside new events,
each only the handler that failed, with growing delays until a dead-letter list.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from gridfs.common.errors import GridError
from gridfs.common.failpoints import failpoint
from gridfs.events.handlers import Handler
from gridfs.events.sources import OutboxSources, Source
from gridfs.events.store import EventStore, Failure, RetryPolicy

log = logging.getLogger("gridfs.events")


class EventAgent:
    def __init__(self, sources: OutboxSources, store: EventStore, policy: RetryPolicy, batch: int = 500,
                 interval: float = 0.2, max_backoff: float = 5.0) -> None:
        self.sources, self.store, self.policy = sources, store, policy
        self.batch, self.interval, self.max_backoff = batch, interval, max_backoff
        self.handlers: dict[str, Handler] = {}  # name -> handler
        self.subscriptions: dict[str, list[str]] = defaultdict(list)  # event type -> handler names
        self.handled = 0  # events handled since start
        self.failures = 0  # handler calls that raised since start
        self.lag: dict[str, float] = {}  # source id -> age of the oldest event of its last batch read (s)
        self.stopped = threading.Event()
        # Run before each step: handler sets that change while the agent runs (user functions,
        # registered in the grid) subscribe and unsubscribe their handlers there.
        self.refreshers: list[Callable[[EventAgent], None]] = []

    def subscribe(self, event_type: str, handler: Handler) -> str:
        """``event_type`` is exact (``content.deleted``) or ``*`` for every event; returns the handler's name."""
        name = handler_name(handler)
        if self.handlers.setdefault(name, handler) is not handler:
            raise ValueError(f"two different event handlers are named {name}")
        if name not in self.subscriptions[event_type]:
            self.subscriptions[event_type].append(name)
        return name

    def unsubscribe(self, name: str) -> None:
        """Drop a handler from every type; its pending retries then fail as 'no event handler named ...'."""
        self.handlers.pop(name, None)
        for names in self.subscriptions.values():
            if name in names:
                names.remove(name)

    def handlers_for(self, event_type: str) -> list[str]:
        """Each handler once, even when subscribed to the type and to ``*``."""
        return list(dict.fromkeys([*self.subscriptions.get(event_type, []), *self.subscriptions.get("*", [])]))

    # -- one step of each kind ----------------------------------------------------

    def call(self, name: str, event: dict[str, Any]) -> str | None:
        """Run one handler; the error text if it failed."""
        handler = self.handlers.get(name)
        if handler is None:  # a retry recorded before the configuration dropped the handler
            return f"no event handler named {name} is configured"
        try:
            handler(event)
        except Exception as exc:  # a user handler may raise anything: it is retried later
            self.failures += 1
            log.warning("%s event %s/%s: handler %s failed: %s", event["type"], event["db"], event["id"], name, exc)
            return f"{type(exc).__name__}: {exc}"
        return None

    def call_many(self, name: str, events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """Run one handler on a batch of events; the (event, error) of those that failed.

        A handler with a ``handle_batch(events)`` method gets them in one call (the reverse index
        writes a batch in one request); if that raises, every event of the batch is retried later,
        one at a time through the handler itself; if it returns a list of (event, error), those
        events alone are (user functions run a batch's calls side by side, each with its own
        outcome). Others are called once per event."""
        handler = self.handlers.get(name)
        batch = getattr(handler, "handle_batch", None)
        if batch is None or len(events) < 2:
            return [(e, err) for e in events if (err := self.call(name, e)) is not None]
        try:
            failed = batch(events)
        except Exception as exc:  # retried event by event later
            self.failures += 1
            log.warning("%d events from %s/%s on: handler %s failed: %s", len(events), events[0]["db"],
                        events[0]["id"], name, exc)
            return [(e, f"{type(exc).__name__}: {exc}") for e in events]
        self.failures += len(failed or [])
        return list(failed or [])

    def poll_source(self, source: Source) -> bool:
        """Handle and ack one batch of ``source``'s outbox; True when it has more waiting."""
        page = source.read(self.batch)
        events = page.get("events") or []
        self.lag[source.id] = max(0.0, time.time() - min(e["ts"] for e in events)) if events else 0.0
        if not events:
            return False
        failures: list[Failure] = []
        upto: dict[str, int] = {}
        by_handler: dict[str, list[dict[str, Any]]] = defaultdict(list)  # each handler's events, in order
        for event in events:
            for name in self.handlers_for(event["type"]):
                by_handler[name].append(event)
            upto[event["db"]] = max(upto.get(event["db"], 0), event["id"])
        for name, subset in by_handler.items():
            failures += [Failure(source.id, name, event, error) for event, error in self.call_many(name, subset)]
        self.store.record(source.id, failures, upto, self.policy)
        self.handled += len(events)
        failpoint("events.after_handle")
        source.ack(upto)
        return bool(page.get("more"))

    def run_retries(self, limit: int = 100) -> bool:
        """Run the retries that are due; True when more may be due already."""
        due = self.store.due(limit)
        for retry in due:
            error = self.call(retry.handler, retry.event)
            if self.store.retried(retry, error, self.policy):
                log.error("%s event %s/%s: handler %s failed %d times, now a dead letter: %s", retry.event["type"],
                          retry.event["db"], retry.event["id"], retry.handler, retry.attempts + 1, error)
        return len(due) == limit

    def step(self) -> bool:
        """Poll every source that is due and run due retries; True when work is waiting."""
        for refresh in self.refreshers:
            try:
                refresh(self)
            except Exception:  # the directory away, say: the handlers subscribed so far go on
                log.exception("refreshing the event handlers failed")
        busy = False
        for source in self.sources.current():
            if source.next_poll > time.monotonic():
                continue
            try:
                busy |= self.poll_source(source)
            except GridError as exc:  # that source is down or restarting: the others go on
                source.failed(exc, self.interval, self.max_backoff)
            else:
                source.answered()
        return self.run_retries() or busy

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                busy = self.step()
            except Exception:  # the agent's own database failing, say: keep the process, try again
                log.exception("event agent step failed")
                busy = False
            if not busy:
                self.stopped.wait(self.interval)

    def status(self) -> dict[str, Any]:
        return {"handled": self.handled, "failures": self.failures, **self.store.counts(),
                "sources": [s.status() for s in self.sources.sources.values()],
                "positions": self.store.positions(),
                "handlers": {t: names for t, names in self.subscriptions.items()}}


def handler_name(handler: Handler) -> str:
    """``module:qualname`` of a function, or of the class of a callable object: stable across restarts.
    A handler with a ``handler_name`` attribute names itself (one object per user function)."""
    own = getattr(handler, "handler_name", None)
    if isinstance(own, str):
        return own
    named = handler if hasattr(handler, "__qualname__") else type(handler)
    return f"{named.__module__}:{named.__qualname__}"
