"""The scrubber of one storage volume: reads every chunk file back, finds corrupt and missing chunks.

One thread per storage server. A pass reads every chunk of the volume (parity chunks are chunk
files like any other) through :meth:`Volume.read`, which verifies the xxh3_64 of every 1 MiB block
and the size; then it walks the reverse index (rdir) entries of this volume and looks for chunks
the index lists that are not on disk. A background pass starts every ``[heal] scrub_period``
seconds (the first not before ``scrub_start`` seconds after the server starts) at ``scrub_rate``
MB/s, low enough that ingest does not notice; ``POST /scrub`` starts one now, at any rate.

The scrubber never deletes or rewrites a chunk: each finding goes to the reverse index
(``RdirClient.report``), which turns it into a ``chunk.corrupt`` / ``chunk.missing`` event that
the event agent's repair handler acts on through the directory. Findings the reverse index did
not take (down, not deployed yet) are kept and sent again.

State, in ``VOLUME/scrub.json`` (written atomically): the last complete pass, the current one
(with the last chunk id it checked, so a restarted server resumes a long pass rather than
starting it again) and the findings not yet reported.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gridfs.common.config import GridConfig
from gridfs.common.errors import BadRequest, ChecksumMismatch, InvalidName, NoSuchChunk
from gridfs.common.fileio import write_all
from gridfs.common.names import CHUNK_ID_RE
from gridfs.common.throttle import MB, RateLimiter
from gridfs.storage.store import BLOCK, BufferPool, Volume

log = logging.getLogger("rawx.scrub")

STATE_FILE = "scrub.json"
WINDOW = 4 * BLOCK  # read per call: bounds the buffer held and how long one throttle wait lasts
SAVE_EVERY = 5.0  # seconds between two saves of a pass's progress
RESEND_EVERY = 10.0  # seconds between two attempts to hand pending findings to the reverse index
REPORT_BATCH = 500
KEEP_FINDINGS = 1000  # findings listed in a pass record (all are counted and reported)
MAX_PENDING = 100_000  # findings kept for the reverse index while it does not answer
INDEX_PAGE = 1000
REF_KEYS = ("container", "path", "version", "content_id", "pos")


@dataclass
class ScrubSettings:
    """``[heal]`` settings of the scrubber (rate in MB/s, times in seconds)."""

    rate: float = 2.0
    period: float = 604800.0
    start: float = 60.0
    # Seconds between finding an indexed chunk absent from disk and checking the index again: a
    # chunk being deleted (object deleted, chunk moved by a repair) leaves the disk and the index
    # through two handlers of one event, in either order.
    recheck: float = 5.0

    @classmethod
    def from_config(cls, cfg: GridConfig) -> ScrubSettings:
        heal = cfg.extra.get("heal", {})
        return cls(rate=float(heal.get("scrub_rate", cls.rate)), period=float(heal.get("scrub_period", cls.period)),
                   start=float(heal.get("scrub_start", cls.start)),
                   recheck=float(heal.get("scrub_recheck", cls.recheck)))


def parse_rate(body: Any) -> float | None:
    """The rate of a ``POST /scrub`` body ({} or {"rate": MB/s}, 0 = no cap); None when not given."""
    if body is None:
        return None
    if not isinstance(body, dict) or set(body) - {"rate"}:
        raise BadRequest('scrub request body must be {} or {"rate": MB/s}')
    rate = body.get("rate")
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate < 0:
        raise BadRequest(f"scrub 'rate' must be a number of MB/s >= 0 (0: no cap), got {rate!r}")
    return float(rate)


def _rdir_for(cfg: GridConfig) -> Any:
    from gridfs.rdir.client import RdirClient  # the reverse index may be absent from an older install

    return RdirClient.for_grid(cfg)


class Scrubber:
    """Scrub passes of one volume, in a thread of their own (reads must not hold the event loop)."""

    def __init__(self, volume: Volume, service_id: str, settings: ScrubSettings,
                 rdir: Callable[[], Any], buffers: BufferPool | None = None) -> None:
        self.volume, self.service_id, self.settings = volume, service_id, settings
        self.buffers = buffers or BufferPool(keep=2)
        self._rdir_factory, self._rdir = rdir, None
        self._path = volume.root / STATE_FILE
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._limiter = RateLimiter(0)
        self._linked: dict[object, str | None] = {}  # bytes shared by links -> corruption found in them
        self._started_at = time.time()
        self._saved_at, self._dirty = 0.0, False
        self._next_send = 0.0
        self._thread: threading.Thread | None = None
        self.last: dict | None = None
        self.current: dict | None = None
        self.pending: list[dict] = []
        self.passes = 0  # passes ended since the server started, for /metrics
        self._load()

    @classmethod
    def for_grid(cls, volume: Volume, service_id: str, cfg: GridConfig, buffers: BufferPool) -> Scrubber:
        return cls(volume, service_id, ScrubSettings.from_config(cfg), lambda: _rdir_for(cfg), buffers)

    # -- state ----------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            state = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("unreadable scrub state %s (%s): starting afresh", self._path, exc)
            return
        self.last, self.current = state.get("last"), state.get("current")
        self.pending = list(state.get("pending") or [])
        if self.current and self.current.get("trigger") == "background" and self.settings.rate <= 0:
            self.current = None  # background scrubbing was turned off meanwhile

    def _save(self) -> None:
        with self._lock:
            text = json.dumps({"last": self.last, "current": self.current, "pending": self.pending}).encode()
        tmp = self._path.with_name(f".{STATE_FILE}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, text)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:  # a full volume, say: scrubbing goes on, the state is saved when it can be
            log.warning("scrub state of %s not saved: %s", self.volume.root, exc)
            self._saved_at = time.monotonic()
            return
        self._saved_at, self._dirty = time.monotonic(), False

    def _save_soon(self) -> None:
        """Save changes at most every SAVE_EVERY s: the state file is consistent whenever it is written
        (counts, cursor and pending findings together), so a crash only costs re-reading a little."""
        if self._dirty and time.monotonic() - self._saved_at > SAVE_EVERY:
            self._save()

    def state(self) -> dict:
        """What ``GET /scrub`` answers: {"running", "current", "last", "pending", "passes" (ended since start)}."""
        with self._lock:
            return {"running": self.current is not None, "current": _copy(self.current), "last": _copy(self.last),
                    "pending": len(self.pending), "passes": self.passes}

    def tags(self) -> dict[str, str]:
        """Heartbeat tags: when the last complete pass ended and what it found ("" before any)."""
        with self._lock:
            last = self.last or {}
        found = last.get("corrupt", 0) + last.get("missing", 0) if last else ""
        return {"scrub_last": str(last.get("finished", "")), "scrub_findings": str(found)}

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rawx-scrub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def request(self, rate: float | None) -> tuple[bool, dict]:
        """Start a pass now at ``rate`` MB/s (None: the configured rate, or no cap when background
        scrubbing is off). Returns (started, state); a pass already running is not started again,
        but takes the rate asked for, so an operator's ``--now`` need not wait behind a slow pass."""
        with self._lock:
            running = self.current is not None
            if running:
                if rate is not None:
                    self.current["rate"] = rate
                    self._limiter.set_rate(rate * MB)
            else:
                self.current = _new_pass("request", self.settings.rate if rate is None else rate)
        self._wake.set()
        return not running, self.state()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._send_pending()
            self._save_soon()
            wait = self._next_due()
            if wait <= 0:
                try:
                    self._pass()
                except Exception as exc:  # the thread must live on: the pass ends, marked with its error
                    log.exception("scrub pass of %s failed", self.volume.root)
                    self._end_pass(error=str(exc))
                continue
            self._wake.wait(min(wait, RESEND_EVERY))
            self._wake.clear()
        if self._dirty:
            self._save()

    def _next_due(self) -> float:
        """Seconds until a pass should run (<= 0: now), creating the background pass when it is due."""
        now = time.time()
        with self._lock:
            if self.current is not None:
                if self.current["trigger"] == "request":
                    return 0.0
                return self._started_at + self.settings.start - now  # resumed after a restart
            if self.settings.rate <= 0:
                return math.inf
            due = self._started_at + self.settings.start
            if self.last:
                due = max(due, float(self.last["started"]) + self.settings.period)
            if due > now:
                return due - now
            self.current = _new_pass("background", self.settings.rate)
            return 0.0

    def _pass(self) -> None:
        with self._lock:
            run = self.current
            assert run is not None
            self._limiter.set_rate(run["rate"] * MB)
        log.info("scrub pass %s of %s (%s, %s MB/s) %s", run["id"], self.volume.root, run["trigger"],
                 run["rate"] or "no cap", "resumes after " + run["cursor"] if run["cursor"] else "starts")
        self._save()
        self._linked.clear()
        if run["phase"] == "chunks":
            for chunk_id in self.volume.chunk_ids(after=run["cursor"]):
                if not self._check(run, chunk_id):
                    self._save()
                    return  # stopping: the pass resumes from its cursor at the next start
                self._save_soon()
            run["phase"] = "index"
            self._save()
        if not self._missing(run):
            self._save()
            return
        self._end_pass()
        log.info("scrub pass %s of %s done: %d chunks, %d bytes, %d corrupt, %d missing (%s)", run["id"],
                 self.volume.root, run["chunks"], run["bytes"], run["corrupt"], run["missing"], run["missing_check"])

    def _end_pass(self, error: str = "") -> None:
        with self._lock:
            run = self.current
            if run is None:
                return
            run["finished"] = time.time()
            run.pop("phase", None)
            if error:
                run["error"] = error
            self.last, self.current = run, None
            self.passes += 1
        self._save()

    def _check(self, run: dict, chunk_id: str) -> bool:
        """Read one chunk in full, verified, and count it; False when stopping midway."""
        try:
            meta = self.volume.meta(chunk_id)
            same, links = self.volume.identity(chunk_id)
        except FileNotFoundError:  # NoSuchChunk too: deleted since the listing
            return True
        except OSError as exc:  # xattrs gone or unreadable: the chunk can be neither verified nor served
            meta, problem = {"size": 0}, f"metadata unreadable: {exc}"
        else:
            # "": not read yet; None: read and sound; a string: what is wrong. Hard links share one
            # file: it is read once per pass, and each of its chunk ids gets the verdict.
            problem = self._linked.get(same, "") if links > 1 else ""
            if problem == "":
                try:
                    problem = self._read_all(chunk_id, meta["size"])
                except NoSuchChunk:
                    return True
                except _Stopping:
                    return False
                if links > 1:
                    self._linked[same] = problem
        with self._lock:  # the cursor moves with the counts: a resumed pass counts no chunk twice
            run["chunks"] += 1
            run["bytes"] += meta["size"]
            run["cursor"] = chunk_id
            self._dirty = True
        if problem is not None:
            self._found(run, chunk_id, "corrupt", problem, {k: meta[k] for k in REF_KEYS if k in meta})
        return True

    def _read_all(self, chunk_id: str, size: int) -> str | None:
        """What is wrong with the chunk's bytes (None: nothing), read a window at a time at the pass's rate
        into pooled buffers."""
        for offset in range(0, max(size, 1), WINDOW):
            length = min(WINDOW, size - offset)
            self._limiter.take(length, self._stop)
            if self._stop.is_set():
                raise _Stopping
            try:
                _, _, buf = self.volume.read(chunk_id, offset, length, self.buffers)
            except ChecksumMismatch as exc:
                return str(exc)
            except NoSuchChunk:
                raise
            except OSError as exc:  # a read error of the disk is as bad as a wrong checksum
                return f"unreadable: {exc}"
            if buf is not None:
                self.buffers.release(buf)
        return None

    def _missing(self, run: dict) -> bool:
        """Chunks the reverse index lists for this volume that are not on it (a re-check after
        ``recheck`` seconds leaves out those being deleted meanwhile). False when stopping."""
        try:
            absent = {e["chunk_id"]: e for e in self._indexed(run) if not self._on_disk(e["chunk_id"])}
            if absent and not self._stop.wait(self.settings.recheck):
                still = {e["chunk_id"] for e in self._indexed(None) if e["chunk_id"] in absent}
                for chunk_id in sorted(still):
                    if self._on_disk(chunk_id):
                        continue
                    e = absent[chunk_id]
                    ref = {"container": e.get("container", ""), "path": e.get("key", ""),
                           "version": e.get("version"), "content_id": e.get("content_id", ""),
                           "pos": e.get("pos", "")}
                    self._found(run, chunk_id, "missing", "listed in the reverse index, not on the volume", ref)
        except _Stopping:
            return False
        except Exception as exc:  # the reverse index down or not deployed: the disk half still counts
            log.warning("scrub of %s: missing chunks not checked: %s", self.volume.root, exc)
            self._rdir = None
            run["missing_check"] = f"skipped: {exc}"
            return True
        if self._stop.is_set():
            return False
        run["missing_check"] = "done"
        return True

    def _indexed(self, run: dict | None) -> Any:
        """Every index entry of this volume, page by page."""
        rdir = self._rdir_client()
        marker = ""
        while True:
            if self._stop.is_set():
                raise _Stopping
            entries, marker = rdir.fetch(self.service_id, marker, INDEX_PAGE)
            for e in entries:
                if isinstance(e, dict) and CHUNK_ID_RE.match(str(e.get("chunk_id", ""))):
                    if run is not None:
                        run["indexed"] += 1
                    yield e
            if not marker:
                return

    def _on_disk(self, chunk_id: str) -> bool:
        return self.volume.exists(chunk_id)

    def _rdir_client(self) -> Any:
        if self._rdir is None:
            self._rdir = self._rdir_factory()
        return self._rdir

    # -- findings -----------------------------------------------------------------------------

    def _found(self, run: dict, chunk_id: str, kind: str, detail: str, ref: dict) -> None:
        log.warning("scrub of %s: chunk %s %s: %s", self.volume.root, chunk_id, kind, detail)
        finding = {"chunk_id": chunk_id, "kind": kind, "detail": detail, "ref": ref}
        with self._lock:
            run[kind] += 1
            if len(run["findings"]) < KEEP_FINDINGS:
                run["findings"].append({"chunk_id": chunk_id, "kind": kind, "detail": detail})
            if len(self.pending) < MAX_PENDING:
                self.pending.append(finding)
            else:
                log.error("scrub of %s: %d findings not reported yet; dropping %s", self.volume.root,
                          len(self.pending), chunk_id)
            self._dirty = True
        self._send_pending()  # at once, the repair should not wait (unless the reverse index is failing)
        self._save_soon()

    def _send_pending(self) -> None:
        """Hand pending findings to the reverse index; on failure keep them for the next try."""
        if time.monotonic() < self._next_send:
            return
        while True:
            with self._lock:
                batch = self.pending[:REPORT_BATCH]
            if not batch:
                return
            try:
                rdir = self._rdir_client()
                try:
                    rdir.report(self.service_id, batch)
                except (BadRequest, InvalidName) as exc:  # refused as malformed: sending it again would not help
                    log.error("scrub of %s: the reverse index refused %d findings, dropped: %s", self.volume.root,
                              len(batch), exc)
            except Exception as exc:
                log.warning("scrub of %s: %d findings kept, the reverse index did not take them: %s",
                            self.volume.root, len(self.pending), exc)
                self._rdir = None
                self._next_send = time.monotonic() + RESEND_EVERY
                return
            with self._lock:
                del self.pending[: len(batch)]
                self._dirty = True


class _Stopping(Exception):
    pass


def _new_pass(trigger: str, rate: float) -> dict:
    return {"id": secrets.token_hex(8), "trigger": trigger, "rate": rate, "started": time.time(), "phase": "chunks",
            "cursor": "", "chunks": 0, "bytes": 0, "indexed": 0, "corrupt": 0, "missing": 0,
            "missing_check": "", "findings": []}


def _copy(run: dict | None) -> dict | None:
    if run is None:
        return None
    return {**run, "findings": list(run.get("findings", ()))}

