"""The I/O pattern a grid's storage servers asked of their disks over a benchmark phase, per GB ingested.

Reads the ``io`` counters of ``GET /info`` from every storage server the conscience lists (see
gridfs/storage/iostats.py) before and after the phase, sums the differences over the grid, and puts them
per GB of user data (and per object, for small ones): fsyncs, directory fsyncs, files created, write calls,
mean write size, bytes written per byte ingested (the policy's overhead), xattrs set.

    before = snapshot(cfg)
    ...                                        # the measured ingest
    pattern = per_gb(delta(before, snapshot(cfg)), ingested_bytes, objects)

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.http import SECRET_HEADER
from gridfs.conscience.client import ConscienceClient

GB = 1e9
SUMMED = ("bytes_written", "direct_bytes_written", "write_calls", "fsyncs", "dir_fsyncs", "files_created",
          "xattr_writes", "renames", "links", "unlinks", "bytes_read", "read_calls", "busy_seconds", "throttle_seconds")


def info(cfg: GridConfig, addr: str) -> dict[str, Any]:
    req = urllib.request.Request(f"http://{addr}/info", headers={SECRET_HEADER: cfg.secret})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def snapshot(cfg: GridConfig) -> dict[str, dict[str, Any]]:
    """Service id -> its ``io`` counters, for every storage server the conscience lists as up."""
    return {svc["id"]: info(cfg, svc["addr"])["io"]
            for svc in ConscienceClient(cfg.conscience_url, cfg.secret).services("rawx") if svc.get("up", True)}


def delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The grid's counters over the phase (servers present at both ends), write sizes merged."""
    out: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    sizes: dict[str, int] = {}
    for sid, a in after.items():
        b = before.get(sid)
        if b is None:
            continue
        for k in SUMMED:
            out[k] += a[k] - b[k]
        for size, n in a["write_sizes"].items():
            sizes[size] = sizes.get(size, 0) + n - b["write_sizes"].get(size, 0)
    out["write_sizes"] = {k: v for k, v in sorted(sizes.items(), key=lambda kv: int(kv[0])) if v}
    return out


def per_gb(d: dict[str, Any], ingested: int, objects: int) -> dict[str, Any]:
    """Figures per GB of user data ingested, and per object."""
    gb = ingested / GB
    calls = max(1, d["write_calls"])
    return {
        "ingested_bytes": ingested, "objects": objects,
        "fsyncs_per_gb": round(d["fsyncs"] / gb, 1), "dir_fsyncs_per_gb": round(d["dir_fsyncs"] / gb, 1),
        "files_per_gb": round(d["files_created"] / gb, 1), "write_calls_per_gb": round(d["write_calls"] / gb, 1),
        "xattr_writes_per_gb": round(d["xattr_writes"] / gb, 1),
        "mean_write_bytes": round(d["bytes_written"] / calls), "written_per_ingested": round(d["bytes_written"] /
                                                                                             max(1, ingested), 3),
        "mb_per_fsync": round(d["bytes_written"] / 1e6 / max(1, d["fsyncs"] + d["dir_fsyncs"]), 3),
        "per_object": {k: round(d[k] / max(1, objects), 2) for k in ("fsyncs", "dir_fsyncs", "files_created",
                                                                      "write_calls", "xattr_writes")},
        "write_sizes": d["write_sizes"], "totals": {k: d[k] for k in SUMMED},
    }
