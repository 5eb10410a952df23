"""What the console's JSON API answers, gathered by the code the command line uses.

The cluster picture is ``grid status``'s per-volume rows (:func:`gridfs.cli.volumes.volume_rows`) with the
sampler's findings joined in; the health line is ``grid health``'s report (the server calls
:func:`gridfs.cli.heal.health` as it is); dead letters and their replay go to the event agent that
``grid events`` finds; locks go through the conscience client as ``grid lock`` does. These functions
block (the clients are synchronous): the server runs them on threads.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridfs.cli.main import event_agent
from gridfs.cli.volumes import job_progress, volume_rows
from gridfs.common.config import DEFAULT_ACCOUNT, GridConfig
from gridfs.common.errors import NotFound
from gridfs.common.names import check_service_id
from gridfs.conscience.client import ConscienceClient
from gridfs.console.sampler import Sampler
from gridfs.directory.client import DirectoryClient


def cluster(cfg: GridConfig, sampler: Sampler) -> dict[str, Any]:
    """Every storage volume with its place (site.rack.host.volume), scores, space, lock and state, and the
    jobs running on them."""
    rows = volume_rows(cfg)
    for row in rows:
        row["reachable"] = row["volume"] not in sampler.unreachable
        # Dead: the conscience lists it silent, or its port refused the last scrape (killed moments ago).
        row["dead"] = not row.get("up") or not row["reachable"]
        if row.get("job"):
            row["job_label"] = job_progress(row["job"])
    return {"namespace": cfg.namespace, "volumes": rows, "jobs": jobs(rows, sampler)}


def jobs(rows: list[dict[str, Any]], sampler: Sampler) -> list[dict[str, Any]]:
    """Rebuilds and drains (the reverse index's job records) and scrub passes (the servers' own) in progress."""
    out = []
    for row in rows:
        job = row.get("job") or {}
        if job.get("state") == "running":
            # "seen": index entries handled, the measure of how far a job got (as grid status shows it).
            out.append({"kind": job.get("kind", "job"), "volume": row["volume"], "location": row.get("location", ""),
                        "done": int(job.get("seen", job.get("chunks_done", 0))),
                        "total": int(job.get("chunks_total") or 0), "label": job_progress(job)})
    for volume, scrub in sorted(sampler.scrub.items()):
        if scrub["running"]:
            location = next((r.get("location", "") for r in rows if r["volume"] == volume), "")
            out.append({"kind": "scrub", "volume": volume, "location": location, "done": scrub["done"],
                        "total": scrub["total"], "label": f"scrub ({scrub['done']}/{scrub['total']} chunks)"})
    return out


def buckets(cfg: GridConfig, accounts: list[str]) -> list[dict[str, Any]]:
    """The buckets of ``accounts`` with objects, bytes and storage policy (properties are left out: they hold
    S3 owners and sealed keys)."""
    directory = DirectoryClient(cfg.directory_url, cfg.secret)
    out = []
    for account in accounts:
        for info in directory.list_containers(account):
            out.append({"account": account, "bucket": info.bucket, "objects": info.objects, "bytes": info.bytes,
                        "policy": info.policy or f"default ({cfg.default_policy})", "versioning": info.versioning})
    return out


def accounts(cfg: GridConfig) -> list[str]:
    """``[console] accounts`` in grid.toml (the directory lists buckets per account, not all at once)."""
    named = cfg.extra.get("console", {}).get("accounts")
    return [str(a) for a in named] if isinstance(named, list) and named else [DEFAULT_ACCOUNT]


def dead_letters(config: Path) -> list[dict[str, Any]]:
    return list(event_agent(config).call("GET", "/v1/dead")["dead"])


def retry(config: Path, ids: list[int] | None) -> int:
    """Dead letters back on the retry list (``ids`` None: all of them); how many."""
    return int(event_agent(config).call("POST", "/v1/dead/retry", body={"ids": ids} if ids else {})["revived"])


def set_lock(cfg: GridConfig, volume: str, locked: bool) -> None:
    """Lock (no new writes) or unlock a storage volume named by its service id."""
    check_service_id(volume)
    conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
    if not any(r.get("id") == volume for r in conscience.services("rawx")):
        raise NotFound(f"no storage volume {volume} is registered")  # the console locks volumes, nothing else
    (conscience.lock if locked else conscience.unlock)(volume)
