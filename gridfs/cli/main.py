"""``grid``: the command line of the grid.

Exit codes: 0 success, 1 a grid error (the message names the object and the cause),
2 a usage error.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from gridfs.client import GridClient
from gridfs.common.config import DEFAULT_DATA_DIR, GridConfig, find_config
from gridfs.common.errors import GridError
from gridfs.common.http import JsonClient
from gridfs.conscience.client import ConscienceClient

console = Console(soft_wrap=True)
MASTER_KEY_HELP = "the S3 master key file, the admin credential (default: [s3] master_key_file in grid.toml)"
err = Console(stderr=True, soft_wrap=True)


def split_target(target: str) -> tuple[str, str]:
    """``bucket/key`` or ``grid://bucket/key`` -> (bucket, key)."""
    path = target.removeprefix("grid://")
    bucket, _, key = path.partition("/")
    if not bucket:
        raise GridError(f"expected BUCKET/KEY, got {target!r}")
    return bucket, key


def _need_key(target: str) -> tuple[str, str]:
    bucket, key = split_target(target)
    if not key:
        raise GridError(f"expected BUCKET/KEY, got {target!r} (no object name)")
    return bucket, key


def _client(args: argparse.Namespace) -> GridClient:
    return GridClient(args.config, account=args.account)


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    return find_config(args.config).parent


# -- commands ---------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from gridfs.cli.local import LocalGrid

    grid = LocalGrid(args.data or DEFAULT_DATA_DIR)
    cfg = grid.up(nodes=args.nodes, volumes=args.volumes, policy=args.policy,
                  s3_port=None if args.s3_port < 0 else args.s3_port, meta2=args.meta2,
                  webhdfs_port=None if args.webhdfs_port < 0 else args.webhdfs_port, lifecycle=True,
                  functions=True, console_port=None if args.console_port < 0 else args.console_port,
                  rawx_args=["--buffered-writes"] if args.buffered_writes else None,
                  **({} if args.volume_size is None else {"volume_bytes": int(args.volume_size * (1 << 30))}))
    rawx = sum(1 for s in grid.services(cfg) if s.type == "rawx")
    meta2 = sum(1 for s in grid.services(cfg) if s.type == "meta2")
    console.print(f"grid up: {rawx} storage servers on {args.nodes} nodes, {meta2} meta2 services, "
                  f"default policy {cfg.default_policy}")
    if "url" in cfg.extra.get("s3", {}):
        console.print(f"S3 gateway: {cfg.extra['s3']['url']}  (grid user create NAME gives keys)")
    if "url" in cfg.extra.get("webhdfs", {}):
        console.print(f"WebHDFS gateway: {cfg.extra['webhdfs']['url']}  (user.name = grid account)")
    if "url" in cfg.extra.get("console", {}):
        _print_console(cfg)
    console.print(f"config: {grid.config_path}  (export GRID_CONFIG={grid.config_path})")
    return 0


def _print_console(cfg: GridConfig) -> None:
    from gridfs.console.auth import read_token, token_path

    url = cfg.extra.get("console", {}).get("url")
    if not url:
        raise GridError("no web console in grid.toml (grid up starts one unless --console-port -1)")
    console.print(f"web console: {url}  login token: {read_token(token_path(cfg))}", highlight=False)


def cmd_console(args: argparse.Namespace) -> int:
    _print_console(GridConfig.load(args.config))
    return 0


def cmd_s3_serve(args: argparse.Namespace) -> int:
    from gridfs.gateways.s3.server import run

    cfg = find_config(args.config)
    run(argparse.Namespace(config=str(cfg), host=args.host, port=args.port, workers=args.workers, ready_file=None,
                           log_level="INFO", any_port_if_busy=False, domain=args.domain))
    return 0


def cmd_webhdfs_serve(args: argparse.Namespace) -> int:
    from gridfs.gateways.webhdfs.server import run

    cfg = find_config(args.config)
    run(argparse.Namespace(config=str(cfg), host=args.host, port=args.port, workers=args.workers, ready_file=None,
                           log_level="INFO", any_port_if_busy=False, require_secret=args.require_secret))
    return 0


