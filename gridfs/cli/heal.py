"""``grid rebuild|drain|scrub|health`` and ``grid service|node remove``: the healing commands.

A storage server is named by its service id (``rawx-...``), its address (``host:port``) or,
in a local grid, its process name (``rawx-node2-vol1``). ``rebuild`` and ``drain`` run the
job in this process (:mod:`gridfs.heal.jobs`), or follow it when another live process (the
rebuilder service) already runs it, and take it over if that process dies. ``scrub`` asks
the storage servers' scrubbers (``POST /scrub``) and waits for them. ``health`` answers in
one line. ``service remove`` and ``node remove`` refuse to take out a volume that still
holds chunks nobody moved (drain it, or let its rebuild finish) unless ``--force``.

``--json`` prints the job record (a list of them for several volumes).

Exit codes: 0 success (``health``: nothing degraded), 1 otherwise (``rebuild``/``drain``:
objects lost or errors left).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from gridfs.cli.main import _data_dir, _human, console, err, event_agent
from gridfs.common.config import GridConfig, find_config
from gridfs.common.errors import GridError, NotFound
from gridfs.common.http import JsonClient
from gridfs.common.names import check_service_id
from gridfs.conscience.client import ConscienceClient
from gridfs.heal.jobs import BATCH, WORKERS, JobBusy, VolumeJob, owner_alive

POLL = 0.5  # s between looks at a job or a scrub run by another process


# -- naming a storage server ---------------------------------------------------------------------


def _local(args: argparse.Namespace, cfg: GridConfig) -> Any:
    """The local grid of this config, or None when the grid is not one ``grid up`` started."""
    from gridfs.cli.local import LocalGrid

    if not cfg.extra.get("local"):
        return None
    return LocalGrid(_data_dir(args) if getattr(args, "data", None) else find_config(args.config).parent)


def _local_id(svc: Any) -> str | None:
    """The service id a local storage server keeps on its volume (None before its first start)."""
    try:
        return (Path(svc.args[svc.args.index("--volume") + 1]) / "service.id").read_text().strip()
    except (ValueError, IndexError, OSError):
        return None


def resolve(args: argparse.Namespace, cfg: GridConfig, name: str) -> tuple[str, str | None]:
    """(service id, local process name or None) of a storage server named by id, address or local name."""
    local = _local(args, cfg)
    rawx = [s for s in local.services(cfg) if s.type == "rawx"] if local else []
    for svc in rawx:
        if name in (svc.name, svc.addr):
            sid = _local_id(svc)
            if sid is None:
                raise GridError(f"{name} has no service id yet (never started?)")
            return sid, svc.name
    if ":" in name:
        rows = ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx")
        sid = next((r.get("id") for r in rows if r["addr"] == name and r.get("id")), None)
        if sid is None:
            raise NotFound(f"no storage server with an id listens at {name}")
        name = sid
    check_service_id(name)
    return name, next((s.name for s in rawx if _local_id(s) == name), None)


def _rdir(cfg: GridConfig) -> Any:
    from gridfs.rdir.client import RdirClient

    return RdirClient.for_grid(cfg)


# -- rebuild and drain -----------------------------------------------------------------------------


def _job_progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    "[progress.percentage]{task.fields[moved]}", TimeRemainingColumn(), console=err,
                    transient=True, disable=not err.is_terminal)


def _follow(rdir: Any, volume: str, show: Any) -> dict[str, Any]:
    """Watch a job another process runs until it ends, or its process dies (its record then stays running)."""
    while True:
        record = rdir.job(volume) or {}
        show(record)
        if record.get("state") != "running" or not owner_alive(record):
            return record
        time.sleep(POLL)


def cmd_job(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    volumes = [resolve(args, cfg, name)[0] for name in args.services]
    if len(volumes) > 1:
        # All locked before the first starts: chunks leaving one must not land on the next one
        # (a node's volumes drained one by one would otherwise pass chunks along).
        conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
        for volume in volumes:
            with contextlib.suppress(NotFound):
                conscience.lock(volume)
    rdir = _rdir(cfg)
    records = [_run_job(args, cfg, rdir, volume) for volume in volumes]
    failed = [_report(args, volume, record) for volume, record in zip(volumes, records, strict=True)]
    if args.json:
        out = [{"volume": v, **r} for v, r in zip(volumes, records, strict=True)]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, sort_keys=True))
    return 1 if any(failed) else 0


def _run_job(args: argparse.Namespace, cfg: GridConfig, rdir: Any, volume: str) -> dict[str, Any]:
    """Run the job of one volume here, or follow it in the process that runs it (taking over if that dies)."""
    with _job_progress() as bar:
        task = bar.add_task(f"{args.command} {volume}", total=None, moved="")

        def show(record: dict[str, Any]) -> None:
            bar.update(task, total=record.get("chunks_total") or None, completed=record.get("seen", 0),
                       moved=f"{record.get('chunks_done', 0)} moved, {_human(record.get('bytes_done', 0))}")

        while True:
            job = VolumeJob(cfg, volume, args.command, rate=args.rate, batch=args.batch, workers=args.workers,
                            rdir=rdir, progress=show)
            try:
                return job.run()
            except KeyboardInterrupt:
                job.halt()  # else the rebuilder service would take the job over, against the operator's ^C
                err.print(f"{args.command} of {volume} stopped: run it again to resume it")
                raise
            except JobBusy as busy:
                err.print(f"a {busy.record.get('kind')} of {volume} is already running in "
                          f"{busy.record.get('owner')}: following it")
                record = _follow(rdir, volume, show)
                if record.get("state") != "running" and record.get("kind") == args.command:
                    return record
                # Its process died (resume it here), or another kind of job ended (start ours).


def _report(args: argparse.Namespace, volume: str, record: dict[str, Any]) -> bool:
    """Print one job's outcome (not with --json); whether it left something undone."""
    bad = record.get("state") != "done" or bool(record.get("lost"))
    if args.json:
        return bad
    seconds = float(record.get("seconds") or 0)
    rate = f", {record.get('bytes_done', 0) / seconds / 1e6:.1f} MB/s" if seconds > 0 else ""
    verb = "rebuilt" if record.get("kind") == "rebuild" else "moved"
    console.print(f"{record.get('kind')} of {volume} {record.get('state')}: {record.get('chunks_done', 0)} chunks "
                  f"{verb} ({_human(record.get('bytes_done', 0))}) in {seconds:.1f} s{rate}, "
                  f"{record.get('objects_touched', 0)} objects touched, {record.get('lost', 0)} objects lost, "
                  f"{record.get('errors', 0)} errors")
    for name in record.get("objects_lost") or []:
        console.print(f"  lost: {escape(name)}")
    if record.get("last_error"):
        console.print(f"  last error: {escape(record['last_error'])} (run it again to retry)")
    return bad


