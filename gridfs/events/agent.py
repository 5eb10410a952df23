"""The event agent: tails the directory's event log and dispatches to handlers.

The cursor (id of the last event every handler finished) is written atomically after
each batch, so a restarted agent resumes where it stopped; an event whose handler
failed is retried on the next pass, with a back-off, instead of being skipped.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from gridfs.common.errors import GridError
from gridfs.directory.client import DirectoryClient
from gridfs.events.handlers import Handler

log = logging.getLogger("gridfs.events")


class EventAgent:
    def __init__(self, directory: DirectoryClient, state: str | os.PathLike, batch: int = 500) -> None:
        self.directory = directory
        self.state = Path(state)
        self.batch = batch
        self.handlers: dict[str, list[Handler]] = defaultdict(list)
        self.cursor = int(self.state.read_text()) if self.state.exists() else 0
        self.handled = 0
        self.failures = 0
        self.stopped = threading.Event()

    def subscribe(self, event_type: str, handler: Handler) -> None:
        """``event_type`` is exact (``content.deleted``) or ``*`` for every event."""
        self.handlers[event_type].append(handler)

    def _save_cursor(self) -> None:
        tmp = self.state.with_name(self.state.name + ".tmp")
        tmp.write_text(str(self.cursor))
        os.replace(tmp, self.state)

    def poll_once(self) -> int:
        """Handle one batch; returns how many events were handled."""
        page = self.directory.events(after=self.cursor, limit=self.batch)
        done = 0
        for event in page["events"]:
            if not self._dispatch(event):
                break
            self.cursor = event["id"]
            done += 1
        if done:
            self._save_cursor()
            self.handled += done
        return done

    def _dispatch(self, event: dict[str, Any]) -> bool:
        for handler in [*self.handlers.get(event["type"], []), *self.handlers.get("*", [])]:
            try:
                handler(event)
            except Exception as exc:  # a user handler may raise anything; retry later
                self.failures += 1
                log.warning("event %s (%s): handler %s failed: %s", event["id"], event["type"], handler, exc)
                return False
        return True

    def run(self, interval: float = 0.2, max_backoff: float = 5.0) -> None:
        delay = interval
        while not self.stopped.is_set():
            try:
                handled = self.poll_once()
                delay = interval if handled or not self.failures else min(max_backoff, delay * 2)
            except GridError as exc:
                log.debug("event log not reachable: %s", exc)
                handled, delay = 0, min(max_backoff, delay * 2)
            if not handled:
                self.stopped.wait(delay)
