"""The CPU budget of a benchmark phase: CPU seconds (user + system) spent by each kind of process
of a local grid, and by the benchmark's own client processes, while the phase ran.

Kinds: ``client`` (this process and its descendants: worker pools, mpirun ranks, command lines,
plus any pid registered with :meth:`CpuBudget.add_client`), ``gateway`` (s3, webhdfs), ``storage``
(rawx), ``directory`` (meta0, meta1, meta2, conscience, rdir), ``events``, ``heal``.

Each tracked process counts its own CPU time plus that of its children it has reaped, and its live
descendants are tracked too, so gateway workers and pool workers that exit during a phase are still
counted (by the parent that waited for them). The grid's services are children of the process that
started the grid: they are taken out of the client's tree and counted under their own kind. A service
that exits *and is reaped* during a phase moves its CPU time to the reaping process's kind; the
benchmarks stop nothing inside a measured phase.

    budget = CpuBudget(grid)
    with budget.measure() as phase:
        ...                                   # the measured work
    phase.per_gb(nbytes)                      # {"client": s/GB, ..., "total": s/GB}

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from gridfs.cli.local import LocalGrid, LocalService

KINDS = ("client", "gateway", "storage", "directory", "events", "heal")
KIND_OF_TYPE = {
    "s3": "gateway", "webhdfs": "gateway", "rawx": "storage",
    "meta0": "directory", "meta1": "directory", "meta2": "directory", "conscience": "directory", "rdir": "directory",
    "events": "events", "heal": "heal",
}
GB = 1e9  # figures are per GB of user data, as MB/s are per 1e6 bytes
TICK = os.sysconf("SC_CLK_TCK")  # /proc counts CPU time in clock ticks (10 ms): phases under a second are coarse


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: own user + system plus those of the children it has waited for,
    whose own reaped children are in there too), in one pass over /proc: asking psutil for each
    process's children rescans /proc every time, 0.1 s a snapshot on a grid of 15 processes."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone since the listing
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # from field 3 (state) on: the name may hold spaces
        table[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / TICK)  # utime .. cstime
    return table


@dataclass
class Phase:
    """CPU seconds per kind over a wall-clock span; phases add up (rounds of the same job)."""

    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))

    @property
    def total(self) -> float:
        return sum(self.cpu.values())

    @property
    def cores_busy(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def __add__(self, other: Phase) -> Phase:
        return Phase(self.seconds + other.seconds, {k: self.cpu[k] + other.cpu[k] for k in KINDS})

    def per_gb(self, nbytes: int) -> dict[str, float]:
        """CPU seconds per GB (1e9 bytes) of user data, per kind and in total."""
        scale = GB / nbytes if nbytes else 0.0
        return {**{k: v * scale for k, v in self.cpu.items()}, "total": self.total * scale}

    def per_object(self, objects: int) -> dict[str, float]:
        """CPU milliseconds per object, per kind and in total."""
        scale = 1e3 / objects if objects else 0.0
        return {**{k: v * scale for k, v in self.cpu.items()}, "total": self.total * scale}

    def report(self, nbytes: int | None = None, objects: int | None = None) -> dict[str, Any]:
        """JSON-ready: the budget per GB (``nbytes``) or per object (``objects``), with the raw seconds."""
        if nbytes is not None:
            unit, figures = "cpu_s_per_gb", self.per_gb(nbytes)
        elif objects is not None:
            unit, figures = "cpu_ms_per_object", self.per_object(objects)
        else:
            unit, figures = "cpu_s", {**self.cpu, "total": self.total}
        return {"unit": unit, **{k: round(v, 3) for k, v in figures.items()},
                "cpu_s": {k: round(v, 3) for k, v in self.cpu.items()},
                "wall_s": round(self.seconds, 3), "cores_busy": round(self.cores_busy, 2)}


class CpuBudget:
    """Snapshots of CPU time per kind for the services of ``grid`` (re-read at every snapshot: services
    may be added) and for the client: this process's tree (unless ``include_self`` is False) and
    registered pids. ``exclude``: pids whose subtrees count nowhere (a profiler, say)."""

    def __init__(self, grid: LocalGrid | Iterable[LocalService] | None = None, clients: Iterable[int] = (),
                 include_self: bool = True, exclude: Iterable[int] = ()) -> None:
        self.grid = grid
        self.clients = set(clients)
        if include_self:
            self.clients.add(os.getpid())
        self.excluded = set(exclude)
        self._start: tuple[float, dict[str, float]] | None = None

    def add_client(self, pid: int) -> None:
        self.clients.add(pid)

    def exclude(self, pid: int) -> None:
        self.excluded.add(pid)

    def services(self) -> list[LocalService]:
        if self.grid is None:
            return []
        return self.grid.services() if isinstance(self.grid, LocalGrid) else list(self.grid)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each kind's processes."""
        roots = [(KIND_OF_TYPE.get(s.type, "directory"), s.pid) for s in self.services() if s.pid > 0]
        roots += [("client", pid) for pid in sorted(self.clients)]
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        # Another root's subtree (a service started by this process) counts under its own kind.
        skip = self.excluded | {pid for _, pid in roots}
        totals = dict.fromkeys(KINDS, 0.0)
        for kind, root in roots:
            todo = [root] if root in table and root not in self.excluded else []
            while todo:
                pid = todo.pop()
                totals[kind] += table[pid][1]
                todo.extend(c for c in children.get(pid, ()) if c not in skip)
        return totals

    def start(self) -> None:
        before = self.snapshot()
        self._start = (time.perf_counter(), before)

    def stop(self) -> Phase:
        if self._start is None:
            raise RuntimeError("CpuBudget.stop() without start()")
        t0, before = self._start
        seconds = time.perf_counter() - t0
        after = self.snapshot()
        self._start = None
        return Phase(seconds, {k: max(0.0, after[k] - before[k]) for k in KINDS})

    @contextmanager
    def measure(self) -> Iterator[Phase]:
        """The yielded Phase is filled in when the block ends."""
        phase = Phase()
        self.start()
        try:
            yield phase
        finally:
            done = self.stop()
            phase.seconds, phase.cpu = done.seconds, done.cpu


