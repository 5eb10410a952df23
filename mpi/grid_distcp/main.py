"""``grid-distcp``: the job, phase by phase.

1. every rank lists part of the sources; rank 0 gathers the manifest;
2. rank 0 plans against the destination (and creates the bucket unless -no-create);
3. every rank copies what the coordinator hands it, rank 0 included;
4. rank 0 renames the staged objects into place (-atomic), deletes (-delete), reports.

Exit codes: 0 every file done; 1 some files failed (listed); 2 bad arguments or an
unusable source or destination, nothing copied; 3 the grid became unreachable (rerun
the same command to resume).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from grid_distcp.coordinator import Coordinator
from grid_distcp.endpoints import JobError, open_destination
from grid_distcp.journal import Journal, JsonLog, default_folder, job_id
from grid_distcp.manifest import build_manifest, write_manifest
from grid_distcp.options import Options, parse
from grid_distcp.plan import Plan, make_plan
from grid_distcp.report import LiveProgress, print_report, say, summary
from grid_distcp.transport import LocalQueue, QueueServer, RemoteQueue, bcast, quiet_wait
from grid_distcp.worker import Worker

OK, FAILED_FILES, UNUSABLE, GRID_DOWN = 0, 1, 2, 3


def _describe(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, ConnectionError):
        return GRID_DOWN, f"the grid is unreachable: {exc}"
    return UNUSABLE, str(exc)


def _prepare(comm: Any, opts: Options, dest: Any, staging: str, folder: str) -> tuple[int, str, Plan | None]:
    """Phases 1 and 2. Returns an exit code and message on failure, else the plan on rank 0."""
    try:
        entries = build_manifest(comm, opts.sources, opts.filters)
    except JobError as exc:
        return UNUSABLE, str(exc), None
    failure: tuple[int, str] = (OK, "")
    plan = None
    if comm.rank == 0:
        try:
            if opts.manifest:
                write_manifest(opts.manifest, entries or [])
            if not opts.dry_run and dest.ensure_bucket(not opts.no_create, opts.policy):
                say(f"created the destination bucket {dest.bucket!r}" if hasattr(dest, "bucket")
                              else "created the destination folder")
            plan = make_plan(entries or [], dest, opts, Journal.load(folder), staging)
        except (JobError, OSError, ValueError) as exc:
            failure = _describe(exc)
    code, message = bcast(comm, failure)
    return code, message, plan


def _finalize(opts: Options, dest: Any, staging: str, coordinator: Coordinator, log: JsonLog,
              plan: Plan) -> tuple[int, str]:
    """Phase 4 on rank 0: atomic commit, deletes. Returns deleted count and an error."""
    if coordinator.abort_reason or coordinator.counts()["FAIL"]:
        return 0, ""
    with ThreadPoolExecutor(16) as pool:
        if staging:
            staged = dest.existing(staging)
            list(pool.map(lambda rel: dest.rename(dest.key(rel, staging), dest.key(rel)), staged))

        def remove(key: str) -> bool:
            try:
                dest.delete(key)
                log.deleted(key, 0)
                return True
            except (OSError, ValueError) as exc:
                log.deleted(key, 0, str(exc))
                return False

        deleted = sum(pool.map(remove, plan.deletes))
    return deleted, "" if deleted == len(plan.deletes) else f"{len(plan.deletes) - deleted} deletes failed"


def _dry_run(plan: Plan) -> None:
    say(f"would copy {plan.files_to_copy} files ({plan.bytes_to_copy:,} bytes) in {len(plan.tasks)} tasks, "
                  f"skip or fail {len(plan.settled)}, delete {len(plan.deletes)}")
    for t in plan.tasks[:50]:
        say(f"  {t.kind:8} {t.entry.rel} -> {t.key}" + (f" part {t.part}/{t.parts}" if t.parts else ""))
    for r in plan.settled[:50]:
        say(f"  {r.status:8} {r.task.entry.rel}: {r.error}")
    for key in plan.deletes[:50]:
        say(f"  DELETE   {key}")


def run(comm: Any, opts: Options) -> int:
    rank = comm.rank
    started = time.monotonic()
    mode = {"atomic": opts.atomic, "policy": opts.policy, "overwrite": opts.overwrite, "update": opts.update,
            "preserve": opts.preserve}
    job = job_id(opts.sources, opts.destination, mode)
    folder = opts.checkpoint or default_folder(job)
    staging = f".distcp-tmp-{job}" if opts.atomic else ""
    try:
        dest = open_destination(opts.destination, opts.config)
    except (JobError, OSError, ValueError) as exc:
        if rank == 0:
            say(f"grid-distcp: {exc}", "red")
        return UNUSABLE
    code, message, plan = _prepare(comm, opts, dest, staging, folder)
    if code:
        if rank == 0:
            say(f"grid-distcp: {message}", "red")
        return code
    if opts.dry_run:
        if rank == 0 and plan is not None:
            _dry_run(plan)
        return OK

    journal = Journal(folder, rank)
    log = JsonLog(opts.log)
    coordinator = None
    try:
        if rank == 0:
            assert plan is not None
            live = LiveProgress(plan.bytes_to_copy, plan.files_to_copy, enabled=not opts.quiet)
            coordinator = Coordinator(plan.tasks, comm.size, live.add_bytes, live.add_file)
            coordinator.results.extend(plan.settled)
            for r in plan.settled:
                log.result(r)
            server = QueueServer(comm, coordinator) if comm.size > 1 else None
            with live:
                if server:
                    server.start()
                Worker(0, opts, dest, LocalQueue(coordinator), journal, log).run()
                if server:
                    server.join()
            if server and server.error:
                raise server.error
        else:
            Worker(rank, opts, dest, RemoteQueue(comm), journal, log).run()
    finally:
        journal.close()
    quiet_wait(comm)

    exit_code = OK
    if rank == 0:
        assert coordinator is not None and plan is not None
        deleted, delete_error = _finalize(opts, dest, staging, coordinator, log, plan)
        report = summary(coordinator, time.monotonic() - started, deleted,
                         {"job": job, "ranks_n": comm.size, "aborted": coordinator.abort_reason})
        print_report(report)
        if os.environ.get("GRID_DISTCP_REPORT"):
            with open(os.environ["GRID_DISTCP_REPORT"], "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)
        if coordinator.abort_reason:
            say(f"grid-distcp: stopped, the grid is unreachable: {coordinator.abort_reason}. "
                "Run the same command again to resume.", "red")
            exit_code = GRID_DOWN
        elif report["files_failed"] or delete_error:
            if delete_error:
                say(f"grid-distcp: {delete_error}", "red")
            exit_code = FAILED_FILES
        else:
            Journal.remove(folder)
    log.close()
    return bcast(comm, exit_code)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    from mpi4py import MPI

    code = run(MPI.COMM_WORLD, opts)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