# -- scrub ---------------------------------------------------------------------------------------------


def _rawx_rows(cfg: GridConfig, args: argparse.Namespace, name: str | None) -> list[dict[str, Any]]:
    rows = [r for r in ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx") if r.get("up", True)]
    if name:
        sid, _ = resolve(args, cfg, name)
        rows = [r for r in rows if r.get("id") == sid]
        if not rows:
            raise NotFound(f"storage server {name} is not up")
    return rows


def cmd_scrub(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    rows = _rawx_rows(cfg, args, args.service)
    servers = {r.get("id") or r["addr"]: JsonClient(f"http://{r['addr']}", cfg.secret, timeout=30.0) for r in rows}
    if args.now:
        body = {"rate": args.rate} if args.rate is not None else {}
        for http in servers.values():
            http.call("POST", "/scrub", body=body)
    deadline = time.monotonic() + args.timeout
    states = {sid: http.call("GET", "/scrub") for sid, http in servers.items()}
    while args.now and any(s.get("running") for s in states.values()):
        if time.monotonic() > deadline:
            raise GridError(f"scrub still running after {args.timeout:g} s on "
                            f"{', '.join(sid for sid, s in states.items() if s.get('running'))}")
        time.sleep(POLL)
        states = {sid: http.call("GET", "/scrub") for sid, http in servers.items()}
    findings: dict[str, list[dict]] = {}
    try:
        rdir = _rdir(cfg)
        findings = {sid: rdir.findings(sid) for sid in servers}
    except GridError as exc:
        err.print(f"open findings unknown: reverse index not reachable ({exc})")
    if args.json:
        print(json.dumps([{"volume": sid, "scrub": states[sid], "findings": findings.get(sid, [])}
                          for sid in sorted(states)], indent=2, sort_keys=True))
        return 0
    table = Table("volume", "last pass finished", "chunks", "bytes", "corrupt", "missing", "open findings",
                  title="scrub")
    for sid in sorted(states):
        last = states[sid].get("last") or {}
        table.add_row(sid, _when(last.get("finished")), str(last.get("chunks", "")), _human(last.get("bytes") or 0),
                      str(last.get("corrupt", "")), str(last.get("missing", "")), str(len(findings.get(sid, []))))
    console.print(table)
    for sid, found in sorted(findings.items()):
        for f in found:
            console.print(f"  {sid} {f.get('kind')} {f.get('chunk_id')}: {escape(str(f.get('detail', '')))}")
    return 0


def _when(ts: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts))) if ts else "never"


