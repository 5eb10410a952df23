"""The lifecycle worker: executes the buckets' lifecycle rules, at a bounded rate, and logs each action.

One pass looks at every bucket of the configured accounts that has rules, walks its versions key by key
(newest first, as the directory lists them) and its multipart uploads, and acts:

- a current version older than ``Days`` (rounded up to the next day's start, as S3 counts; or past
  ``Date``) expires: a plain delete, which in a versioned
  bucket only adds a delete marker (as in S3);
- a noncurrent version expires ``NoncurrentDays`` after it became noncurrent (when the next newer version
  was written), the newest ``NewerNoncurrentVersions`` of them kept;
- a delete marker left with no version behind it is removed (``ExpiredObjectDeleteMarker``, or once it is
  older than an Expiration's ``Days``);
- a multipart upload older than ``DaysAfterInitiation`` is aborted.

Object lock is the directory's to enforce: a locked version refuses its delete, and the worker logs it as
``locked`` and leaves it. Every action goes to a JSON-lines log (``STATE/lifecycle.log``) with its
outcome; the last pass's summary is ``STATE/status.json``.

Config, grid.toml ``[lifecycle]``: ``rate`` (actions per second, 50), ``interval`` (s between passes,
3600), ``day_seconds`` (the length of a rule's day, 86400: tests shorten it), ``accounts`` (["default"]),
``log_max_bytes`` (64 MiB, then the log is rotated once).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridfs.client import GridClient
from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError, NoSuchObject, NoSuchUpload, ObjectLocked
from gridfs.directory.model import ContainerInfo, ObjectInfo
from gridfs.lifecycle.rules import LIFECYCLE_PROP, TAGS_PROP, Rule, load

log = logging.getLogger("gridfs.lifecycle")
LOG_NAME, STATUS_NAME = "lifecycle.log", "status.json"
LOG_MAX_BYTES = 64 * 1024 * 1024
DAY = 86400.0


def _tags(info: ObjectInfo) -> dict[str, str]:
    try:
        tags = json.loads(info.properties.get(TAGS_PROP) or "{}")
    except ValueError:
        return {}
    return tags if isinstance(tags, dict) else {}


@dataclass
class Pass:
    """What one pass did: actions by kind and outcome."""

    started: float = field(default_factory=time.time)
    finished: float = 0.0
    buckets: int = 0
    examined: int = 0
    done: dict[str, int] = field(default_factory=dict)
    locked: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Pacer:
    """At most ``rate`` actions a second (0: no cap), spread evenly."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.stop = stop

    def wait(self) -> None:
        now = time.monotonic()
        if self.next > now:
            self.stop.wait(self.next - now)
        self.next = max(now, self.next) + self.gap


class LifecycleWorker:
    def __init__(self, cfg: GridConfig, state: str | os.PathLike, stop: threading.Event | None = None) -> None:
        conf = cfg.extra.get("lifecycle", {})
        self.cfg = cfg
        self.rate = float(conf.get("rate", 50.0))
        self.interval = float(conf.get("interval", 3600.0))
        self.day = float(conf.get("day_seconds", DAY))
        self.accounts = [str(a) for a in conf.get("accounts", ["default"])]
        self.log_max_bytes = int(conf.get("log_max_bytes", LOG_MAX_BYTES))
        self.state = Path(state)
        self.state.mkdir(parents=True, exist_ok=True)
        self.stop = stop or threading.Event()
        self._log_lock = threading.Lock()

    # -- the service's loop ---------------------------------------------------------------------

    def run(self) -> None:
        log.info("lifecycle: a pass every %.0f s, %s actions/s, a day is %.0f s", self.interval,
                 self.rate or "unlimited", self.day)
        while not self.stop.is_set():
            try:
                self.run_once()
            except (GridError, OSError) as exc:
                log.warning("lifecycle: %s", exc)
            except Exception:  # a bug must not leave the service up but doing nothing
                log.exception("lifecycle: unexpected error, trying again in %.0f s", self.interval)
            self.stop.wait(self.interval)

    def shutdown(self) -> None:
        self.stop.set()

    def run_once(self, bucket: str | None = None) -> Pass:
        """One pass over every bucket with rules (or just ``bucket``); its summary is also kept in status.json."""
        summary = Pass()
        pacer = Pacer(self.rate, self.stop)
        self._status({"running": True, **summary.to_dict()})
        for account in self.accounts:
            with GridClient(self.cfg, account=account) as client:
                for info in self._buckets(client, bucket):
                    if info.properties.get(LIFECYCLE_PROP) and not self.stop.is_set():
                        summary.buckets += 1
                        self._bucket(client, info.bucket, info.properties[LIFECYCLE_PROP], pacer, summary)
        summary.finished = time.time()
        self._status({"running": False, **summary.to_dict()})
        return summary

    def _bucket(self, client: GridClient, bucket: str, raw_rules: str, pacer: Pacer, summary: Pass) -> None:
        """One bucket's pass; a bucket that fails it (deleted meanwhile, rules that do not parse, a directory
        that does not answer) is logged and the others go on."""
        try:
            rules = [r for r in load(raw_rules) if r.enabled]
            BucketPass(self, client, bucket, rules, pacer, summary).run()
        except GridError as exc:
            summary.errors += 1
            self.record(bucket=bucket, key="", rule="", action="pass", result="error", detail=str(exc))

    def _buckets(self, client: GridClient, only: str | None) -> list[ContainerInfo]:
        if only is not None:
            return [client.bucket_info(only, stats=False)]
        return client.list_buckets(stats=False)  # settings only: no scan of every bucket

    # -- the log and the status -----------------------------------------------------------------

    def record(self, **entry: Any) -> None:
        """Append an action to the log; past ``log_max_bytes`` the log becomes ``lifecycle.log.1`` (the one
        before is dropped), so that the log of a busy grid stays bounded."""
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}, sort_keys=True)
        path = self.state / LOG_NAME
        with self._log_lock:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size >= self.log_max_bytes:
                    path.replace(path.with_name(LOG_NAME + ".1"))
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        log.info("lifecycle: %s", line)

    def _status(self, data: dict[str, Any]) -> None:
        tmp = self.state / f"{STATUS_NAME}.{os.getpid()}.tmp"  # the service and grid lifecycle run may both write
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(self.state / STATUS_NAME)


