"""The meta0 service: the prefix table, 65,536 prefixes -> the meta1 service owning each.

Routes: ``GET /v1/meta0/<PREFIX>`` (4 hex digits) -> ``{"prefix", "meta1": ID, "addr": URL}``;
``GET /v1/meta0`` -> every meta1 service in the table with its address and prefix count.

The table is filled once, at first start, from the meta1 services registered with the
conscience (spread evenly), and never rewritten: entries name service ids, whose
addresses are looked up when asked, so a meta1 service may move without a change here.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from pathlib import Path

from aiohttp import web

from gridfs.common.errors import InvalidName, ServiceUnavailable
from gridfs.directory.meta2db import Txn, open_db
from gridfs.directory.role import RoleService

log = logging.getLogger("directory")
PREFIXES = 65536
SCHEMA = "CREATE TABLE IF NOT EXISTS meta0 (prefix TEXT PRIMARY KEY, meta1 TEXT NOT NULL) WITHOUT ROWID"


class Meta0Service(RoleService):
    kind = "meta0"

    def __init__(self, data: Path, secret: str, conscience_url: str) -> None:
        super().__init__(data, secret, conscience_url)
        self.db = open_db(data / "meta0.db", SCHEMA)
        self.lock = threading.Lock()

    def assigned(self) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM meta0 LIMIT 1").fetchone() is not None

    def assign(self) -> bool:
        """Fill an empty table from the registered meta1 services; False while there are none."""
        ids = sorted(s["id"] for s in self.peers("meta1").get() if s.get("up") and s.get("id"))
        if not ids:
            return False
        with self.lock, Txn(self.db):
            if self.db.execute("SELECT 1 FROM meta0 LIMIT 1").fetchone() is None:
                self.db.executemany("INSERT INTO meta0 VALUES (?, ?)",
                                    [(f"{p:04X}", ids[p % len(ids)]) for p in range(PREFIXES)])
                log.info("prefix table spread over meta1 services %s", ", ".join(ids))
        return True

    async def assign_when_ready(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not await self.run(self.assigned):
            try:
                if await self.run(self.assign):
                    return
            except ServiceUnavailable as exc:
                log.info("waiting for the conscience to list meta1 services: %s", exc)
            await asyncio.sleep(0.2)

    def get(self, prefix: str) -> dict:
        with self.lock:
            row = self.db.execute("SELECT meta1 FROM meta0 WHERE prefix = ?", (prefix.upper(),)).fetchone()
        if row is None:
            if len(prefix) == 4 and not self.assigned():
                raise ServiceUnavailable("the prefix table is not filled yet: no meta1 service registered")
            raise InvalidName(f"invalid prefix {prefix!r}: 4 hex digits")
        return {"prefix": prefix.upper(), "meta1": row[0], "addr": self.address_of("meta1", row[0])}

    def table(self) -> dict:
        with self.lock:
            counts = Counter(m for (m,) in self.db.execute("SELECT meta1 FROM meta0"))
        return {"meta1": [{"id": sid, "addr": self.address_of("meta1", sid), "prefixes": n}
                          for sid, n in sorted(counts.items())]}

    def routes(self) -> list[web.RouteDef]:
        async def one(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.get, r.match_info["prefix"]))

        async def table(_: web.Request) -> web.Response:
            return web.json_response(await self.run(self.table))

        return [web.get("/v1/meta0/{prefix}", one), web.get("/v1/meta0", table)]