# -- health ---------------------------------------------------------------------------------------------


def health(config: str | os.PathLike | None, cfg: GridConfig) -> dict[str, Any]:
    """What is degraded, each source asked once; a source that does not answer is a problem itself
    (``config``: where grid.toml is, to find the local grid's event agent; ``cfg``: its content)."""
    problems: list[str] = []
    notes: list[str] = []
    jobs: dict[str, dict] = {}
    findings = 0
    try:
        for v in _rdir(cfg).volumes():
            findings += int(v.get("findings") or 0)
            if v.get("job"):
                jobs[v["volume"]] = v["job"]
    except (GridError, ImportError) as exc:
        problems.append(f"reverse index not reachable ({exc})")
    up = 0
    try:
        for r in ConscienceClient(cfg.conscience_url, cfg.secret).quick().services("rawx"):
            sid = r.get("id") or r["addr"]
            job = jobs.get(sid) or {}
            if r.get("up", True):
                up += 1
            elif job.get("state") == "done":
                notes.append(f"{sid} down, {job.get('kind')} done (grid service remove {sid})")
            else:
                problems.append(f"{sid} down {time.time() - float(r.get('last_seen') or 0):.0f} s")
    except GridError as exc:
        problems.append(f"conscience not reachable ({exc})")
    for sid, job in sorted(jobs.items()):
        if job.get("state") == "running":
            total = int(job.get("chunks_total") or 0)
            share = f" {100 * int(job.get('seen', 0)) // total} %" if total else ""
            problems.append(f"{job.get('kind')} of {sid} running{share}")
        elif job.get("state") in ("failed", "stopped"):
            problems.append(f"{job.get('kind')} of {sid} {job.get('state')} ({job.get('errors')} errors)")
        if job.get("lost"):
            problems.append(f"{job.get('lost')} objects lost in the {job.get('kind')} of {sid}")
    if findings:
        problems.append(f"{findings} open scrub findings")
    retries = dead = None
    try:
        status = event_agent(config).call("GET", "/v1/status")
        retries, dead = int(status.get("retries", 0)), int(status.get("dead", 0))
        if retries:
            problems.append(f"{retries} events awaiting a retry (repairs among them)")
        if dead:
            problems.append(f"{dead} event dead letters (grid events --dead)")
    except GridError as exc:
        problems.append(f"event agent not reachable ({exc})")
    return {"ok": not problems, "problems": problems, "notes": notes, "storage_up": up, "jobs": jobs,
            "findings": findings, "retries": retries, "dead": dead}


def cmd_health(args: argparse.Namespace) -> int:
    report = health(args.config, GridConfig.load(args.config))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    elif report["ok"]:
        console.print("; ".join([f"OK: {report['storage_up']} storage servers up, nothing degraded",
                                 *report["notes"]]), highlight=False)
    else:
        console.print("DEGRADED: " + "; ".join(report["problems"] + report["notes"]), highlight=False)
    return 0 if report["ok"] else 1


# -- taking storage servers out --------------------------------------------------------------------------


def removable(cfg: GridConfig, sid: str) -> str:
    """"" when volume ``sid`` may leave the grid (empty, or rebuilt elsewhere), else why not."""
    rdir = _rdir(cfg)
    job = rdir.job(sid) or {}
    if job.get("kind") == "rebuild" and job.get("state") == "done":
        return ""
    indexed = rdir.count(sid)
    if indexed:
        return f"{sid} still holds {indexed} indexed chunks (grid drain {sid}, or grid rebuild {sid} if it is dead)"
    from gridfs.storage.client import ChunkClient

    conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
    row = next((r for r in conscience.services("rawx") if r.get("id") == sid), None)
    if row is None or not row.get("up", True):
        return "" if job.get("state") == "done" else f"{sid} is down and was never rebuilt: its content is unknown"
    left = ChunkClient(cfg.secret, timeout=30.0).list_chunks(row["addr"], older_than=0)
    return f"{sid} still has {len(left)} chunk files (wait for the garbage to be deleted)" if left else ""


def remove(args: argparse.Namespace, cfg: GridConfig, targets: list[tuple[str, str | None]]) -> None:
    if not args.force:
        refusals = [why for sid, _ in targets if (why := removable(cfg, sid))]
        if refusals:
            raise GridError("not removed: " + "; ".join(refusals) + " (--force to remove anyway)")
    local = _local(args, cfg)
    conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
    rdir = _rdir(cfg)
    for sid, name in targets:
        if name and local is not None:
            local.remove(name)  # first: a live server would register again with its next heartbeat
        with contextlib.suppress(NotFound):  # never registered, or forgotten by an earlier try
            conscience.forget(sid)
        rdir.drop(sid)
        console.print(f"removed {sid}" + (f" ({name})" if name else ""))


