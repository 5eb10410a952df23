"""``grid function add|list|logs|remove``: user functions run by the grid on object events.

``add`` signs the function's spec with the namespace secret of grid.toml and stores it in the
grid (see :mod:`gridfs.functions.registry`): only an operator holding that secret can register
code for the grid to run. ``logs`` reads the event agent's bounded log of each call.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from gridfs.cli.main import _when, console, event_agent
from gridfs.client import GridClient
from gridfs.functions.registry import (
    ACCOUNT,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    EVENT_TYPES,
    FunctionRegistry,
    FunctionSpec,
)


def _registry(args: argparse.Namespace) -> FunctionRegistry:
    return FunctionRegistry(GridClient(args.config, account=ACCOUNT))


def cmd_add(args: argparse.Namespace) -> int:
    on = tuple(dict.fromkeys(o.strip() for value in args.on for o in value.split(",") if o.strip()))
    source = Path(args.source).read_text() if args.source else ""
    spec = FunctionSpec(args.name, on, args.run, account=args.account, bucket=args.bucket, prefix=args.prefix,
                        timeout=args.timeout, memory_mb=args.memory, source=source)
    _registry(args).add(spec, replace_existing=args.replace)
    console.print(f"function {spec.name}: {spec.run} on {','.join(on)} of {spec.account}/{spec.bucket or '*'}"
                  f"/{spec.prefix}* ({spec.timeout:g} s, {spec.memory_mb} MiB per call)", highlight=False)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    specs = sorted(_registry(args).list(), key=lambda s: s.name)
    if args.json:
        print(json.dumps([{k: v for k, v in s.to_dict().items() if k != "source"} | {"source": bool(s.source)}
                          for s in specs], indent=2, sort_keys=True))
        return 0
    table = Table("name", "on", "account", "bucket", "prefix", "run", "limits", "registered")
    for s in specs:
        table.add_row(s.name, ",".join(s.on), s.account, escape(s.bucket or "*"), escape(s.prefix),
                      s.run + (" (source kept)" if s.source else ""), f"{s.timeout:g} s, {s.memory_mb} MiB",
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created)))
    console.print(table)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    _registry(args).get(args.name)  # NoSuchObject for a name never registered
    agent = event_agent(args.config)
    calls = agent.call("GET", f"/v1/functions/{args.name}/calls", params={"limit": args.last})["calls"]
    if args.json:
        print(json.dumps(calls, indent=2, sort_keys=True))
        return 0
    for c in calls:
        state = "[green]ok[/]" if c["ok"] else f"[red]failed[/] {escape(c['error'])}"
        console.print(f"{_when(c['ts'])}  {c['event']} {escape(c['target'])}  on {c['node']}  "
                      f"{c['seconds']:.2f} s  {state}", highlight=False)
        if c["stderr"] and (args.stderr or not c["ok"]):
            console.print(escape(c["stderr"].rstrip()), style="dim", highlight=False)
    if not calls:
        console.print(f"no calls of {args.name} yet")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    _registry(args).remove(args.name)
    console.print(f"removed function {args.name} (agents drop it within a few seconds)")
    return 0


def register(sub: Any) -> None:
    """Add ``grid function add|list|logs|remove``."""
    fn = sub.add_parser("function", help="user functions run on object events (needs the namespace secret)")
    fn_sub = fn.add_subparsers(dest="function_command", required=True)
    add = fn_sub.add_parser("add", help="register a function (the account is --account's)")
    add.add_argument("name")
    add.add_argument("--on", action="append", required=True, metavar="EVENT",
                     help=f"{'|'.join(EVENT_TYPES)} (repeat, or comma-separated)")
    add.add_argument("--bucket", default="", help="only this bucket's objects (default: every bucket)")
    add.add_argument("--prefix", default="", help="only keys starting with this")
    add.add_argument("--run", required=True, metavar="MODULE:FUNC", help="called as FUNC(event, client)")
    add.add_argument("--source", default=None, metavar="FILE.py",
                     help="keep this file's text as MODULE in the grid (when it is not installed on the nodes)")
    add.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"s per call (default {DEFAULT_TIMEOUT:g})")
    add.add_argument("--memory", type=int, default=DEFAULT_MEMORY, help=f"MiB per call (default {DEFAULT_MEMORY})")
    add.add_argument("--replace", action="store_true", help="replace a function of that name")
    add.set_defaults(fn=cmd_add)
    ls = fn_sub.add_parser("list", help="the registered functions")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=cmd_list)
    logs = fn_sub.add_parser("logs", help="a function's last calls: outcome, node, error and stderr")
    logs.add_argument("name")
    logs.add_argument("-n", "--last", type=int, default=50)
    logs.add_argument("--stderr", action="store_true", help="stderr of successful calls too")
    logs.add_argument("--json", action="store_true")
    logs.set_defaults(fn=cmd_logs)
    rm = fn_sub.add_parser("remove", help="unregister a function")
    rm.add_argument("name")
    rm.set_defaults(fn=cmd_remove)
