"""The meta1 service: which meta2 service holds each container (for the prefixes meta0 gives it).

Routes:
  POST   /v1/meta1/<CID>   {"account", "name", "policy", "versioning", "properties", "op_id"} -> 201
  GET    /v1/meta1/<CID>   -> {"cid", "account", "name", "meta2": ID, "meta2_addr": URL}
  DELETE /v1/meta1/<CID>?op_id=
  GET    /v1/meta1?account=A   -> the account's containers (without statistics)
  GET /v1/outbox, POST /v1/outbox/ack   container.new / container.deleted events

A new container goes to a meta2 service chosen by score through the conscience (the
same weighted draw as chunk placement), never by a hash of the service list, so a new
meta2 service takes new containers at once. The record names the meta2 service id; its
address is looked up when asked. Creating and deleting span two services: meta2 first
(idempotent: the same container again is a no-op, a missing one is already dropped),
then the meta1 record with its event in one transaction. A crash between the two
leaves at worst an empty, unreferenced container database.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gridfs.common.errors import AlreadyExists, BadRequest, NoSuchContainer
from gridfs.common.failpoints import failpoint
from gridfs.common.http import JsonClient
from gridfs.common.names import check_account, check_bucket, check_container_id, container_id
from gridfs.conscience.placement import select
from gridfs.directory import ops, outbox
from gridfs.directory.meta2db import Txn, open_db
from gridfs.directory.ops import check_op_id
from gridfs.directory.role import RoleService

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta1 (cid TEXT PRIMARY KEY, account TEXT NOT NULL, name TEXT NOT NULL,
    meta2 TEXT NOT NULL, ctime REAL NOT NULL);
CREATE INDEX IF NOT EXISTS meta1_account ON meta1 (account, name)
"""
OUTBOX_DB = "meta1"


class Meta1Service(RoleService):
    kind = "meta1"

    def __init__(self, data: Path, secret: str, conscience_url: str) -> None:
        super().__init__(data, secret, conscience_url)
        self.db = open_db(data / "meta1.db", SCHEMA)
        self.lock = threading.Lock()
        self._meta2_clients: dict[str, JsonClient] = {}

    def _meta2(self, service_id: str) -> JsonClient:
        url = self.address_of("meta2", service_id)
        client = self._meta2_clients.get(url)
        if client is None:
            client = self._meta2_clients[url] = JsonClient(url, self.secret)
        return client

    def _record(self, cid: str) -> tuple[str, str, str] | None:
        with self.lock:
            return self.db.execute("SELECT account, name, meta2 FROM meta1 WHERE cid = ?", (cid,)).fetchone()

    def get(self, cid: str) -> dict:
        row = self._record(check_container_id(cid))
        if row is None:
            raise NoSuchContainer(f"no container {cid}")
        account, name, meta2 = row
        return {"cid": cid, "account": account, "name": name, "meta2": meta2,
                "meta2_addr": self.address_of("meta2", meta2)}

    def create(self, cid: str, body: dict) -> dict:
        account, name = check_account(body.get("account", "")), check_bucket(body.get("name", ""))
        if container_id(account, name) != cid:
            raise BadRequest("container id does not match account and name")
        op_id = check_op_id(body["op_id"]) if body.get("op_id") is not None else None
        with self.lock, Txn(self.db):
            before = ops.replay(self.db, op_id) if op_id else None
        if before is not None:
            return before
        if self._record(cid) is not None:
            raise AlreadyExists(f"bucket {name} already exists")
        (home,) = select(self.peers("meta2").get(), 1)
        self._meta2(home["id"]).call("POST", f"/v1/meta2/{cid}/create", idempotent=True, body={
            "account": account, "name": name, "policy": body.get("policy") or "",
            "versioning": bool(body.get("versioning")), "properties": body.get("properties") or {}})
        result = {"cid": cid, "meta2": home["id"]}
        with self.lock, Txn(self.db):
            try:
                self.db.execute("INSERT INTO meta1 VALUES (?, ?, ?, ?, ?)",
                                (cid, account, name, home["id"], time.time()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"bucket {name} already exists") from None
            outbox.emit(self.db, [("container.new", {"cid": cid, "account": account, "bucket": name})])
            if op_id:
                ops.record(self.db, op_id, result)
        failpoint("meta1.after_commit")
        return result

    def delete(self, cid: str, op_id: str | None) -> dict:
        with self.lock, Txn(self.db):
            before = ops.replay(self.db, op_id) if op_id else None
        if before is not None:
            return before
        info = self.get(cid)
        self._meta2(info["meta2"]).call("POST", f"/v1/meta2/{cid}/drop", body={}, idempotent=True)
        result = {"ok": True}
        with self.lock, Txn(self.db):
            self.db.execute("DELETE FROM meta1 WHERE cid = ?", (cid,))
            outbox.emit(self.db, [("container.deleted",
                                   {"cid": cid, "account": info["account"], "bucket": info["name"]})])
            if op_id:
                ops.record(self.db, op_id, result)
        failpoint("meta1.after_commit")
        return result

    def list(self, account: str) -> list[dict]:
        check_account(account)
        with self.lock:
            rows = self.db.execute("SELECT cid, name, meta2, ctime FROM meta1 WHERE account = ? ORDER BY name",
                                   (account,)).fetchall()
        return [{"cid": cid, "account": account, "name": name, "meta2": meta2, "ctime": ctime}
                for cid, name, meta2, ctime in rows]

    def outbox_read(self, limit: int) -> dict:
        with self.lock:
            events = outbox.read(self.db, OUTBOX_DB, limit + 1)
        return {"events": events[:limit], "more": len(events) > limit}

    def outbox_backlog(self) -> int:
        with self.lock:
            return outbox.count(self.db)

    def outbox_ack(self, acks: dict[str, Any]) -> dict:
        if OUTBOX_DB in acks:
            with self.lock, Txn(self.db):
                outbox.ack(self.db, int(acks[OUTBOX_DB]))
        return {"ok": True}

    def routes(self) -> list[web.RouteDef]:
        async def one(r: web.Request) -> web.Response:
            cid = r.match_info["cid"]
            if r.method == "POST":
                body = await r.json()
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
                return web.json_response(await self.run(self.create, cid, body), status=201)
            if r.method == "DELETE":
                op_id = check_op_id(r.query["op_id"]) if r.query.get("op_id") else None
                return web.json_response(await self.run(self.delete, cid, op_id))
            return web.json_response(await self.run(self.get, cid))

        async def listing(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.list, r.query.get("account", "")))

        return [web.route("*", "/v1/meta1/{cid}", one), web.get("/v1/meta1", listing),
                *self.outbox_routes()]
