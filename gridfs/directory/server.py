"""``python -m gridfs.directory --role meta0|meta1|meta2``: one directory role per process.

meta0 (prefix table), meta1 (container -> meta2 service) and meta2 (container databases)
run as services of their own, each with a data folder, a service id, and a heartbeat to
the conscience; see ``meta0.py``, ``meta1.py`` and ``meta2.py`` for their routes.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gridfs.common.config import GridConfig
from gridfs.common.metrics import public_paths
from gridfs.common.service import base_arg_parser, bind, send_heartbeats, serve_app, setup_logging
from gridfs.directory.meta0 import Meta0Service
from gridfs.directory.meta1 import Meta1Service
from gridfs.directory.meta2 import Meta2Service
from gridfs.directory.role import RoleService

ROLES: dict[str, type[RoleService]] = {"meta0": Meta0Service, "meta1": Meta1Service, "meta2": Meta2Service}


async def serve(args: argparse.Namespace) -> None:
    log = setup_logging(args.role, args.log_level)
    cfg = GridConfig.load(args.config)
    service = ROLES[args.role](Path(args.data), cfg.secret, cfg.conscience_url)
    service.capacity = args.capacity
    sock, url = bind(args.host, args.port)
    addr = url.removeprefix("http://")
    location = args.location or f"site1.rack1.host1.{service.service_id}"
    log.info("%s %s at %s, data in %s", args.role, service.service_id, url, args.data)

    async def background(stop: asyncio.Event) -> None:
        beats = asyncio.create_task(send_heartbeats(cfg, lambda: service.heartbeat(addr, location), stop))
        if isinstance(service, Meta0Service):
            await service.assign_when_ready(stop)
        await beats

    await serve_app(service.build_app(public_paths(cfg)), sock, url, args.ready_file, background)


def main() -> None:
    p = base_arg_parser("gridfs directory service (meta0, meta1 or meta2)")
    p.add_argument("--role", required=True, choices=sorted(ROLES))
    p.add_argument("--data", required=True)
    p.add_argument("--location", default="", help="site.rack.host.volume (default: site1.rack1.host1.<id>)")
    p.add_argument("--capacity", type=int, default=None,
                   help="bytes of the disk counted as this service's (default: the whole disk's)")
    asyncio.run(serve(p.parse_args()))
