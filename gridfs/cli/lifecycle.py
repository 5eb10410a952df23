"""``grid lifecycle``: run the buckets' lifecycle rules now, and see what the worker did.

``run`` does one pass in the foreground (the same work as the lifecycle service's passes, at the
configured rate unless ``--rate`` says otherwise); ``status`` shows the last pass and the last actions
of the log both write (``lifecycle/lifecycle.log`` beside grid.toml, JSON lines).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from gridfs.cli.main import console
from gridfs.common.config import GridConfig, find_config


def _state(args: argparse.Namespace) -> Path:
    return find_config(args.config).parent / "lifecycle"


def cmd_run(args: argparse.Namespace) -> int:
    from gridfs.lifecycle.worker import LifecycleWorker
    cfg = GridConfig.load(find_config(args.config))
    if args.rate is not None:
        cfg.extra["lifecycle"] = {**cfg.extra.get("lifecycle", {}), "rate": args.rate}
    summary = LifecycleWorker(cfg, _state(args)).run_once(args.bucket).to_dict()
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    done = ", ".join(f"{n} {kind}" for kind, n in sorted(summary["done"].items())) or "nothing to do"
    console.print(f"lifecycle: {summary['buckets']} buckets with rules, {summary['examined']} versions looked at; "
                  f"{done}; {summary['locked']} left alone (object lock), {summary['errors']} errors")
    return 1 if summary["errors"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from gridfs.lifecycle.worker import read_log, read_status
    status, entries = read_status(_state(args)), read_log(_state(args), args.last)
    if args.json:
        print(json.dumps({"status": status, "log": entries}, indent=2, sort_keys=True))
        return 0
    if status is None:
        console.print("the lifecycle worker has not run yet")
        return 0
    console.print(("a pass is running: " if status["running"] else "last pass: ")
                  + json.dumps({k: status[k] for k in ("buckets", "examined", "done", "locked", "errors")}))
    table = Table("time", "bucket", "key", "version", "action", "rule", "result", title="last actions")
    for e in entries:
        table.add_row(e["time"], escape(e["bucket"]), escape(e["key"]), str(e.get("version", "")), e["action"],
                      escape(e["rule"]), e["result"] + (f": {escape(e['detail'])}" if e.get("detail") else ""))
    console.print(table)
    return 0


def register(sub: Any) -> None:
    """Add ``grid lifecycle run|status``."""
    lc = sub.add_parser("lifecycle", help="the lifecycle rules: run them now, see what was done")
    lc_sub = lc.add_subparsers(dest="lifecycle_command", required=True)
    run = lc_sub.add_parser("run", help="one pass over the buckets' lifecycle rules, now, in the foreground")
    run.add_argument("--bucket", default=None, help="only this bucket")
    run.add_argument("--rate", type=float, default=None, help="actions per second at most (default [lifecycle] rate)")
    run.add_argument("--json", action="store_true")
    run.set_defaults(fn=cmd_run)
    st = lc_sub.add_parser("status", help="the last pass and the last actions of the log")
    st.add_argument("-n", "--last", type=int, default=20, help="how many actions (default 20)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)
