"""``python -m gridfs.rdir --config grid.toml --data DIR``: the reverse index service.

It registers with the conscience as type ``rdir`` (its id kept in DIR/service.id) and
serves the routes of :mod:`gridfs.rdir.server`.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gridfs.common.config import GridConfig
from gridfs.common.metrics import public_paths
from gridfs.common.service import base_arg_parser, bind, send_heartbeats, serve_app, setup_logging
from gridfs.rdir.server import RdirService


async def serve(args: argparse.Namespace) -> None:
    log = setup_logging("rdir", args.log_level)
    cfg = GridConfig.load(args.config)
    service = RdirService(Path(args.data), cfg.secret, cfg.conscience_url)
    sock, url = bind(args.host, args.port)
    addr = url.removeprefix("http://")
    location = args.location or f"site1.rack1.host1.{service.service_id}"
    log.info("rdir %s at %s, data in %s", service.service_id, url, args.data)

    async def background(stop: asyncio.Event) -> None:
        await send_heartbeats(cfg, lambda: service.heartbeat(addr, location), stop)

    await serve_app(service.build_app(public_paths(cfg)), sock, url, args.ready_file, background)


def main() -> None:
    p = base_arg_parser("gridfs reverse index service (rdir)")
    p.add_argument("--data", required=True)
    p.add_argument("--location", default="", help="site.rack.host.volume (default: site1.rack1.host1.<id>)")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