def read_status(state: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(state) / STATUS_NAME
    return json.loads(path.read_text()) if path.exists() else None


def read_log(state: str | os.PathLike, last: int = 20) -> list[dict[str, Any]]:
    path = Path(state) / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[-last:] if line.strip()]


class BucketPass:
    """The rules of one bucket applied to its versions and uploads."""

    def __init__(self, worker: LifecycleWorker, client: GridClient, bucket: str, rules: list[Rule], pacer: Pacer,
                 summary: Pass) -> None:
        self.worker, self.client, self.bucket, self.rules = worker, client, bucket, rules
        self.pacer, self.summary = pacer, summary
        self.now = time.time()

    def run(self) -> None:
        for versions in self._keys():
            if self.worker.stop.is_set():
                return
            self.summary.examined += len(versions)
            self._key(versions)
        self._uploads()

    def _keys(self) -> Iterator[list[ObjectInfo]]:
        """Each key's versions, newest first, page after page of the directory's listing."""
        key_marker, version_marker, group = "", None, []
        while True:
            page = self.client.list_versions(self.bucket, key_marker=key_marker, version_marker=version_marker)
            for v in page["versions"]:
                if group and group[0].key != v.key:
                    yield group
                    group = []
                group.append(v)
            if not page["truncated"]:
                break
            key_marker, version_marker = page["next_key_marker"], page["next_version_marker"]
        if group:
            yield group

    def _due(self, since: float, days: int | None) -> bool:
        """Whether ``days`` have passed since ``since``, counted as S3 counts them: the time is rounded up to
        the next day's start (midnight UTC for a day of 86400 s)."""
        if not days:
            return False
        day = self.worker.day
        return self.now >= math.ceil((since + days * day) / day) * day

    def _key(self, versions: list[ObjectInfo]) -> None:
        latest, key = versions[0], versions[0].key
        remaining = list(versions)
        if not latest.delete_marker:
            rule = next((r for r in self.rules if r.matches(key, latest.size, _tags(latest)) and (
                self._due(latest.mtime, r.expire_days)
                or ((at := r.expire_at()) is not None and self.now >= at))), None)
            if rule is not None:
                self._act("expire", rule, key, None)
        for n, old in enumerate(versions[1:]):
            became_noncurrent = versions[n].mtime  # when the next newer version was written
            rule = next((r for r in self.rules if r.noncurrent_days and (r.newer_noncurrent or 0) <= n
                         and r.matches(key, None if old.delete_marker else old.size, _tags(old))
                         and self._due(became_noncurrent, r.noncurrent_days)), None)
            if rule is not None and self._act("expire-noncurrent", rule, key, old.version):
                remaining.remove(old)
        if latest.delete_marker and remaining == [latest]:
            rule = next((r for r in self.rules if r.matches(key) and not r.tags and (
                r.expired_markers or self._due(latest.mtime, r.expire_days))), None)
            if rule is not None:
                self._act("remove-delete-marker", rule, key, latest.version)

    def _uploads(self) -> None:
        rules = [r for r in self.rules if r.abort_days]
        if not rules:
            return
        for up in self.client.list_multipart(self.bucket):
            rule = next((r for r in rules if r.matches(up.key) and self._due(up.initiated, r.abort_days)), None)
            if rule is not None and not self.worker.stop.is_set():
                self._act("abort-upload", rule, up.key, None, up.upload_id)

    def _act(self, action: str, rule: Rule, key: str, version: int | None, upload_id: str = "") -> bool:
        """Do one action, paced and logged; True when it was done."""
        self.pacer.wait()
        entry: dict[str, Any] = {"bucket": self.bucket, "key": key, "rule": rule.id, "action": action}
        if version is not None:
            entry["version"] = version
        if upload_id:
            entry["upload_id"] = upload_id
        try:
            if upload_id:
                self.client.abort_multipart(self.bucket, key, upload_id)
            else:
                self.client.delete(self.bucket, key, version=version)
        except ObjectLocked as exc:
            self.summary.locked += 1
            self.worker.record(**entry, result="locked", detail=str(exc))
            return False
        except (NoSuchObject, NoSuchUpload):  # gone meanwhile: nothing left to do
            self.worker.record(**entry, result="gone")
            return True
        except GridError as exc:
            self.summary.errors += 1
            self.worker.record(**entry, result="error", detail=str(exc))
            return False
        self.summary.done[action] = self.summary.done.get(action, 0) + 1
        self.worker.record(**entry, result="done")
        return True
