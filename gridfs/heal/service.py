"""The rebuilder: starts rebuilds on its own, one at a time.

Every ``rebuild_check`` seconds it looks at the conscience's storage servers and the reverse
index's job records, and picks one job to run, in this order:

1. a running job whose process is gone (this service before a crash, a ``grid rebuild`` that
   was killed): resumed from its marker;
2. a storage server silent for longer than ``rebuild_grace`` seconds (wall clock, from the
   conscience's ``last_seen``), not locked by an operator, whose volume has no finished
   rebuild: rebuilt. A rebuild locks the volume first, so a locked, silent volume whose
   rebuild failed (some objects could not be read or placed) is retried too, but not more
   often than every ``RETRY_FAILED`` seconds.

Config, grid.toml ``[heal]``: ``rebuild_grace`` (s, 1800), ``rebuild_rate`` (MB/s, 0 = no
cap), ``rebuild_check`` (s, 5), ``rebuild_batch`` (index entries per recorded page, 200).
A job stopped by SIGTERM stays "running" in its record and is resumed at the next start.
The last job's record is also kept in ``STATE/rebuilder.json``, readable when the reverse
index is not.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError
from gridfs.conscience.client import ConscienceClient
from gridfs.heal.jobs import BATCH, VolumeJob, owner_alive, owner_tag
from gridfs.rdir.client import RdirClient

log = logging.getLogger("gridfs.heal")
RETRY_FAILED = 60.0


class Rebuilder:
    def __init__(self, cfg: GridConfig, state: str | os.PathLike, stop: threading.Event | None = None) -> None:
        conf = cfg.extra.get("heal", {})
        self.cfg = cfg
        self.grace = float(conf.get("rebuild_grace", 1800.0))
        self.rate = float(conf.get("rebuild_rate", 0.0))
        self.check = float(conf.get("rebuild_check", 5.0))
        self.batch = int(conf.get("rebuild_batch", BATCH))
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.stop = stop or threading.Event()
        self.conscience = ConscienceClient(cfg.conscience_url, cfg.secret).quick()
        self.rdir = RdirClient(self.conscience, cfg.secret)
        self.current: dict[str, Any] | None = None
        self._job: VolumeJob | None = None
        self.finished: dict[tuple[str, str], int] = {}  # (kind, final state) -> jobs since start, for /metrics

    def run(self) -> None:
        log.info("rebuilder: grace %.0f s, rate %s MB/s, looking every %.1f s",
                 self.grace, self.rate or "unlimited", self.check)
        while not self.stop.is_set():
            try:
                self.tick()
            except (GridError, OSError) as exc:
                log.warning("rebuilder: %s", exc)
            except Exception:  # a bug must not leave the service up but looking at nothing
                log.exception("rebuilder: unexpected error, trying again in %.1f s", self.check)
            self.stop.wait(self.check)

    def tick(self) -> dict[str, Any] | None:
        """Run the next job due, if any, to its end (or to ``stop``); returns its record."""
        due = self.next_job()
        if due is None:
            return None
        volume, kind = due
        log.info("rebuilder: %s of %s", kind, volume)
        self.current = {"volume": volume, "kind": kind}
        job = self._job = VolumeJob(self.cfg, volume, kind, rate=self.rate, batch=self.batch, rdir=self.rdir,
                                    progress=lambda record: self._keep(volume, record))
        if self.stop.is_set():  # shutdown() came between the look and the job
            job.abort()
        try:
            record = job.run()
            key = (kind, str(record.get("state", "")))
            self.finished[key] = self.finished.get(key, 0) + 1
            return record
        finally:
            self.current = self._job = None

    def running_job(self) -> tuple[str, dict[str, Any]] | None:
        """The volume and live record of the job in progress, None between jobs."""
        job = self._job
        return None if job is None or not job.record else (job.volume, dict(job.record))

    def shutdown(self) -> None:
        """Stop looking, and stop the job in progress where it stands (it is resumed at the next start)."""
        self.stop.set()
        job = self._job
        if job is not None:
            job.abort()

    def next_job(self) -> tuple[str, str] | None:
        jobs = {v["volume"]: v.get("job") for v in self.rdir.volumes()}
        for volume, job in sorted(jobs.items()):
            if job and job.get("state") == "running" and (job.get("owner") == owner_tag() or not owner_alive(job)):
                return volume, str(job.get("kind", "rebuild"))
        now = time.time()
        for svc in self.conscience.services("rawx"):
            volume = svc.get("id")
            if not volume or svc.get("up", True) or now - float(svc.get("last_seen") or now) < self.grace:
                continue
            job = jobs.get(volume) or {}
            ours = job.get("kind") == "rebuild"
            if svc.get("locked") and not ours:
                continue  # locked by an operator (maintenance, a drain): theirs to decide
            if ours and job.get("state") in ("done", "stopped"):
                continue  # rebuilt, or stopped by an operator: a rerun of grid rebuild resumes it
            if ours and job.get("state") == "failed" and now - float(job.get("finished") or 0) < RETRY_FAILED:
                continue
            return volume, "rebuild"
        return None

    def _keep(self, volume: str, record: dict[str, Any]) -> None:
        path = self.state / "rebuilder.json"
        tmp = path.with_name(".rebuilder.json.tmp")
        tmp.write_text(json.dumps({"volume": volume, "job": record}, indent=1))
        os.replace(tmp, path)
