"""Client of the conscience, and a cached service list for placement.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gridfs.common.http import JsonClient


class ConscienceClient:
    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.http = JsonClient(url, secret, timeout=10.0)

    def heartbeat(self, payload: dict) -> None:
        self.http.call("POST", "/v1/heartbeat", body=payload)

    def services(self, type: str | None = None) -> list[dict]:
        return self.http.call("GET", "/v1/services", params={"type": type})

    def lock(self, addr: str) -> None:
        self.http.call("POST", "/v1/lock", body={"addr": addr})

    def unlock(self, addr: str) -> None:
        self.http.call("POST", "/v1/unlock", body={"addr": addr})

    def forget(self, addr: str) -> None:
        self.http.call("DELETE", "/v1/services", params={"addr": addr})


class CachedServices:
    """The service list of one type, refreshed at most every ``ttl`` seconds."""

    def __init__(self, client: ConscienceClient, type: str = "rawx", ttl: float = 1.0) -> None:
        self.client, self.type, self.ttl = client, type, ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._services: list[dict] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"client": self.client, "type": self.type, "ttl": self.ttl}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["client"], state["type"], state["ttl"])  # type: ignore[misc]

    def get(self) -> list[dict]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._services = self.client.services(self.type)
                self._at = time.monotonic()
            return self._services

    def invalidate(self) -> None:
        with self._lock:
            self._at = 0.0
