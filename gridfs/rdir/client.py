"""Client of the reverse index service (rdir), found through the conscience.

There is one rdir service per grid today; :meth:`RdirClient.address_for` is where a
volume would be mapped to one of several later. Calls are idempotent (an upsert, a
delete, a whole-record replace), so every one may be retried across a restart.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import ServiceUnavailable
from gridfs.common.http import RETRY_FOR, JsonClient
from gridfs.conscience.client import CachedServices, ConscienceClient


class RdirClient:
    def __init__(self, conscience: ConscienceClient, secret: str, timeout: float = 30.0,
                 retry_for: float = RETRY_FOR) -> None:
        self.secret, self.timeout, self.retry_for = secret, timeout, retry_for
        self.services = CachedServices(conscience, "rdir", ttl=2.0)
        self._clients: dict[str, JsonClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_grid(cls, cfg: GridConfig) -> RdirClient:
        return cls(ConscienceClient(cfg.conscience_url, cfg.secret), cfg.secret)

    def __getstate__(self) -> dict[str, Any]:
        return {"secret": self.secret, "timeout": self.timeout, "retry_for": self.retry_for,
                "services": self.services}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clients, self._lock = {}, threading.Lock()

    # -- where ----------------------------------------------------------------------------------

    def address_for(self, volume: str = "") -> str:
        """``host:port`` of the rdir service that indexes ``volume`` (today: the one service, up first)."""
        rows = self.services.get()
        if not rows:
            self.services.invalidate()
            rows = self.services.get()
        if not rows:
            raise ServiceUnavailable("no rdir service is registered with the conscience")
        rows.sort(key=lambda s: (not s.get("up", True), s.get("id") or s["addr"]))
        return rows[0]["addr"]

    def _http(self, volume: str = "") -> JsonClient:
        addr = self.address_for(volume)
        with self._lock:
            client = self._clients.get(addr)
            if client is None:
                client = self._clients[addr] = JsonClient(f"http://{addr}", self.secret, timeout=self.timeout,
                                                              retry_for=self.retry_for)
            return client

    def _send(self, volume: str, method: str, path: str, **kwargs: Any) -> Any:
        """Every call is idempotent; one that finds no service where the conscience last said
        is sent once more to where it says now (the rdir restarted on another port)."""
        http = self._http(volume)
        try:
            return http.call(method, path, idempotent=True, **kwargs)
        except ServiceUnavailable:
            self.services.invalidate()
            again = self._http(volume)
            if again is http:
                raise
            return again.call(method, path, idempotent=True, **kwargs)

    def _call(self, volume: str, method: str, route: str, **kwargs: Any) -> Any:
        return self._send(volume, method, f"/v1/rdir/v/{urllib.parse.quote(volume, safe='')}{route}", **kwargs)

    # -- the index ------------------------------------------------------------------------------

    def push(self, volume: str, entries: list[dict]) -> None:
        """Upsert entries by chunk id."""
        if entries:
            self._call(volume, "POST", "/push", body={"entries": entries})

    def delete(self, volume: str, chunk_ids: list[str]) -> None:
        if chunk_ids:
            self._call(volume, "POST", "/delete", body={"chunk_ids": chunk_ids})

    def apply(self, push: dict[str, list[dict]], delete: dict[str, list[str]]) -> None:
        """Pushes and deletes over several volumes in one call (one per event, from the indexer).

        Every volume must be served by the same rdir service: true while there is one."""
        if push or delete:
            self._send("", "POST", "/v1/rdir/apply", body={"push": push, "delete": delete})

    def fetch(self, volume: str, marker: str = "", limit: int = 1000) -> tuple[list[dict], str]:
        """Entries in (container, key, version, chunk_id) order after ``marker``; the next marker, "" at the end."""
        page = self._call(volume, "GET", "/fetch", params={"marker": marker, "limit": limit})
        return page["entries"], page["marker"]

    def count(self, volume: str) -> int:
        return int(self._call(volume, "GET", "/count")["chunks"])

    def volumes(self) -> list[dict]:
        """Per known volume: {"volume", "chunks", "bytes", "job", "findings"}."""
        return list(self._send("", "GET", "/v1/rdir/volumes"))

    def drop(self, volume: str) -> None:
        """Forget the volume's index, job and findings."""
        self._call(volume, "DELETE", "")

    # -- jobs and findings ----------------------------------------------------------------------

    def job(self, volume: str) -> dict | None:
        return self._call(volume, "GET", "/job")

    def set_job(self, volume: str, job: dict) -> None:
        self._call(volume, "PUT", "/job", body=job)

    def report(self, volume: str, findings: list[dict]) -> None:
        if findings:
            self._call(volume, "POST", "/report", body={"findings": findings})

    def findings(self, volume: str) -> list[dict]:
        return list(self._call(volume, "GET", "/findings"))

    def close_findings(self, volume: str, chunk_ids: list[str]) -> None:
        """Close open findings of chunks that are whole after all (their index entries stay)."""
        if chunk_ids:
            self._call(volume, "POST", "/findings/close", body={"chunk_ids": chunk_ids})
