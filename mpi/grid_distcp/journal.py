"""Checkpoints for resume, and the per-file JSON log.

Each rank appends to its own journal in the job's checkpoint folder: one line per
file it stored, with the source size and mtime it copied. A rerun of the same job
(same sources, destination and mode) skips what the journals list and is still
current. The parts of a split file need no journal: each part is a durable directory
record of the unfinished upload, found again by the rerun. The folder is removed
when a job ends with every file done.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import threading
import time
from typing import Any

from grid_distcp.tasks import COMPLETE, PART, Result

FSYNC_EVERY = 1.0  # seconds: a line lost in a crash only means one file copied again


def job_id(sources: list[str], destination: str, mode: dict[str, Any]) -> str:
    """Stable across reruns of the same command, different for another job."""
    absolute = [s if "://" in s else os.path.abspath(s) for s in sources]
    blob = json.dumps({"src": absolute, "dst": destination, "mode": mode}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_folder(job: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "grid-distcp", job)


class _Appender:
    """Whole lines appended with O_APPEND from any thread, fsynced now and then."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.lock = threading.Lock()
        self.synced = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)
            if time.monotonic() - self.synced > FSYNC_EVERY:
                os.fsync(self.fd)
                self.synced = time.monotonic()

    def close(self) -> None:
        with self.lock, contextlib.suppress(OSError):
            os.fsync(self.fd)
            os.close(self.fd)


class Journal:
    def __init__(self, folder: str, rank: int) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.out = _Appender(os.path.join(folder, f"done.{rank}.jsonl"))

    def done(self, key: str, size: int, mtime: float, checksum: str) -> None:
        self.out.write({"key": key, "size": size, "mtime": mtime, "checksum": checksum})

    def close(self) -> None:
        self.out.close()

    @staticmethod
    def load(folder: str) -> dict[str, tuple[int, float]]:
        """Keys stored by earlier runs of this job, with the source size and mtime they had."""
        done: dict[str, tuple[int, float]] = {}
        for path in glob.glob(os.path.join(folder, "done.*.jsonl")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        done[rec["key"]] = (int(rec["size"]), float(rec["mtime"]))
                    except (ValueError, KeyError):
                        continue  # a line torn by the crash this journal exists for
        return done

    @staticmethod
    def remove(folder: str) -> None:
        shutil.rmtree(folder, ignore_errors=True)


class JsonLog:
    """``-log FILE``: one JSON line per file (COPY, SKIP, FAIL), per part, per delete."""

    def __init__(self, path: str | None) -> None:
        self.out = _Appender(path) if path else None

    def result(self, r: Result) -> None:
        if self.out is None:
            return
        t = r.task
        record: dict[str, Any] = {
            "status": "PART" if t.kind == PART and r.status == "COPY" else r.status,
            "path": t.entry.rel,
            "key": t.key,
            "bytes": t.entry.size if t.kind == COMPLETE else r.nbytes,
            "checksum": r.checksum,
            "verified": r.verified,
            "rank": r.rank,
            "seconds": round(r.seconds, 4),
        }
        if t.kind == PART:
            record.update(part=t.part, range=[t.offset, t.offset + t.length])
        if r.error:
            record["error"] = r.error
        self.out.write(record)

    def deleted(self, key: str, rank: int, error: str = "") -> None:
        if self.out is not None:
            self.out.write({"status": "DELETE" if not error else "FAIL", "key": key, "rank": rank,
                            **({"error": error} if error else {})})

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