def cmd_webhdfs_token(args: argparse.Namespace) -> int:
    from gridfs.gateways.webhdfs.auth import Authenticator

    cfg = GridConfig.load(args.config)
    print(Authenticator(cfg.secret, True).mint(args.account, args.ttl))
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    from gridfs.gateways.s3.users import UserStore

    user = UserStore(args.config, master_key_file=args.master_key).create(args.name)
    if args.json:
        print(json.dumps({"name": user.name, "access_key": user.access_key, "secret_key": user.secret_key}))
    else:
        console.print(f"user {user.name}\naccess key: {user.access_key}\nsecret key: {user.secret_key}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from gridfs.gateways.s3.users import UserStore

    table = Table("user", "access key", "created")
    for u in sorted(UserStore(args.config, master_key_file=args.master_key).list(), key=lambda u: u.name):
        table.add_row(u.name, u.access_key, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u.created)))
    console.print(table)
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    from gridfs.gateways.s3.users import UserStore

    if not UserStore(args.config, master_key_file=args.master_key).delete(args.name):
        err.print(f"[red]error:[/] no user named {args.name!r}", highlight=False)
        return 1
    console.print(f"deleted user {args.name}")
    return 0


def cmd_notify_add(args: argparse.Namespace) -> int:
    from gridfs.events.webhooks import Endpoints, arn_of

    endpoint = Endpoints(args.config).add(args.name, args.url, replace=args.replace)
    console.print(f"endpoint {endpoint.name} -> {endpoint.url}\nname it in a bucket's TopicConfiguration as "
                  f"{arn_of(endpoint.name)}", highlight=False)
    return 0


def cmd_notify_list(args: argparse.Namespace) -> int:
    from gridfs.events.webhooks import Endpoints, arn_of

    endpoints = Endpoints(args.config).list()
    if args.json:
        print(json.dumps([{**e.__dict__, "arn": arn_of(e.name)} for e in endpoints]))
        return 0
    table = Table("endpoint", "url", "arn")
    for e in endpoints:
        table.add_row(e.name, e.url, arn_of(e.name))
    console.print(table)
    return 0


def cmd_notify_remove(args: argparse.Namespace) -> int:
    from gridfs.events.webhooks import Endpoints

    if not Endpoints(args.config).remove(args.name):
        err.print(f"[red]error:[/] no endpoint named {args.name!r}", highlight=False)
        return 1
    console.print(f"removed endpoint {args.name}: notifications naming it now fail to dead letters")
    return 0


