"""The directory service: meta0, meta1 and meta2 roles in one process.

Routes:
  GET  /v1/meta0/<PREFIX>                       -> {"prefix", "meta1"}
  POST /v1/meta1/<CID>   GET /v1/meta1/<CID>   DELETE /v1/meta1/<CID>   GET /v1/meta1?account=
  GET|POST /v1/meta2/<CID>/container            container info (``stats=1``) / set policy, versioning, properties
  POST /v1/meta2/<CID>/commit                   {"object", "if_none_match"}
  GET  /v1/meta2/<CID>/object?key=&version=&chunks=
  POST /v1/meta2/<CID>/delete | /rename | /properties | /chunks (a repair moves chunk locations)
  GET  /v1/meta2/<CID>/list | /versions
  POST /v1/meta2/<CID>/uploads   GET /v1/meta2/<CID>/uploads
  POST /v1/meta2/<CID>/uploads/<UID>/parts | /complete | /abort   GET .../parts
  GET  /v1/events?after=&limit=

Database work runs in a thread pool, one lock per container database.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from gridfs.common.config import GridConfig
from gridfs.common.errors import AlreadyExists, BadRequest, GridError, InvalidName, NoSuchContainer
from gridfs.common.http import aiohttp_middlewares
from gridfs.common.names import check_account, check_bucket, check_container_id, container_id
from gridfs.common.service import base_arg_parser, bind, serve_app, setup_logging
from gridfs.directory.events import EventLog
from gridfs.directory.meta2db import Meta2, Txn
from gridfs.directory.model import Metachunk, ObjectInfo, PartInfo

log = logging.getLogger("directory")
PREFIXES = 65536


class Directory:
    def __init__(self, data: Path, url: str) -> None:
        self.data = data
        self.url = url
        data.mkdir(parents=True, exist_ok=True)
        self.meta01 = sqlite3.connect(data / "meta01.db", check_same_thread=False, isolation_level=None)
        self.meta01.execute("PRAGMA journal_mode=WAL")
        self.meta01.execute("PRAGMA synchronous=FULL")
        self.meta01.execute("CREATE TABLE IF NOT EXISTS meta0 (prefix TEXT PRIMARY KEY, meta1 TEXT NOT NULL)")
        self.meta01.execute("CREATE TABLE IF NOT EXISTS meta1 (cid TEXT PRIMARY KEY, account TEXT NOT NULL, "
                            "name TEXT NOT NULL, meta2 TEXT NOT NULL, ctime REAL NOT NULL)")
        self.meta01.execute("CREATE INDEX IF NOT EXISTS meta1_account ON meta1 (account, name)")
        self.lock = threading.Lock()
        with Txn(self.meta01):
            # One-machine mode: this process serves every prefix and container, at its current URL.
            self.meta01.executemany("INSERT OR REPLACE INTO meta0 VALUES (?, ?)",
                                    [(f"{p:04X}", url) for p in range(PREFIXES)])
            self.meta01.execute("UPDATE meta1 SET meta2 = ?", (url,))
        self.events = EventLog(data / "events.db")
        self._meta2: dict[str, Meta2] = {}

    # -- meta0 / meta1 --------------------------------------------------------------

    def meta0(self, prefix: str) -> dict:
        row = self.meta01.execute("SELECT meta1 FROM meta0 WHERE prefix = ?", (prefix.upper(),)).fetchone()
        if row is None:
            raise InvalidName(f"invalid prefix {prefix!r}: 4 hex digits")
        return {"prefix": prefix.upper(), "meta1": row[0]}

    def meta1_get(self, cid: str) -> dict:
        check_container_id(cid)
        with self.lock:
            row = self.meta01.execute("SELECT account, name, meta2 FROM meta1 WHERE cid = ?", (cid,)).fetchone()
        if row is None:
            raise NoSuchContainer(f"no container {cid}")
        return {"cid": cid, "account": row[0], "name": row[1], "meta2": row[2]}

    def meta1_create(self, cid: str, body: dict) -> dict:
        account, name = check_account(body.get("account", "")), check_bucket(body.get("name", ""))
        if container_id(account, name) != cid:
            raise BadRequest("container id does not match account and name")
        policy = str(body.get("policy") or "")
        versioning = "enabled" if body.get("versioning") else "disabled"
        with self.lock:
            if self.meta01.execute("SELECT 1 FROM meta1 WHERE cid = ?", (cid,)).fetchone():
                raise AlreadyExists(f"bucket {name} already exists")
            m2 = self._open(cid)
            with m2.lock, Txn(m2.db):
                m2.set_props(account=account, bucket=name, policy=policy, versioning=versioning, ctime=time.time(),
                             properties=body.get("properties") or {})
            self.meta01.execute("INSERT INTO meta1 VALUES (?, ?, ?, ?, ?)", (cid, account, name, self.url, time.time()))
        self.events.append("container.new", {"cid": cid, "account": account, "bucket": name})
        return {"cid": cid, "meta2": self.url}

    def meta1_delete(self, cid: str) -> None:
        info = self.meta1_get(cid)
        with self.lock:
            m2 = self._open(cid)
            with m2.lock:
                m2.check_empty()
                self.meta01.execute("DELETE FROM meta1 WHERE cid = ?", (cid,))
                m2.close()
                del self._meta2[cid]
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{m2.path}{suffix}").unlink(missing_ok=True)
        self.events.append("container.deleted", {"cid": cid, "account": info["account"], "bucket": info["name"]})

    def meta1_list(self, account: str) -> list[dict]:
        check_account(account)
        with self.lock:
            rows = self.meta01.execute("SELECT cid FROM meta1 WHERE account = ? ORDER BY name", (account,)).fetchall()
        return [self.meta2(cid, lambda m, c=cid: m.info(c, self.url, stats=True).to_dict()) for (cid,) in rows]

    # -- meta2 ----------------------------------------------------------------------

    def _open(self, cid: str) -> Meta2:
        m2 = self._meta2.get(cid)
        if m2 is None:
            m2 = self._meta2[cid] = Meta2(self.data / "meta2" / cid[:2] / f"{cid}.db")
        return m2

    def meta2(self, cid: str, fn: Any) -> Any:
        check_container_id(cid)
        with self.lock:
            known = self.meta01.execute("SELECT 1 FROM meta1 WHERE cid = ?", (cid,)).fetchone()
            if not known:
                raise NoSuchContainer(f"no container {cid}")
            m2 = self._open(cid)
        with m2.lock:
            return fn(m2)

    def event(self, m2: Meta2, kind: str, data: dict) -> None:
        self.events_many(m2, [(kind, data)])

    def events_many(self, m2: Meta2, events: list[tuple[str, dict]]) -> None:
        p = m2.props()
        where = {"account": p["account"], "bucket": p["bucket"]}
        self.events.append_many([(kind, {**where, **data}) for kind, data in events])


def _obj_event(obj: ObjectInfo) -> dict:
    return {"key": obj.key, "version": obj.version, "size": obj.size, "policy": obj.policy}


def build_app(secret: str, d: Directory) -> web.Application:
    pool = ThreadPoolExecutor(8, thread_name_prefix="meta2")
    metrics = CollectorRegistry()
    ops = Counter("grid_directory_requests", "requests", ["op"], registry=metrics)

    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    def on(cid: str, fn: Any) -> Any:
        return run(d.meta2, cid, fn)

    def after_drop(m2: Meta2, garbage: list[str], data: dict) -> None:
        if garbage:
            d.event(m2, "content.deleted", {**data, "chunks": garbage})

    async def meta0(r: web.Request) -> web.Response:
        return web.json_response(d.meta0(r.match_info["prefix"]))

    async def meta1(r: web.Request) -> web.Response:
        cid = r.match_info["cid"]
        if r.method == "POST":
            return web.json_response(await run(d.meta1_create, cid, await r.json()), status=201)
        if r.method == "DELETE":
            await run(d.meta1_delete, cid)
            return web.json_response({"ok": True})
        return web.json_response(await run(d.meta1_get, cid))

    async def meta1_list(r: web.Request) -> web.Response:
        return web.json_response(await run(d.meta1_list, r.query.get("account", "")))

    async def container(r: web.Request) -> web.Response:
        cid = r.match_info["cid"]
        if r.method == "POST":
            body = await r.json()

            def update(m: Meta2) -> dict:
                with Txn(m.db):
                    if body.get("policy") is not None:
                        m.set_props(policy=str(body["policy"]))
                    if body.get("versioning") is not None:
                        state = body["versioning"]
                        if state not in ("enabled", "suspended"):
                            raise BadRequest("versioning must be 'enabled' or 'suspended'")
                        m.set_props(versioning=state)
                    if body.get("properties") is not None:
                        m.set_props(properties=dict(body["properties"]))
                return m.info(cid, d.url).to_dict()

            return web.json_response(await on(cid, update))
        stats = r.query.get("stats") == "true"
        return web.json_response(await on(cid, lambda m: m.info(cid, d.url, stats).to_dict()))

    async def commit(r: web.Request) -> web.Response:
        body = await r.json()
        objs = [ObjectInfo.from_dict(o) for o in body.get("objects") or [body["object"]]]

        def fn(m: Meta2) -> dict:
            done = m.commit_many(objs, bool(body.get("if_none_match")))
            events: list[tuple[str, dict]] = []
            for info, garbage in done:
                events.append(("content.new", _obj_event(info)))
                if garbage:
                    events.append(("content.deleted", {"key": info.key, "reason": "replaced", "chunks": garbage}))
            d.events_many(m, events)
            if "objects" in body:
                return {"objects": [i.to_dict() for i, _ in done], "garbage": [u for _, g in done for u in g]}
            info, garbage = done[0]
            return {"object": info.to_dict(), "garbage": garbage}

        return web.json_response(await on(r.match_info["cid"], fn))

    async def get_object(r: web.Request) -> web.Response:
        q = r.query
        version = int(q["version"]) if q.get("version") else None
        return web.json_response(await on(r.match_info["cid"],
                                          lambda m: m.get(q.get("key", ""), version, q.get("chunks") != "false")
                                          .to_dict()))

    async def delete(r: web.Request) -> web.Response:
        body = await r.json()

        def fn(m: Meta2) -> dict:
            result, garbage = m.delete(body["key"], body.get("version"))
            after_drop(m, garbage, {"key": body["key"], "reason": "deleted"})
            if not garbage:
                d.event(m, "content.deleted", {"key": body["key"], "chunks": [], **result})
            return {"result": result, "garbage": garbage}

        return web.json_response(await on(r.match_info["cid"], fn))

    async def rename(r: web.Request) -> web.Response:
        body = await r.json()

        def fn(m: Meta2) -> dict:
            info, garbage = m.rename(body["src"], body["dst"])
            d.event(m, "content.new", {**_obj_event(info), "renamed_from": body["src"]})
            after_drop(m, garbage, {"key": info.key, "reason": "replaced"})
            return {"object": info.to_dict(), "garbage": garbage}

        return web.json_response(await on(r.match_info["cid"], fn))

    async def properties(r: web.Request) -> web.Response:
        body = await r.json()

        def fn(m: Meta2) -> dict:
            info = m.set_properties(body["key"], body["properties"], body.get("version"), bool(body.get("replace")))
            d.event(m, "content.updated", _obj_event(info))
            return info.to_dict()

        return web.json_response(await on(r.match_info["cid"], fn))

    async def chunks(r: web.Request) -> web.Response:
        body = await r.json()
        metachunks = [Metachunk.from_dict(m) for m in body["metachunks"]]

        def fn(m: Meta2) -> dict:
            garbage = m.replace_chunks(body["key"], int(body["version"]), str(body["content_id"]), metachunks)
            after_drop(m, garbage, {"key": body["key"], "reason": "repaired"})
            return {"garbage": garbage}

        return web.json_response(await on(r.match_info["cid"], fn))

    async def referenced(r: web.Request) -> web.Response:
        return web.json_response(await on(r.match_info["cid"], lambda m: m.referenced_urls()))

    async def listing(r: web.Request) -> web.Response:
        q = r.query
        try:
            max_keys = int(q.get("max_keys", 1000))
        except ValueError:
            raise BadRequest("max_keys must be an integer") from None
        return web.json_response(await on(r.match_info["cid"], lambda m: m.list(
            q.get("prefix", ""), q.get("delimiter", ""), q.get("start_after", ""), q.get("token", ""), max_keys
        ).to_dict()))

    async def versions(r: web.Request) -> web.Response:
        q = r.query
        vm = int(q["version_marker"]) if q.get("version_marker") else None
        return web.json_response(await on(r.match_info["cid"], lambda m: m.list_versions(
            q.get("prefix", ""), q.get("delimiter", ""), q.get("key_marker", ""), vm, int(q.get("max_keys", 1000)))))

    async def uploads(r: web.Request) -> web.Response:
        cid = r.match_info["cid"]
        if r.method == "POST":
            b = await r.json()
            return web.json_response(await on(cid, lambda m: m.create_upload(
                b["key"], b.get("policy", ""), b.get("mime_type", "application/octet-stream"),
                b.get("properties") or {}).to_dict()))
        prefix = r.query.get("prefix", "")
        return web.json_response(await on(cid, lambda m: [u.to_dict() for u in m.list_uploads(prefix)]))

    async def parts(r: web.Request) -> web.Response:
        cid, uid = r.match_info["cid"], r.match_info["uid"]
        if r.method == "POST":
            b = await r.json()
            part = PartInfo.from_dict(b["part"])

            def fn(m: Meta2) -> dict:
                garbage = m.commit_part(uid, part, b["chunk_method"])
                after_drop(m, garbage, {"upload_id": uid, "reason": "part replaced"})
                return {"garbage": garbage}

            return web.json_response(await on(cid, fn))
        return web.json_response(await on(cid, lambda m: [p.to_dict() for p in m.list_parts(uid)]))

    async def complete(r: web.Request) -> web.Response:
        cid, uid = r.match_info["cid"], r.match_info["uid"]
        b = await r.json()

        def fn(m: Meta2) -> dict:
            info, garbage = m.complete_upload(uid, [(int(n), str(e)) for n, e in b["parts"]], b.get("hash", ""),
                                              b.get("properties"))
            d.event(m, "content.new", _obj_event(info))
            after_drop(m, garbage, {"key": info.key, "reason": "multipart"})
            return {"object": info.to_dict(), "garbage": garbage}

        return web.json_response(await on(cid, fn))

    async def abort(r: web.Request) -> web.Response:
        cid, uid = r.match_info["cid"], r.match_info["uid"]

        def fn(m: Meta2) -> dict:
            garbage = m.abort_upload(uid)
            after_drop(m, garbage, {"upload_id": uid, "reason": "aborted"})
            return {"garbage": garbage}

        return web.json_response(await on(cid, fn))

    async def events(r: web.Request) -> web.Response:
        return web.json_response(await run(d.events.read, int(r.query.get("after", 0)),
                                           int(r.query.get("limit", 1000))))

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @web.middleware
    async def count(request: web.Request, handler: Any) -> Any:
        ops.labels(request.path.split("/")[-1] if "meta2" in request.path else request.path[:9]).inc()
        try:
            return await handler(request)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, GridError):
                raise
            raise BadRequest(f"malformed request: {exc!r}") from exc

    app = web.Application(middlewares=[*aiohttp_middlewares(secret), count], client_max_size=64 << 20)
    m2 = "/v1/meta2/{cid}"
    app.add_routes([
        web.get("/v1/meta0/{prefix}", meta0),
        web.route("*", "/v1/meta1/{cid}", meta1), web.get("/v1/meta1", meta1_list),
        web.route("*", m2 + "/container", container), web.post(m2 + "/commit", commit),
        web.get(m2 + "/object", get_object), web.post(m2 + "/delete", delete), web.post(m2 + "/rename", rename),
        web.post(m2 + "/properties", properties), web.post(m2 + "/chunks", chunks), web.get(m2 + "/chunks", referenced),
        web.get(m2 + "/list", listing), web.get(m2 + "/versions", versions),
        web.route("*", m2 + "/uploads", uploads), web.route("*", m2 + "/uploads/{uid}/parts", parts),
        web.post(m2 + "/uploads/{uid}/complete", complete), web.post(m2 + "/uploads/{uid}/abort", abort),
        web.get("/v1/events", events), web.get("/health", health), web.get("/metrics", prometheus),
    ])
    return app


async def serve(args: argparse.Namespace) -> None:
    setup_logging("directory", args.log_level)
    cfg = GridConfig.load(args.config)
    # Bind first: the URL (and so the port) is recorded in meta0 and meta1.
    sock, url = bind(args.host, args.port)
    log.info("directory (meta0, meta1, meta2) at %s, data in %s", url, args.data)
    await serve_app(build_app(cfg.secret, Directory(Path(args.data), url)), sock, url, args.ready_file)


def main() -> None:
    p = base_arg_parser("gridfs directory (meta0, meta1, meta2)")
    p.add_argument("--data", required=True)
    asyncio.run(serve(p.parse_args()))
