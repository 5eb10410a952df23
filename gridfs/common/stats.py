"""Real figures for heartbeats: CPU idle, IO idle of the disk holding a data folder (a storage
server's volume, a directory service's databases), free space.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def _disk_name(path: Path) -> str | None:
    """The block device holding ``path``, as psutil names it (e.g. ``vda``)."""
    dev = os.stat(path).st_dev
    sys_path = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    try:
        name = sys_path.resolve().name
    except OSError:
        return None
    # A partition's busy time is accounted on the whole disk too; prefer the partition.
    return name or None


class StatsCollector:
    def __init__(self, volume: Path) -> None:
        self.disk = _disk_name(volume)
        self._last = (time.monotonic(), self._busy_ms())
        psutil.cpu_percent(None)

    def _busy_ms(self) -> float | None:
        if self.disk is None:
            return None
        counters = psutil.disk_io_counters(perdisk=True) or {}
        c = counters.get(self.disk)
        return float(getattr(c, "busy_time", 0)) if c is not None else None

    def sample(self) -> dict[str, float]:
        now, busy = time.monotonic(), self._busy_ms()
        then, before = self._last
        self._last = (now, busy)
        io_idle = 100.0
        if busy is not None and before is not None and now > then:
            io_idle = max(0.0, 100.0 - (busy - before) / ((now - then) * 1000) * 100)
        return {"cpu_idle": max(0.0, 100.0 - psutil.cpu_percent(None)), "io_idle": io_idle}