def cmd_s3_chown(args: argparse.Namespace) -> int:
    from gridfs.gateways.s3.admin import set_owner

    before = set_owner(args.config, args.bucket, args.user, args.master_key)
    console.print(f"bucket {args.bucket}: owner {before or '(none)'} -> {args.user or '(none)'}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from gridfs.cli.local import LocalGrid

    n = LocalGrid(_data_dir(args)).down()
    console.print(f"grid down: stopped {n} processes")
    return 0


def cmd_node_add(args: argparse.Namespace) -> int:
    from gridfs.cli.local import LocalGrid

    started = LocalGrid(_data_dir(args)).add_node(volumes=args.volumes)
    for s in started:
        console.print(f"added {s.name} at {s.url} ({s.location})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from gridfs.cli.local import LocalGrid

    grid = LocalGrid(_data_dir(args))
    rows = grid.status_rows()
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    table = Table(title=f"grid {grid.config().namespace}")
    for col in ("type", "name", "id", "addr", "location", "put", "get", "free", "locked", "up"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: (r["type"], r.get("location", ""))):
        stats = r.get("stats", {})
        table.add_row(
            r["type"], r.get("name", ""), r.get("id", ""), r["addr"], r.get("location", ""),
            str(r.get("score_put", "")), str(r.get("score_get", "")),
            _human(stats["free_bytes"]) if "free_bytes" in stats else "", "yes" if r.get("locked") else "",
            "yes" if r.get("up", True) else "NO",
        )
    console.print(table)
    from gridfs.cli.volumes import VOLUME_COLUMNS, volume_rows, volume_table_row

    volumes = Table(*VOLUME_COLUMNS, title="storage volumes")
    for row in volume_rows(grid.config()):
        volumes.add_row(*volume_table_row(row))
    console.print(volumes)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    client = ConscienceClient(cfg.conscience_url, cfg.secret)
    (client.lock if args.command == "lock" else client.unlock)(args.service)
    console.print(f"{args.command}ed {args.service}")
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    from gridfs.coding.policies import all_policies

    table = Table(title="storage policies")
    for col in ("name", "method", "chunks", "overhead", "survives", ""):
        table.add_column(col)
    for p in all_policies(cfg.policies).values():
        note = "default" if p.name == cfg.default_policy else ""
        for rule in cfg.size_rules:
            if rule.policy == p.name:
                note = (note + ", " if note else "") + f"objects <= {_human(rule.max_size)}"
        table.add_row(p.name, p.describe(), str(p.width), f"{p.overhead:.2f}x", f"{p.tolerates} lost", note)
    console.print(table)
    return 0


def cmd_mb(args: argparse.Namespace) -> int:
    bucket, _ = split_target(args.bucket)
    _client(args).create_bucket(bucket, policy=args.policy or "", versioning=args.versioning)
    console.print(f"created bucket {bucket}")
    return 0


def cmd_rb(args: argparse.Namespace) -> int:
    bucket, _ = split_target(args.bucket)
    client = _client(args)
    if args.force:
        for item in list(client.iter_list(bucket)):
            if not isinstance(item, str):
                client.delete(bucket, item.key)
    client.delete_bucket(bucket)
    console.print(f"removed bucket {bucket}")
    return 0


def _with_progress(total: int, label: str, fn: Callable[[Callable[[int], Any]], Any]) -> Any:
    with _progress() as progress:
        task = progress.add_task(label, total=total)
        return fn(lambda n: progress.advance(task, n))


def cmd_put(args: argparse.Namespace) -> int:
    client = _client(args)
    bucket, key = split_target(args.target)
    src = Path(args.source) if args.source != "-" else None
    key = key or (src.name if src else "")
    if not key:
        raise GridError("reading stdin needs an object name: grid put - BUCKET/KEY")
    if src is None:
        info = client.put(bucket, key, sys.stdin.buffer, policy=args.policy)
    else:
        if not src.is_file():
            raise GridError(f"{src}: not a readable file")
        info = _with_progress(
            src.stat().st_size, f"put {key}", lambda cb: client.put(bucket, key, src, policy=args.policy, progress=cb)
        )
    console.print(f"{bucket}/{key}: {_human(info.size)} stored with {info.policy} (version {info.version})")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    client = _client(args)
    bucket, key = _need_key(args.target)
    dest = Path(args.dest) if args.dest else Path(Path(key).name)
    if dest.is_dir():
        dest = dest / Path(key).name
    info = client.head(bucket, key)
    _with_progress(info.size, f"get {key}", lambda cb: client.get_file(bucket, key, dest, progress=cb))
    console.print(f"{bucket}/{key} -> {dest} ({_human(info.size)})")
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    client = _client(args)
    bucket, key = _need_key(args.target)
    out = sys.stdout.buffer
    for piece in client.get_stream(bucket, key, offset=args.offset, length=args.length):
        out.write(piece)
    out.flush()
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    client = _client(args)
    if not args.target:
        for b in client.list_buckets():
            console.print(f"{b.bucket}\t{b.policy or 'default'}\t{b.objects} objects\t{_human(b.bytes)}")
        return 0
    bucket, prefix = split_target(args.target)
    delimiter = "" if args.recursive else "/"
    for item in client.iter_list(bucket, prefix=prefix, delimiter=delimiter):
        if isinstance(item, str):
            print(f"{'DIR':>12}  {item}")
        else:
            print(f"{item.size:>12}  {item.key}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    for target in args.targets:
        bucket, key = split_target(target)
        if args.recursive:
            for item in list(client.iter_list(bucket, prefix=key)):
                if not isinstance(item, str):
                    client.delete(bucket, item.key)
        else:
            client.delete(bucket, _need_key(target)[1], version=args.version,
                          bypass_governance=args.bypass_governance)
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    bucket, key = _need_key(args.target)
    info = _client(args).head(bucket, key)
    data = info.to_dict()
    data.pop("metachunks")
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from gridfs.admin.repair import Repairer

    client = _client(args)
    keys = args.keys or [o.key for o in client.iter_list(args.bucket) if not isinstance(o, str)]
    repairer = Repairer(client, args.bucket)
    results = [repairer.repair(key) for key in keys]
    if args.json:
        print(json.dumps([{"key": r.key, "version": r.version, "rebuilt": r.rebuilt, "lost": r.lost}
                          for r in results], indent=2))
    else:
        touched = [r for r in results if r.rebuilt or r.lost]
        table = Table("object", "rebuilt (metachunk.position)", "lost metachunks", title=f"repair of {args.bucket}")
        for r in touched:
            table.add_row(r.key, " ".join(r.rebuilt), " ".join(map(str, r.lost)))
        console.print(table if touched else f"{len(results)} objects checked: every chunk is in place")
    lost = [r for r in results if r.lost]
    for r in lost:
        err.print(f"[red]error:[/] {args.bucket}/{r.key}: metachunks {r.lost} have too few good chunks to rebuild",
                  highlight=False)
    return 1 if lost else 0


def cmd_crawl(args: argparse.Namespace) -> int:
    from gridfs.admin.crawler import crawl

    result = crawl(_client(args), older_than=args.older_than, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"scanned": result.scanned, "orphans": result.orphans, "kept_unknown": result.kept_unknown,
                          "unreachable": result.unreachable, "deleted": not args.dry_run}, indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        console.print(f"{result.scanned} chunks older than {args.older_than:g} s checked; {verb} "
                      f"{len(result.orphans)} orphans; kept {result.kept_unknown} without a container reference")
    for what in result.unreachable:
        err.print(f"[yellow]not checked:[/] {what}", highlight=False)
    return 1 if result.unreachable else 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from gridfs.admin.upgrade import upgrade

    result = upgrade(_client(args), args.buckets or None, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"versions": result.versions, "upgraded": result.upgraded, "kept": result.kept,
                          "dry_run": args.dry_run}, indent=2))
    else:
        verb = "would rewrite" if args.dry_run else "rewrote"
        console.print(f"{result.versions} object versions checked; {verb} the chunk URLs of {len(result.upgraded)}")
    for what in result.kept:
        err.print(f"[yellow]kept as it is:[/] {what}", highlight=False)
    return 1 if result.kept else 0


def cmd_locate(args: argparse.Namespace) -> int:
    bucket, key = _need_key(args.target)
    where = _client(args).locate(bucket, key)
    if args.json:
        print(json.dumps(where, indent=2, sort_keys=True))
        return 0
    obj = where["object"]
    console.print(f"[bold]{bucket}/{key}[/]  {obj['size']} bytes, {obj['policy']} ({obj['chunk_method']})")
    console.print(f"  container id  {where['cid']}")
    console.print(f"  prefix        {where['prefix']}  (meta0 at {where['meta0']})")
    console.print(f"  meta1         {where['meta1']['id']} at {where['meta1']['addr']}")
    console.print(f"  meta2         {where['meta2']['id']} at {where['meta2']['addr']}")
    for mc in obj["metachunks"]:
        console.print(f"  metachunk {mc['pos']}: bytes {mc['offset']}-{mc['offset'] + mc['size'] - 1}")
        for c in sorted(mc["chunks"], key=lambda c: c["sub"]):
            console.print(f"    {mc['pos']}.{c['sub']}  {c['url']}  {c['size']} bytes  xxh3 {c['hash']}")
        if mc.get("missing"):
            console.print(f"    missing positions (awaiting repair): {mc['missing']}")
    return 0


def event_agent(config: str | os.PathLike | None) -> JsonClient:
    """The event agent's API: ``[events] url`` in grid.toml, else the local grid's ``events`` service."""
    from gridfs.cli.local import LocalGrid

    cfg = GridConfig.load(config)
    url = cfg.extra.get("events", {}).get("url") or next(
        (s.url for s in LocalGrid(find_config(config).parent).services(cfg) if s.name == "events" and s.url), "")
    if not url:
        raise GridError("no event agent in grid.toml (no [events] url, no local service named 'events')")
    return JsonClient(url, cfg.secret, timeout=10.0)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def cmd_events(args: argparse.Namespace) -> int:
    agent = event_agent(args.config)
    if args.retry is not None:
        revived = agent.call("POST", "/v1/dead/retry", body={"ids": args.retry} if args.retry else {})["revived"]
        console.print(f"{revived} dead letters back on the retry list")
        return 0
    if args.dead:
        dead = agent.call("GET", "/v1/dead")["dead"]
        if args.json:
            print(json.dumps(dead, indent=2, sort_keys=True))
            return 0
        if not dead:
            console.print("no dead letters")
            return 0
        table = Table("id", "event", "object", "handler", "attempts", "last error", "last failed",
                      title=f"{len(dead)} dead letters (grid events --retry [ID...] replays them)")
        for d in dead:
            e, data = d["event"], d["event"].get("data", {})
            where = "/".join(str(data[k]) for k in ("bucket", "key") if data.get(k) is not None)
            table.add_row(str(d["id"]), f"{e['type']} {e['db']}#{e['id']}", escape(where), d["handler"],
                          str(d["attempts"]), escape(d["error"]), _when(d["last_failed"]))
        console.print(table)
        return 0
    status = agent.call("GET", "/v1/status")
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    console.print(f"{status['handled']} events handled and {status['failures']} handler failures since the agent "
                  f"started; {status['retries']} retries pending, {status['dead']} dead letters")
    table = Table("source", "addr", "last event handled per database", "last answer", "error")
    for s in status["sources"]:
        mine = sorted(status["positions"].get(s["id"], {}).items())
        shown = " ".join(f"{db[:12]}#{upto}" for db, upto in mine[:3]) + (f" +{len(mine) - 3}" if len(mine) > 3 else "")
        table.add_row(s["id"], s["addr"], shown, _when(s["last_ok"]), escape(s["error"]))
    console.print(table)
    return 0


# -- parser -----------------------------------------------------------------------------


def _serve_parser(sub: Any, help: str, port: int) -> argparse.ArgumentParser:
    """``grid s3 serve``, ``grid webhdfs serve``: a gateway in the foreground."""
    serve = sub.add_parser("serve", help=help)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=port)
    serve.add_argument("--workers", type=int, default=2)
    return serve


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grid", description="gridfs: grid object store")
    p.add_argument("--config", default=None, help="grid.toml (default: $GRID_CONFIG or ~/.gridfs/grid.toml)")
    p.add_argument("--account", default="default")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start a local grid")
    up.add_argument("--data", default=None, help=f"data folder (default {DEFAULT_DATA_DIR})")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--volumes", type=int, default=3)
    up.add_argument("--volume-size", type=float, default=None, metavar="GiB",
                    help="capacity of each volume: they share this machine's disk (default 16 GiB)")
    up.add_argument("--buffered-writes", action="store_true",
                    help="storage servers keep chunks in the page cache (default: O_DIRECT; docs/HDD.md)")
    up.add_argument("--policy", default=None, help="default storage policy")
    up.add_argument("--meta2", type=int, default=1, help="meta2 (container database) services to run (default 1)")
    up.add_argument("--s3-port", type=int, default=9000,
                    help="S3 gateway port (default 9000, a free one if taken; -1: no gateway)")
    up.add_argument("--webhdfs-port", type=int, default=9870,
                    help="WebHDFS gateway port (default 9870, a free one if taken; -1: no gateway)")
    up.add_argument("--console-port", type=int, default=0,
                    help="web console port on 127.0.0.1 (default 0: any free one; -1: no console)")
    up.set_defaults(fn=cmd_up)

    sub.add_parser("console", help="the web console's URL and login token").set_defaults(fn=cmd_console)

    s3 = sub.add_parser("s3", help="the S3 gateway")
    s3_sub = s3.add_subparsers(dest="s3_command", required=True)
    serve = _serve_parser(s3_sub, "run an S3 gateway in the foreground", 9000)
    serve.add_argument("--domain", default="", help="also accept virtual-hosted requests to BUCKET.DOMAIN")
    serve.set_defaults(fn=cmd_s3_serve)
    chown = s3_sub.add_parser("chown", help="give a bucket to an S3 user (\"\": to none); needs the master key")
    chown.add_argument("bucket")
    chown.add_argument("user")
    chown.add_argument("--master-key", default=None, help=MASTER_KEY_HELP)
    chown.set_defaults(fn=cmd_s3_chown)

    webhdfs = sub.add_parser("webhdfs", help="the WebHDFS gateway (webhdfs:// for Hadoop, fsspec, HdfsCLI)")
    webhdfs_sub = webhdfs.add_subparsers(dest="webhdfs_command", required=True)
    wserve = _serve_parser(webhdfs_sub, "run a WebHDFS gateway in the foreground", 9870)
    wserve.add_argument("--require-secret", action="store_true",
                        help="every call must carry delegation=TOKEN: the namespace secret or a grid webhdfs token")
    wserve.set_defaults(fn=cmd_webhdfs_serve)
    wtoken = webhdfs_sub.add_parser("token", help="print a delegation token for one account (--require-secret mode)")
    wtoken.add_argument("account")
    wtoken.add_argument("--ttl", type=float, default=24 * 3600, help="seconds it stays valid (default one day)")
    wtoken.set_defaults(fn=cmd_webhdfs_token)

    user = sub.add_parser("user", help="S3 users and their keys")
    user.add_argument("--master-key", default=None, help=MASTER_KEY_HELP)
    user_sub = user.add_subparsers(dest="user_command", required=True)
    uc = user_sub.add_parser("create", help="create a user; prints its access key and secret")
    uc.add_argument("name")
    uc.add_argument("--json", action="store_true")
    uc.set_defaults(fn=cmd_user_create)
    user_sub.add_parser("list", help="list users").set_defaults(fn=cmd_user_list)
    ud = user_sub.add_parser("delete", help="delete a user and its keys")
    ud.add_argument("name")
    ud.set_defaults(fn=cmd_user_delete)

    notify = sub.add_parser("notify", help="webhook endpoints that S3 bucket notifications may name")
    notify_sub = notify.add_subparsers(dest="notify_command", required=True)
    na = notify_sub.add_parser("add-endpoint", help="register a webhook URL under a name (its ARN is printed)")
    na.add_argument("name")
    na.add_argument("url", help="http:// or https:// URL the event agent POSTs event records to")
    na.add_argument("--replace", action="store_true", help="change the URL of an existing endpoint")
    na.set_defaults(fn=cmd_notify_add)
    nl = notify_sub.add_parser("endpoints", help="list the registered endpoints")
    nl.add_argument("--json", action="store_true")
    nl.set_defaults(fn=cmd_notify_list)
    nr = notify_sub.add_parser("remove-endpoint", help="unregister an endpoint")
    nr.add_argument("name")
    nr.set_defaults(fn=cmd_notify_remove)

    down = sub.add_parser("down", help="stop the local grid")
    down.add_argument("--data", default=None)
    down.set_defaults(fn=cmd_down)

    node = sub.add_parser("node", help="manage nodes of the local grid")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    add = node_sub.add_parser("add", help="add a node to the running grid")
    add.add_argument("--data", default=None)
    add.add_argument("--volumes", type=int, default=3)
    add.set_defaults(fn=cmd_node_add)
    from gridfs.cli import heal as heal_cli

    heal_cli.register(sub, node_sub)  # rebuild, drain, scrub, health, service remove, node remove
    from gridfs.cli import lifecycle as lifecycle_cli

    lifecycle_cli.register(sub)  # lifecycle run, status
    from gridfs.cli import functions as functions_cli

    functions_cli.register(sub)  # function add, list, logs, remove

    st = sub.add_parser("status", help="services, scores and free space")
    st.add_argument("--data", default=None)
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    for name in ("lock", "unlock"):
        lk = sub.add_parser(name, help=f"{name} a service (locked: no new writes)")
        lk.add_argument("service", help="service id (rawx-...) or address (host:port)")
        lk.set_defaults(fn=cmd_lock)

    sub.add_parser("policies", help="list storage policies").set_defaults(fn=cmd_policies)

    mb = sub.add_parser("mb", help="make a bucket")
    mb.add_argument("bucket")
    mb.add_argument("--policy", default="")
    mb.add_argument("--versioning", action="store_true")
    mb.set_defaults(fn=cmd_mb)

    rb = sub.add_parser("rb", help="remove a bucket")
    rb.add_argument("bucket")
    rb.add_argument("--force", action="store_true", help="delete its objects first")
    rb.set_defaults(fn=cmd_rb)

    put = sub.add_parser("put", help="upload a file (or - for stdin)")
    put.add_argument("source")
    put.add_argument("target", help="BUCKET/KEY, or BUCKET/ to use the file name")
    put.add_argument("--policy", default=None)
    put.set_defaults(fn=cmd_put)

    get = sub.add_parser("get", help="download an object to a file")
    get.add_argument("target")
    get.add_argument("dest", nargs="?")
    get.set_defaults(fn=cmd_get)

    cat = sub.add_parser("cat", help="write an object to stdout")
    cat.add_argument("target")
    cat.add_argument("--offset", type=int, default=0)
    cat.add_argument("--length", type=int, default=None)
    cat.set_defaults(fn=cmd_cat)

    ls = sub.add_parser("ls", help="list buckets, or objects of a bucket")
    ls.add_argument("target", nargs="?")
    ls.add_argument("-r", "--recursive", action="store_true")
    ls.set_defaults(fn=cmd_ls)

    rm = sub.add_parser("rm", help="delete objects")
    rm.add_argument("targets", nargs="+")
    rm.add_argument("-r", "--recursive", action="store_true", help="every object under the prefix")
    rm.add_argument("--version", type=int, default=None, help="delete this version (versioned buckets)")
    rm.add_argument("--bypass-governance", action="store_true",
                    help="delete a version under GOVERNANCE object-lock retention (never COMPLIANCE or a legal hold)")
    rm.set_defaults(fn=cmd_rm)

    stat = sub.add_parser("stat", help="object metadata as JSON")
    stat.add_argument("target")
    stat.set_defaults(fn=cmd_stat)

    rep = sub.add_parser("repair", help="rebuild missing, unreachable or corrupt chunks of a bucket's objects")
    rep.add_argument("bucket")
    rep.add_argument("keys", nargs="*", help="objects to repair (default: every object of the bucket)")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(fn=cmd_repair)

    cr = sub.add_parser("crawl", help="delete orphan chunks (written by clients that died before committing)")
    cr.add_argument("--older-than", type=float, default=24 * 3600.0,
                    help="only chunks at least this many seconds old (default one day)")
    cr.add_argument("--dry-run", action="store_true", help="list the orphans, delete nothing")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(fn=cmd_crawl)

    upg = sub.add_parser("upgrade", help="rewrite chunk URLs of records older than service ids "
                                         "(http://host:port/chunk/ID -> rawx://SERVICE_ID/ID)")
    upg.add_argument("buckets", nargs="*", help="buckets to upgrade (default: every bucket of the account)")
    upg.add_argument("--dry-run", action="store_true", help="count what would be rewritten, change nothing")
    upg.add_argument("--json", action="store_true")
    upg.set_defaults(fn=cmd_upgrade)

    loc = sub.add_parser("locate", help="resolution path and chunk URLs of an object")
    loc.add_argument("target")
    loc.add_argument("--json", action="store_true")
    loc.set_defaults(fn=cmd_locate)

    ev = sub.add_parser("events", help="the event agent: status, dead letters, replays")
    ev.add_argument("--dead", action="store_true", help="list the dead letters (handlers that gave up)")
    ev.add_argument("--retry", nargs="*", type=int, metavar="ID",
                    help="put these dead letters (default: all) back on the retry list")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(fn=cmd_events)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.config:
        os.environ["GRID_CONFIG"] = args.config
    try:
        return int(args.fn(args) or 0)
    except GridError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 1
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
