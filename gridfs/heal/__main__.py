"""``python -m gridfs.heal --config grid.toml --state DIR``: the rebuilder service.

It runs :class:`gridfs.heal.service.Rebuilder` in a thread and serves ``/health`` and ``/metrics`` (the
running job's progress, jobs finished); it does not register with the conscience (nothing calls it: its
jobs show in the reverse index). A job in progress at SIGTERM stops between objects and stays resumable.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.common import threadservice
from gridfs.heal.service import Rebuilder
from gridfs.rdir.metrics import job_families


class RebuilderCollector(Collector):
    """The job in progress (``grid_heal_job_*``, as the reverse index serves every volume's) and the jobs
    finished since start, by kind and final state."""

    def __init__(self, rebuilder: Rebuilder) -> None:
        self.rebuilder = rebuilder

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        running = self.rebuilder.running_job()
        yield from job_families("grid_heal_job", [running] if running else [])
        finished = CounterMetricFamily("grid_heal_jobs_finished", "rebuilds run to their end since start",
                                       labels=["kind", "state"])
        for (kind, state), n in sorted(self.rebuilder.finished.items()):
            finished.add_metric([kind, state], n)
        yield finished


def main() -> None:
    threadservice.main("heal", "gridfs rebuilder: rebuilds storage volumes silent longer than [heal] rebuild_grace",
                       "folder for the rebuilder's state (the last job's record)", Rebuilder,
                       lambda rebuilder, _state: {"job": rebuilder.current}, RebuilderCollector)


if __name__ == "__main__":
    main()
