"""What to do with each file: copy, split into parts, check, skip or fail, and what to delete.

Runs on rank 0 against one listing of the destination. The rules follow DistCp:
by default a file the destination already has is skipped; ``-update`` copies it again
unless size and mtime match (``-verify``: and the checksums); ``-overwrite`` copies
everything. Files the journal of an earlier, interrupted run of the same job stored
are skipped. Split files reuse the unfinished upload of that earlier run, and the
parts it already stored are only checked against the source, not sent again.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from grid_distcp.endpoints import PARTS_PROP, Existing, JobError, fmt_mtime
from grid_distcp.manifest import excluded
from grid_distcp.options import Options
from grid_distcp.tasks import CHECK, COPY, FAILED, PART, SKIPPED, FileEntry, Result, Task
from grid_distcp.worker import object_properties

MAX_PARTS = 10000


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    settled: list[Result] = field(default_factory=list)  # skipped or failed without any copying
    deletes: list[str] = field(default_factory=list)
    bytes_to_copy: int = 0

    @property
    def files_to_copy(self) -> int:
        return len({t.key for t in self.tasks})


def _skip(entry: FileEntry, key: str, why: str) -> Result:
    return Result(Task(COPY, entry, key), SKIPPED, error=why)


def _fail(entry: FileEntry, key: str, why: str) -> Result:
    return Result(Task(COPY, entry, key), FAILED, error=why)


def make_plan(
    entries: list[FileEntry], dest: Any, opts: Options, journal: dict[str, tuple[int, float]], staging: str
) -> Plan:
    plan = Plan()
    existing = dest.existing()
    for e in entries:
        key = dest.key(e.rel, staging)
        if e.error:
            plan.settled.append(_fail(e, key, e.error))
            continue
        if problem := dest.validate(key):
            plan.settled.append(_fail(e, key, problem))
            continue
        if journal.get(key) == (e.size, e.mtime):
            plan.settled.append(_skip(e, key, "stored by an earlier run of this job"))
            continue
        have = existing.get(e.rel)
        if have is not None and not opts.overwrite:
            if not opts.update:
                plan.settled.append(_skip(e, key, "exists at the destination"))
                continue
            if have.size == e.size and fmt_mtime(have.mtime) == fmt_mtime(e.mtime):
                if opts.verify:
                    plan.tasks.append(Task(CHECK, e, key, expected=_stored_checksum(have)))
                else:
                    plan.settled.append(_skip(e, key, "same size and mtime"))
                continue
        plan.bytes_to_copy += e.size
        if dest.splits and e.size >= opts.split_size:
            plan.tasks.extend(_split(e, key, dest, opts))
        else:
            plan.tasks.append(Task(COPY, e, key))
    if opts.delete:
        wanted = {e.rel for e in entries}
        plan.deletes = sorted(dest.key(rel) for rel in existing
                              if rel not in wanted and not excluded(rel, opts.filters))
        if len(plan.deletes) > opts.max_delete:
            raise JobError(f"-delete would remove {len(plan.deletes)} objects, more than -max-delete "
                           f"{opts.max_delete}; nothing was changed")
    return plan


def _stored_checksum(have: Existing) -> str:
    return have.properties.get(PARTS_PROP) or have.checksum


def _split(e: FileEntry, key: str, dest: Any, opts: Options) -> list[Task]:
    part_size = dest.part_size(opts.policy, opts.part_size)
    if math.ceil(e.size / part_size) > MAX_PARTS:
        part_size = math.ceil(e.size / MAX_PARTS / part_size) * part_size
    count = math.ceil(e.size / part_size)
    if opts.dry_run:
        upload_id, stored = "", {}
    else:
        upload_id, stored = dest.start_upload(key, opts.policy, object_properties(e, opts.preserve))
    return [
        Task(PART, e, key, part=n, offset=(n - 1) * part_size, length=min(part_size, e.size - (n - 1) * part_size),
             upload_id=upload_id, parts=count, expected=stored.get(n, ""))
        for n in range(1, count + 1)
    ]
