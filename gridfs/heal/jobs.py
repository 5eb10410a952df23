"""Rebuild and drain jobs: move every chunk a volume holds onto other volumes.

The reverse index (rdir) says what volume V holds, a page at a time, in object order; each
object is then looked up in the directory, which decides: an index entry whose object
version no longer has a chunk of that id on V is stale (deleted from the index, skipped),
and an object that still has chunks on V is repaired with a :class:`Relocation` off V
(committed only if the version's content is unchanged; the commit's garbage event deletes
the old chunk and, in the reverse index, its entry). A **rebuild** never reads V (it is
dead: the chunks are decoded from the others); a **drain** copies them from V, and at the
end also walks V's own chunk listing for chunks the index missed (an object written while
the index was down), so that the volume ends empty. Both lock V in the conscience first, so
that it takes no new writes (and, if a dead one returns, none either).

The job record (:meth:`RdirClient.set_job`) is saved after each page with the marker of the
next one, so a job whose process died is resumed from there by a rerun or by the rebuilder
service; failpoint ``heal.after_batch`` fires right after a page is recorded. A job an
operator interrupted is recorded "stopped": only a rerun of the same kind resumes it. Objects of a
page are repaired a few at a time (each repair is a chain of round trips): ``workers`` of them read
and decode their stripes at once, and up to twice as many more store and commit what they rebuilt
meanwhile (a rebuilt chunk's PUT and fsync take about as long as reading its stripe, and hold only
the rebuilt chunk's buffer); the bytes written
are throttled by a :class:`RateLimiter`.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from gridfs.admin.repair import Relocation, Repairer
from gridfs.common.config import DEFAULT_ACCOUNT, GridConfig
from gridfs.common.errors import GridError, NoSuchContainer, NoSuchObject, NotFound, PreconditionFailed
from gridfs.common.failpoints import failpoint
from gridfs.common.names import check_service_id
from gridfs.common.throttle import RateLimiter
from gridfs.conscience.client import ConscienceClient
from gridfs.heal.handlers import AccountClients
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import parse_chunk_url

log = logging.getLogger("gridfs.heal")
KINDS = ("rebuild", "drain")
BATCH = 200  # index entries per page: one job record write each
WORKERS = 4  # objects read and decoded at once
STORING = 3  # objects in flight per worker: the others store and commit what they rebuilt
LOST_KEPT = 1000  # names of lost objects kept in the record (the count is always exact)
STALE_OWNER = 600.0  # s: a running job of another host not updated for this long is orphaned
ATTEMPTS = 3  # an object whose record changes under a repair is read again this many times
PASSES = 3  # passes over the index at most (a pass starts again while entries keep arriving)


class JobBusy(GridError):
    """Another live process runs this volume's job."""

    status = 409

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def owner_tag() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def owner_alive(record: dict[str, Any]) -> bool:
    """Whether the process a running job record names may still be running it."""
    from gridfs.cli.local import pid_alive

    owner = record.get("owner") or {}
    if owner.get("host") == socket.gethostname():
        return int(owner.get("pid") or 0) == os.getpid() or pid_alive(int(owner.get("pid") or 0))
    return time.time() - float(record.get("updated") or 0) < STALE_OWNER


@dataclass
class _Outcome:
    """What one object's turn did."""

    stale: list[str] = field(default_factory=list)  # index entries to forget
    moved: list[str] = field(default_factory=list)  # chunk ids that left V
    bytes: int = 0
    lost: str = ""  # "ACCOUNT/BUCKET/KEY@VERSION" when a metachunk had too few good chunks
    error: str = ""
    left: int = 0  # chunks left on the volume (lost metachunks, errors): their index entries stay


