"""Prometheus view of the reverse index: chunks and bytes indexed per volume, open scrub findings, and the
progress of each volume's rebuild or drain job record (also what the rebuilder serves of its running job).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.rdir.store import RdirStore

JOB_STATES = ("running", "stopped", "done", "failed")
# Figures of a job record (gridfs/heal/jobs.py) served as gauges, with what they mean.
JOB_FIGURES = {
    "chunks_done": "chunks moved or rebuilt so far",
    "chunks_total": "chunks the job expects to handle (the volume's index when it started or passed again)",
    "bytes_done": "bytes moved or rebuilt so far",
    "lost": "objects that could not be repaired (no readable copy left)",
    "errors": "objects whose repair failed and will be tried again",
    "seconds": "seconds the job has run, over all its resumptions",
}


def job_families(prefix: str, jobs: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[GaugeMetricFamily]:
    """``PREFIX_state{volume,kind,state}`` (1 for the state the job is in) and ``PREFIX_<figure>{volume,kind}``
    for each ``(volume, job record)``."""
    labels = ["volume", "kind"]
    state = GaugeMetricFamily(f"{prefix}_state", "1 for the state the volume's job is in", labels=[*labels, "state"])
    figures = {name: GaugeMetricFamily(f"{prefix}_{name}", doc, labels=labels) for name, doc in JOB_FIGURES.items()}
    for volume, record in jobs:
        kind = str(record.get("kind", "rebuild"))
        for name in JOB_STATES:
            state.add_metric([volume, kind, name], float(record.get("state") == name))
        for name, family in figures.items():
            family.add_metric([volume, kind], float(record.get(name) or 0))
    yield state
    yield from figures.values()


class RdirCollector(Collector):
    """Read at scrape time from the reverse index's own tables."""

    def __init__(self, store: RdirStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        volumes = self.store.volumes()
        chunks = GaugeMetricFamily("grid_rdir_volume_chunks", "chunks indexed for the volume", labels=["volume"])
        size = GaugeMetricFamily("grid_rdir_volume_bytes", "bytes of the chunks indexed for the volume",
                                 labels=["volume"])
        findings = GaugeMetricFamily("grid_rdir_findings_open", "scrub findings (corrupt or missing chunks) not "
                                     "repaired yet", labels=["volume"])
        for v in volumes:
            chunks.add_metric([v["volume"]], v["chunks"])
            size.add_metric([v["volume"]], v["bytes"])
            findings.add_metric([v["volume"]], v["findings"])
        yield from (chunks, size, findings)
        yield from job_families("grid_rdir_job", ((v["volume"], v["job"]) for v in volumes if v.get("job")))
