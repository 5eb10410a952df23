"""Listing the sources in parallel into a manifest.

Rank 0 lists the top level of every source; the sub-trees found there are shared out
among the ranks, each walks its share, and rank 0 gathers the entries, sorted by key.
Filters (``-filters``) drop matching relative paths here, before anything is planned.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from grid_distcp.endpoints import JobError, open_source
from grid_distcp.tasks import FileEntry
from grid_distcp.transport import bcast, gather


def excluded(rel: str, filters: list[re.Pattern[str]]) -> bool:
    return any(p.search(rel) for p in filters)


def _prefixed(entries: list[FileEntry], name: str) -> list[FileEntry]:
    for e in entries:
        e.rel = f"{name}/{e.rel}"
    return entries


def build_manifest(comm: Any, sources: list[str], filters: list[re.Pattern[str]]) -> list[FileEntry] | None:
    """The manifest on rank 0 (None on the other ranks). Raises JobError on every rank."""
    top: list[FileEntry] = []
    work: list[tuple[int, str]] = []
    names: list[str] = []
    error = ""
    if comm.rank == 0:
        try:
            for index, url in enumerate(sources):
                src = open_source(url, index)
                files, dirs = src.top()
                # A file source keeps its own name; a tree's files go under the tree's name.
                names.append(src.name if dirs or not (len(files) == 1 and files[0].rel == src.name) else "")
                top.extend(files)
                work.extend((index, d) for d in dirs)
        except (JobError, OSError) as exc:
            error = str(exc)
    error, work = bcast(comm, (error, work))
    if error:
        raise JobError(error)
    # Several sources land under their own names, one source's contents under the destination itself.
    named = len(sources) > 1
    mine: list[FileEntry] = []
    opened: dict[int, Any] = {}
    for index, rel_dir in work[comm.rank :: comm.size]:
        src = opened.setdefault(index, open_source(sources[index], index))
        found = src.walk(rel_dir)
        mine.extend(_prefixed(found, src.name) if named else found)
    if named:
        for e in top:
            e.rel = f"{names[e.source]}/{e.rel}" if names[e.source] else e.rel
    everything = gather(comm, mine)
    if comm.rank != 0:
        return None
    entries = top + [e for part in everything or [] for e in part]
    entries = [e for e in entries if not excluded(e.rel, filters)]
    entries.sort(key=lambda e: e.rel)
    return entries


def write_manifest(path: str, entries: list[FileEntry]) -> None:
    """The listing as JSON lines, written to a temporary name and renamed."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            record = {"path": e.rel, "source": e.url, "size": e.size, "mtime": e.mtime}
            if e.checksum:
                record["checksum"] = e.checksum
            if e.error:
                record["error"] = e.error
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)