class VolumeJob:
    """One rebuild or drain of volume ``volume`` (a storage service id)."""

    def __init__(self, cfg: GridConfig, volume: str, kind: str, *, rate: float = 0.0, batch: int = BATCH,
                 workers: int = WORKERS, rdir: RdirClient | None = None, stop: threading.Event | None = None,
                 progress: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"job kind must be one of {KINDS}, not {kind!r}")
        self.cfg, self.volume, self.kind = cfg, check_service_id(volume), kind
        self.conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
        self.rdir = rdir or RdirClient(self.conscience, cfg.secret)
        self.limiter = RateLimiter.mb_per_s(rate)
        self.rate, self.batch, self.workers = rate, max(1, batch), max(1, workers)
        self.stop = stop or threading.Event()  # set by the caller, or by abort()
        self._abort = threading.Event()  # this job is failing or interrupted
        self.progress = progress
        # Each worker holds a metachunk's chunks at once, each object storing its rebuilt ones: the client's
        # buffer pool must keep that many (a fresh 8 MiB buffer per chunk read cost the rebuild a fifth of
        # its CPU in page faults).
        self._client = AccountClients(cfg, depth=max(3, 3 * self.workers))
        self._read_slots = threading.Semaphore(self.workers)
        self._lock = threading.Lock()
        self._moved: set[str] = set()  # chunk ids moved by this process: the drain's sweep skips them
        self.record: dict[str, Any] = {}
        self._seconds_before, self._began = 0.0, time.monotonic()

    # -- the record -----------------------------------------------------------------------------

    def _begin(self) -> dict[str, Any]:
        """Resume the running record of this kind, or start a new one. JobBusy if a live process has it."""
        current = self.rdir.job(self.volume)
        if current and current.get("state") in ("running", "stopped") and current.get("kind") == self.kind:
            if current["state"] == "running" and owner_alive(current) and (current.get("owner") or {}) != owner_tag():
                raise JobBusy(f"a {self.kind} of {self.volume} is running in {current.get('owner')}", current)
            record = {**current, "state": "running", "owner": owner_tag(),
                      "resumes": int(current.get("resumes", 0)) + 1}
            log.info("resuming the %s of %s at marker %r (%s chunks done)", self.kind, self.volume,
                     record.get("marker"), record.get("chunks_done"))
        else:
            if current and current.get("state") == "running" and owner_alive(current):
                raise JobBusy(f"a {current.get('kind')} of {self.volume} is running in {current.get('owner')}",
                              current)
            record = {"kind": self.kind, "state": "running", "started": time.time(), "marker": "",
                      "chunks_done": 0, "bytes_done": 0, "chunks_total": self.rdir.count(self.volume),
                      "seen": 0, "stale": 0, "objects_touched": 0, "objects_lost": [], "lost": 0,
                      "errors": 0, "last_error": "", "resumes": 0, "owner": owner_tag()}
        record["rate"] = self.rate
        self._seconds_before, self._began = float(record.get("seconds") or 0.0), time.monotonic()
        self.record = record
        self._save()
        return record

    def _save(self) -> None:
        # Seconds of work over every run of the job, so bytes_done / seconds is its rate.
        self.record["seconds"] = round(self._seconds_before + time.monotonic() - self._began, 3)
        self.rdir.set_job(self.volume, self.record)
        if self.progress is not None:
            self.progress(self.record)

    def abort(self) -> None:
        """Stop now (a service shutting down): the objects in flight end without waiting on the
        throttle, the page is not recorded as done, the record stays "running" to be resumed."""
        self._abort.set()
        self.stop.set()

    def halt(self) -> None:
        """Record the job as stopped by an operator (^C): nobody resumes it on their own, a rerun
        of the same kind does, from its marker."""
        if self.record.get("state") == "running":
            self.record["state"] = "stopped"
            self._save()

    # -- the job --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run (or resume) the job to its end, or until ``stop`` is set (the record stays
        "running", to be resumed). Returns the final record."""
        record = self._begin()
        names = self._lock_volume()
        relocation = Relocation(frozenset(names), readable=self.kind == "drain")
        with ThreadPoolExecutor(self.workers * STORING, thread_name_prefix=f"heal-{self.kind}") as pool:
            self._passes(record, relocation, pool)
        if self.stop.is_set():
            self._save()
            log.info("%s of %s stopped at marker %r", self.kind, self.volume, record["marker"])
            return record
        record["state"] = "failed" if record["errors"] else "done"
        record["finished"] = time.time()
        self._save()
        log.info("%s of %s %s: %d chunks (%d bytes) moved off it, %d objects touched, %d lost, %d errors",
                 self.kind, self.volume, record["state"], record["chunks_done"], record["bytes_done"],
                 record["objects_touched"], record["lost"], record["errors"])
        return record

    def _passes(self, record: dict[str, Any], relocation: Relocation, pool: ThreadPoolExecutor) -> None:
        """Page through the index from the record's marker (a drain then sweeps the volume itself)."""
        while not self.stop.is_set():
            entries, marker = self.rdir.fetch(self.volume, record["marker"], limit=self.batch)
            self._page([_key_of_entry(e) for e in entries], relocation, pool)
            if self.stop.is_set():
                return  # the page may be half done: keep its marker, a resume starts it again
            record["seen"] += len(entries)
            record["marker"] = marker  # "" at the end of a pass: also where another pass starts
            again = not marker and self._again()
            self._save()
            failpoint("heal.after_batch")
            if not marker and not again:
                break
        if self.kind == "drain" and not self.stop.is_set():
            self._sweep(relocation, pool)

    def _again(self) -> bool:
        """At the end of a pass: whether the index gained entries meanwhile (the events of writes that
        landed just before the volume was locked or died reach it late), worth another pass."""
        record = self.record
        indexed = self.rdir.count(self.volume)
        if int(record.get("passes", 1)) >= PASSES or indexed <= int(record.get("left_chunks", 0)):
            return False
        record["passes"] = int(record.get("passes", 1)) + 1
        record["chunks_total"] = int(record["seen"]) + indexed
        return True

    def _lock_volume(self) -> set[str]:
        """Lock the volume (no new writes); its names: the id, and its address if it is listed
        (old-form chunk URLs name the address)."""
        names = {self.volume}
        try:
            self.conscience.lock(self.volume)
        except NotFound:
            log.warning("%s is not registered with the conscience: not locked", self.volume)
        for svc in self.conscience.services("rawx"):
            if svc.get("id") == self.volume:
                names.add(svc["addr"])
        return names

    def _page(self, objects: Iterable[tuple[str, str, int | None, str]], relocation: Relocation,
              pool: ThreadPoolExecutor) -> None:
        """Handle the objects of one page of chunk entries (container, key, version, chunk id)."""
        groups = [(obj, [e[3] for e in group]) for obj, group in groupby(objects, key=lambda e: e[:3])]
        futures = [pool.submit(self._object, *obj, ids, relocation) for obj, ids in groups]
        try:
            wait(futures)
        except BaseException:  # ^C: objects still queued return at once, those in flight end
            self._abort.set()
            wait(futures)
            raise
        finally:
            # Counted even when interrupted: a resume will not see these chunks again.
            self._tally([f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None])
        for fut in futures:
            if fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]

    def _tally(self, outcomes: list[_Outcome]) -> None:
        stale = [cid for o in outcomes for cid in o.stale]
        self.rdir.delete(self.volume, stale + [cid for o in outcomes for cid in o.moved])
        record = self.record
        record["stale"] += len(stale)
        for o in outcomes:
            record["chunks_done"] += len(o.moved)
            record["bytes_done"] += o.bytes
            record["objects_touched"] += bool(o.moved)
            record["left_chunks"] = int(record.get("left_chunks", 0)) + o.left
            if o.lost:
                record["lost"] += 1
                if len(record["objects_lost"]) < LOST_KEPT:
                    record["objects_lost"].append(o.lost)
            if o.error:
                record["errors"] += 1
                record["last_error"] = o.error

    def _object(self, container: str, key: str, version: int | None, chunk_ids: list[str],
                relocation: Relocation) -> _Outcome:
        """Move this object version's chunks off the volume; the index entries ``chunk_ids`` led here."""
        account, _, bucket = container.partition("/")
        name = f"{container}/{key}@{version}"
        if self.stop.is_set() or self._abort.is_set():
            return _Outcome()
        for _attempt in range(ATTEMPTS):
            try:
                client = self._client(account)
                info = client.head(bucket, key, version=version, chunks=True)
                held = {parse_chunk_url(c.url).chunk_id for mc in info.metachunks for c in mc.chunks
                        if relocation.holds(c.url)}
                out = _Outcome(stale=[cid for cid in chunk_ids if cid not in held])
                if not held:
                    return out
                result = Repairer(client, bucket, self._read_slots).repair(key, info.version, relocate=relocation,
                                                                          info=info)
            except (NoSuchObject, NoSuchContainer):
                return _Outcome(stale=list(chunk_ids))  # deleted meanwhile: its chunks are garbage already
            except PreconditionFailed:
                continue  # rewritten meanwhile: look again
            except (GridError, OSError, ValueError) as exc:
                log.warning("%s of %s: %s: %s", self.kind, self.volume, name, exc)
                return _Outcome(error=f"{name}: {exc}", left=len(chunk_ids))
            # Chunks of lost metachunks stay on the volume (and in the index): nothing better exists.
            left = {parse_chunk_url(c.url).chunk_id for mc in info.metachunks if mc.pos in result.lost
                    for c in mc.chunks if relocation.holds(c.url)}
            out.moved = sorted(held - left)
            out.bytes = result.bytes_written
            out.lost = name if result.lost else ""
            out.left = len(left)
            with self._lock:
                self._moved.update(out.moved)
            self.limiter.take(result.bytes_written, self._abort)
            return out
        return _Outcome(error=f"{name}: changed under {ATTEMPTS} repairs in a row", left=len(chunk_ids))

    def _sweep(self, relocation: Relocation, pool: ThreadPoolExecutor) -> None:
        """Drain only: the chunks V lists itself that the index did not lead to, by the object
        their back-reference names (chunks whose object does not reference them are orphans: the
        crawler's business, not the drain's)."""
        listing = self._client(DEFAULT_ACCOUNT).io.chunks.list_chunks(self.volume, older_than=0)
        found = []
        for chunk in listing:
            ref = chunk.get("ref") or {}
            if chunk["chunk_id"] in self._moved or "/" not in str(ref.get("container", "")) or not ref.get("path"):
                continue
            found.append(_key_of_ref(ref, chunk["chunk_id"]))
        found.sort(key=lambda e: (e[0], e[1], e[2] or 0, e[3]))
        log.info("drain of %s: %d chunks on the volume beyond those moved, checking them", self.volume, len(found))
        for start in range(0, len(found), self.batch):
            if self.stop.is_set():
                return
            self._page(found[start:start + self.batch], relocation, pool)
            self._save()


def _key_of_entry(entry: dict[str, Any]) -> tuple[str, str, int | None, str]:
    return str(entry["container"]), str(entry["key"]), int(entry["version"]), str(entry["chunk_id"])


def _key_of_ref(ref: dict[str, Any], chunk_id: str) -> tuple[str, str, int | None, str]:
    version = ref.get("version")
    return str(ref["container"]), str(ref["path"]), int(version) if version not in (None, "") else None, chunk_id
