"""The console's memory of the last hour: throughput and free space, sampled every few seconds.

Each round asks the conscience for the storage servers (free and total bytes come with their heartbeats),
then scrapes every live one's ``/metrics`` at once for its byte counters and its scrub pass. Throughput is
the counters' difference between two rounds, per server, summed: a counter that went down (the server
restarted) counts nothing for that round rather than a negative rate. Rounds go into a ring of one hour
(``[console] window``), kept in memory only: the console is a view, a restart starts a new hour.

A scrape that fails to connect also says something the conscience cannot say yet: a server killed a
moment ago is still "up" there until its heartbeats are overdue, but its port already refuses. The
console shows such a volume as unreachable at once.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gridfs.common.config import GridConfig
from gridfs.common.errors import GridError
from gridfs.common.http import METRICS_PATH, SECRET_HEADER
from gridfs.conscience.client import ConscienceClient

log = logging.getLogger("gridfs.console")
SCRAPE_TIMEOUT = 2.0  # s: a server slower than this to answer a scrape counts as unreachable for the round
# The figures taken from each storage server's /metrics (names as scraped, counters with _total).
WANTED = ("grid_rawx_bytes_in_total", "grid_rawx_bytes_out_total", "grid_rawx_chunks", "grid_rawx_scrub_running",
          "grid_rawx_scrub_current_chunks")


@dataclass
class Sample:
    t: float  # Unix time of the round
    bytes_in: float | None  # B/s written to the storage servers since the last round (None: first round)
    bytes_out: float | None  # B/s read from them
    free_bytes: float  # summed over the live servers
    total_bytes: float
    up: int  # storage servers the conscience lists up
    down: int


@dataclass
class Sampler:
    cfg: GridConfig
    interval: float = 5.0
    window: float = 3600.0
    ring: deque[Sample] = field(init=False)
    scrub: dict[str, dict[str, Any]] = field(default_factory=dict)  # volume -> {"running", "done", "total"}
    unreachable: set[str] = field(default_factory=set)  # volumes whose last scrape could not connect
    _counters: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # volume -> (t, in, out)

    def __post_init__(self) -> None:
        self.ring = deque(maxlen=max(2, math.ceil(self.window / self.interval)))
        self.conscience = ConscienceClient(self.cfg.conscience_url, self.cfg.secret).quick()

    def series(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.ring]

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``interval`` seconds until ``stop``; a round that fails is logged and skipped."""
        async with aiohttp.ClientSession(headers={SECRET_HEADER: self.cfg.secret},
                                         timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as http:
            while not stop.is_set():
                try:
                    await self.round(http)
                except (GridError, aiohttp.ClientError, OSError) as exc:
                    log.warning("sampling round failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)

    async def round(self, http: aiohttp.ClientSession) -> Sample:
        rows = await asyncio.to_thread(self.conscience.services, "rawx")
        live = [r for r in rows if r.get("up", True)]
        figures = await asyncio.gather(*(self._scrape(http, r["addr"]) for r in live))
        now = time.time()
        rate_in = rate_out = 0.0
        first = True
        unreachable, scrub = set(), {}
        for row, got in zip(live, figures, strict=True):
            volume = row.get("id") or row["addr"]
            if got is None:
                unreachable.add(volume)
                continue
            b_in, b_out = got.get("grid_rawx_bytes_in_total", 0.0), got.get("grid_rawx_bytes_out_total", 0.0)
            before = self._counters.get(volume)
            self._counters[volume] = (now, b_in, b_out)
            if before is not None and now > before[0]:
                first = False
                rate_in += max(0.0, b_in - before[1]) / (now - before[0])
                rate_out += max(0.0, b_out - before[2]) / (now - before[0])
            scrub[volume] = {"running": bool(got.get("grid_rawx_scrub_running")),
                             "done": int(got.get("grid_rawx_scrub_current_chunks", 0)),
                             "total": int(got.get("grid_rawx_chunks", 0))}
        self.unreachable, self.scrub = unreachable, scrub
        stats = [r.get("stats") or {} for r in live]
        sample = Sample(now, None if first else rate_in, None if first else rate_out,
                        float(sum(s.get("free_bytes", 0) for s in stats)),
                        float(sum(s.get("total_bytes", 0) for s in stats)), len(live), len(rows) - len(live))
        self.ring.append(sample)
        return sample

    @staticmethod
    async def _scrape(http: aiohttp.ClientSession, addr: str) -> dict[str, float] | None:
        """The unlabelled figures of :data:`WANTED` from one server, None when it cannot be reached."""
        try:
            async with http.get(f"http://{addr}{METRICS_PATH}") as resp:
                if resp.status != 200:
                    return {}
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in WANTED and not s.labels:
                    out[s.name] = float(s.value)
        return out