def cmd_service_remove(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    remove(args, cfg, [resolve(args, cfg, args.service)])
    return 0


def cmd_node_remove(args: argparse.Namespace) -> int:
    cfg = GridConfig.load(args.config)
    local = _local(args, cfg)
    if local is None:
        raise GridError("grid node remove works on a local grid (grid up); use grid service remove elsewhere")
    mine = [s for s in local.services(cfg) if s.type == "rawx" and s.location.split(".")[2:3] == [args.node]]
    if not mine:
        raise NotFound(f"no storage server of node {args.node!r} in this grid")
    targets = []
    for svc in mine:
        sid = _local_id(svc)
        if sid is None:
            raise GridError(f"{svc.name} has no service id yet (never started?)")
        targets.append((sid, svc.name))
    remove(args, cfg, targets)
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    """Rebuild volumes' reverse-index entries from the volumes themselves (after an rdir loss, or for
    chunks written while the index was not fed): the directory decides what each chunk belongs to."""
    from gridfs.rdir.reindex import reindex

    cfg = GridConfig.load(args.config)
    counts = {}
    for name in args.services:
        volume, _ = resolve(args, cfg, name)
        counts[volume] = reindex(cfg, volume)
    if args.json:
        print(json.dumps(counts, indent=2))
    else:
        for volume, n in counts.items():
            console.print(f"{volume}: {n} chunks indexed")
    return 0


# -- parser ------------------------------------------------------------------------------------------------


def register(sub: Any, node_sub: Any) -> None:
    """Add the healing commands to ``grid`` (``sub``) and ``grid node`` (``node_sub``)."""
    for name, help in (("rebuild", "rebuild every chunk a lost storage volume held onto the others"),
                       ("drain", "move every chunk off a storage volume (reads go on meanwhile)")):
        job = sub.add_parser(name, help=help)
        job.add_argument("services", nargs="+", metavar="SERVICE",
                         help="service id (rawx-...), address (host:port) or local name (rawx-node1-vol1); "
                              "several are all locked first, then done one after the other")
        job.add_argument("--rate", type=float, default=0.0, help="MB/s written at most (default 0: no cap)")
        job.add_argument("--batch", type=int, default=BATCH,
                         help=f"index entries per recorded step (a resume starts from the last one; default {BATCH})")
        job.add_argument("--workers", type=int, default=WORKERS,
                         help=f"objects handled at once (default {WORKERS})")
        job.add_argument("--json", action="store_true")
        job.set_defaults(fn=cmd_job)

    scrub = sub.add_parser("scrub", help="storage servers' checksum scrub: state, or a pass now (--now)")
    scrub.add_argument("service", nargs="?", help="one storage server (default: every one that is up)")
    scrub.add_argument("--now", action="store_true", help="start a pass now and wait for it")
    scrub.add_argument("--rate", type=float, default=None, help="MB/s per volume for this pass (0: no cap)")
    scrub.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the pass (default 3600)")
    scrub.add_argument("--json", action="store_true")
    scrub.set_defaults(fn=cmd_scrub)

    rx = sub.add_parser("reindex", help="rebuild storage volumes' reverse index from the volumes themselves")
    rx.add_argument("services", nargs="+", metavar="SERVICE", help="service id, address or local name")
    rx.add_argument("--data", default=None)
    rx.add_argument("--json", action="store_true")
    rx.set_defaults(fn=cmd_reindex)

    health_p = sub.add_parser("health", help="one line: OK, or DEGRADED and what (exit 1)")
    health_p.add_argument("--json", action="store_true")
    health_p.set_defaults(fn=cmd_health)

    service = sub.add_parser("service", help="take storage servers out of the grid")
    service_sub = service.add_subparsers(dest="service_command", required=True)
    srm = service_sub.add_parser("remove", help="stop a drained or rebuilt storage server and forget it")
    srm.add_argument("service", help="service id, address or local name")
    srm.add_argument("--force", action="store_true", help="even if its volume still holds chunks")
    srm.add_argument("--data", default=None)
    srm.set_defaults(fn=cmd_service_remove)

    nrm = node_sub.add_parser("remove", help="stop and forget every storage server of a drained or rebuilt node")
    nrm.add_argument("node", help="node name (node3)")
    nrm.add_argument("--force", action="store_true", help="even if its volumes still hold chunks")
    nrm.add_argument("--data", default=None)
    nrm.set_defaults(fn=cmd_node_remove)
