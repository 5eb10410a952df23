"""The rdir service: HTTP routes over :class:`gridfs.rdir.store.RdirStore`.

Routes (all behind the namespace secret), per volume ``/v1/rdir/v/<VOLUME>``:
  POST push {"entries": [...]}       upsert by chunk id      POST delete {"chunk_ids": [...]}
  GET  fetch?marker=&limit=          entries in object order GET  count
  GET|PUT job                        the rebuild/drain record
  POST report {"findings": [...]}    GET  findings            DELETE (forget the volume)
And ``GET /v1/rdir/volumes``, ``POST /v1/rdir/apply`` {"push": {VOLUME: [...]}, "delete":
{VOLUME: [...]}} (the indexer's one call per event, whatever number of volumes it names),
plus the outbox routes the event agent drains (findings become events).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gridfs.common.errors import BadRequest
from gridfs.directory.role import RoleService, int_query
from gridfs.rdir.metrics import RdirCollector
from gridfs.rdir.store import RdirStore


async def _body(r: web.Request) -> dict:
    body = await r.json()
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _by_volume(body: dict, name: str) -> dict[str, Any]:
    items = body.get(name) or {}
    if not isinstance(items, dict):
        raise BadRequest(f"{name!r} must map volume ids to lists")
    return items


class RdirService(RoleService):
    kind = "rdir"

    def __init__(self, data: Path, secret: str, conscience_url: str) -> None:
        super().__init__(data, secret, conscience_url)
        self.store = RdirStore(data)
        self.metrics.register(RdirCollector(self.store))

    def apply(self, body: dict) -> dict:
        pushes, deletes = _by_volume(body, "push"), _by_volume(body, "delete")
        pushed = sum(self.store.push(v, e) for v, e in pushes.items())
        deleted = sum(self.store.delete(v, ids) for v, ids in deletes.items())
        return {"pushed": pushed, "deleted": deleted}

    def outbox_read(self, limit: int) -> dict:
        return self.store.outbox_read(limit)

    def outbox_ack(self, acks: dict[str, Any]) -> dict:
        return self.store.outbox_ack(acks)

    def outbox_backlog(self) -> int:
        return self.store.outbox_backlog()

    def routes(self) -> list[web.RouteDef]:
        s = self.store

        def on_volume(fn: Any, with_body: str | None = None) -> Any:
            async def handler(r: web.Request) -> web.Response:
                volume = r.match_info["volume"]
                arg = (await _body(r)).get(with_body) if with_body else None
                result = await self.run(fn, volume, arg) if with_body else await self.run(fn, volume)
                return web.json_response(result)

            return handler

        async def fetch(r: web.Request) -> web.Response:
            return web.json_response(await self.run(s.fetch, r.match_info["volume"], r.query.get("marker", ""),
                                                    int_query(r, "limit", 1000)))

        async def count(r: web.Request) -> web.Response:
            chunks, size = await self.run(s.totals, r.match_info["volume"])
            return web.json_response({"chunks": chunks, "bytes": size})

        async def set_job(r: web.Request) -> web.Response:
            return web.json_response(await self.run(s.set_job, r.match_info["volume"], await r.json()))

        async def drop(r: web.Request) -> web.Response:
            await self.run(s.drop, r.match_info["volume"])
            return web.json_response({"dropped": True})

        async def volumes(_: web.Request) -> web.Response:
            return web.json_response(await self.run(s.volumes))

        async def apply(r: web.Request) -> web.Response:
            return web.json_response(await self.run(self.apply, await _body(r)))

        v = "/v1/rdir/v/{volume}"
        return [
            web.post(v + "/push", on_volume(s.push, "entries")),
            web.post(v + "/delete", on_volume(s.delete, "chunk_ids")),
            web.get(v + "/fetch", fetch), web.get(v + "/count", count),
            web.get(v + "/job", on_volume(s.job)), web.put(v + "/job", set_job),
            web.post(v + "/report", on_volume(s.report, "findings")),
            web.get(v + "/findings", on_volume(s.findings)),
            web.post(v + "/findings/close", on_volume(s.close_findings, "chunk_ids")),
            web.delete(v, drop),
            web.get("/v1/rdir/volumes", volumes), web.post("/v1/rdir/apply", apply),
            *self.outbox_routes(),
        ]
