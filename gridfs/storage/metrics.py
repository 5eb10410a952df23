"""Prometheus view of a storage server's volume and scrubber, read at scrape time.

``grid_rawx_volume_*``: space (free, total, used by chunks) and the volume's identity as labels of an info
gauge (a server holds one volume; operators join on it); ``grid_rawx_scrub_*``: the pass in progress,
the last complete one, and passes ended since start. The volume's I/O pattern is ``iostats.IOCollector``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gridfs.storage.scrub import Scrubber
from gridfs.storage.store import Volume

SCRUB_COUNTS = {"chunks": "chunks read", "bytes": "bytes read", "corrupt": "corrupt chunks found",
                "missing": "chunks indexed but not on the volume"}


class VolumeCollector(Collector):
    def __init__(self, volume: Volume, service_id: str, location: str) -> None:
        self.volume, self.service_id, self.location = volume, service_id, location

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("grid_rawx_volume_info", "the volume this server holds (always 1)",
                                 labels=["id", "volume", "location"])
        info.add_metric([self.service_id, str(self.volume.root), self.location], 1)
        yield info
        free, total = self.volume.space()
        yield GaugeMetricFamily("grid_rawx_volume_free_bytes", "bytes free for chunks", value=free)
        yield GaugeMetricFamily("grid_rawx_volume_total_bytes", "the volume's capacity", value=total)
        yield GaugeMetricFamily("grid_rawx_volume_used_bytes", "bytes of the chunks stored", value=self.volume.used)
        yield GaugeMetricFamily("grid_rawx_chunks", "chunks stored", value=self.volume.chunks)


class ScrubCollector(Collector):
    """``scrubber()``: the server's scrubber, None until it is made (or when it runs none)."""

    def __init__(self, scrubber: Callable[[], Scrubber | None]) -> None:
        self.scrubber = scrubber

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        scrubber = self.scrubber()
        if scrubber is None:
            return
        state = scrubber.state()
        current, last = state["current"] or {}, state["last"] or {}
        yield GaugeMetricFamily("grid_rawx_scrub_running", "1 while a scrub pass runs", value=int(state["running"]))
        yield CounterMetricFamily("grid_rawx_scrub_passes", "scrub passes ended since start", value=state["passes"])
        yield GaugeMetricFamily("grid_rawx_scrub_findings_unsent", "findings not yet reported to the reverse index",
                                value=state["pending"])
        for name, doc in SCRUB_COUNTS.items():
            yield GaugeMetricFamily(f"grid_rawx_scrub_current_{name}", f"pass in progress: {doc} so far",
                                    value=current.get(name, 0))
            yield GaugeMetricFamily(f"grid_rawx_scrub_last_{name}", f"last complete pass: {doc}",
                                    value=last.get(name, 0))
        yield GaugeMetricFamily("grid_rawx_scrub_last_finished_timestamp_seconds",
                                "when the last complete pass ended (Unix time; 0: none yet)",
                                value=last.get("finished", 0))
