"""The per-volume view of ``grid status``: what each storage volume holds and how it is kept.

Joins three sources, each asked once: the conscience (scores, lock, space, chunks held and the
last scrub, from each storage server's heartbeat), and the reverse index (chunks indexed, open scrub findings,
a rebuild or drain job with its progress). A source that does not answer leaves its columns
empty rather than failing the whole view: status is what an operator runs when things are bad.
The web console (gridfs.console) draws its picture of the cluster from the same rows.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError
from gridfs.conscience.client import ConscienceClient

log = logging.getLogger("gridfs.cli")


def job_progress(job: dict[str, Any] | None) -> str:
    """``rebuild 40 % (120/300 chunks)``, ``drain done``, or "" when there is no job."""
    if not job:
        return ""
    kind, state = job.get("kind", "job"), job.get("state", "?")
    if state != "running":
        return f"{kind} {state}"
    # "seen": index entries handled (moved, stale or skipped), the measure of how far the job got.
    done, total = int(job.get("seen", job.get("chunks_done", 0))), int(job.get("chunks_total", 0))
    share = f"{100 * done // total} % " if total else ""
    return f"{kind} {share}({done}/{total or '?'} chunks)"


def _ago(ts: Any) -> str:
    try:
        seconds = time.time() - float(ts)
    except (TypeError, ValueError):
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(0.0, seconds):.0f} s ago"


def volume_rows(cfg: GridConfig) -> list[dict[str, Any]]:
    """One row per storage volume the conscience or the reverse index knows."""
    rows: dict[str, dict[str, Any]] = {}
    try:
        for svc in ConscienceClient(cfg.conscience_url, cfg.secret).quick().services("rawx"):
            tags, stats = svc.get("tags") or {}, svc.get("stats") or {}
            rows[svc.get("id") or svc["addr"]] = {
                "volume": svc.get("id") or svc["addr"], "location": svc.get("location", ""),
                "addr": svc["addr"], "up": bool(svc.get("up", True)), "locked": bool(svc.get("locked")),
                "score_put": svc.get("score_put"), "score_get": svc.get("score_get"),
                "free_bytes": stats.get("free_bytes"), "total_bytes": stats.get("total_bytes"),
                "chunks": stats.get("chunks"), "last_scrub": tags.get("scrub_last", ""),
                "scrub_findings": tags.get("scrub_findings", ""),
            }
    except GridError as exc:
        log.warning("conscience not reachable: %s", exc)
    try:
        from gridfs.rdir.client import RdirClient

        for idx in RdirClient.for_grid(cfg).volumes():
            row = rows.setdefault(idx["volume"], {"volume": idx["volume"], "location": "", "up": False})
            row.update(indexed=idx.get("chunks"), findings=idx.get("findings", 0), job=idx.get("job"))
    except (GridError, ImportError) as exc:
        log.warning("reverse index not reachable: %s", exc)
    return sorted(rows.values(), key=lambda r: (r.get("location", ""), r["volume"]))


def volume_table_row(row: dict[str, Any]) -> list[str]:
    """Cells for: volume, location, chunks, indexed, last scrub, findings, job, state."""
    state = "up" if row.get("up") else "DOWN"
    if row.get("locked"):
        state += ", locked"
    return [row["volume"], row.get("location", ""), _cell(row.get("chunks")), _cell(row.get("indexed")),
            _ago(row.get("last_scrub")) or "never", _cell(row.get("findings")), job_progress(row.get("job")), state]


VOLUME_COLUMNS = ("volume", "location", "chunks", "indexed", "last scrub", "open findings", "job", "state")


def _cell(value: Any) -> str:
    # Heartbeat figures arrive as floats (the conscience keeps numbers): a count shows as one.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value)