class BudgetTable:
    """Rows of phases, each per GB or per object, printed as one table and kept for the JSON results."""

    HEADERS = ("client", "gw", "rawx", "dir", "evt", "heal")  # short: the table must fit 80 columns

    def __init__(self, title: str = "CPU budget per kind of process") -> None:
        self.title = title
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def add(self, label: str, phase: Phase, nbytes: int | None = None, objects: int | None = None) -> dict[str, Any]:
        row = phase.report(nbytes=nbytes, objects=objects)
        self.rows.append((label, row))
        return row

    def table(self) -> Table:
        caption = ("CPU-s per GB of user data or CPU-ms per object; gw: S3 and WebHDFS gateways, dir: conscience, "
                   "meta0/1/2 and rdir, evt: event agent; cores: CPU-s per wall second")
        table = Table(title=self.title, caption=caption, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
        table.add_column("phase", no_wrap=True)
        for col in ("unit", *self.HEADERS, "total", "cores"):
            table.add_column(col, justify="right")
        units = {"cpu_s_per_gb": "s/GB", "cpu_ms_per_object": "ms/obj", "cpu_s": "s"}
        for label, row in self.rows:
            table.add_row(label, units[row["unit"]], *(f"{row[k]:.2f}" for k in (*KINDS, "total")),
                          f"{row['cores_busy']:.2f}")
        return table

    def print(self) -> None:
        """At least 100 columns wide: rich gives a pipe or a log file 80, too few for ten columns."""
        Console(width=max(Console().width, 100)).print(self.table())

    def json(self) -> dict[str, dict[str, Any]]:
        return dict(self.rows)


def summary(row: dict[str, Any]) -> str:
    """One short cell for a benchmark's own table: the total and the two largest kinds."""
    top = sorted(KINDS, key=lambda k: -row[k])[:2]
    unit = "s/GB" if row["unit"] == "cpu_s_per_gb" else "ms/obj"
    return f"{row['total']:.2f} {unit} ({', '.join(f'{k} {row[k]:.2f}' for k in top)})"
