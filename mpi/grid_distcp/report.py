"""Rank 0's live progress bar and the closing report.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from grid_distcp.coordinator import Coordinator
from grid_distcp.tasks import COPIED, FAILED, SKIPPED

console = Console(stderr=True, soft_wrap=True)  # error lines stay whole for grep and logs


def say(text: str, style: str | None = None) -> None:
    """Print a line as it is: paths and error texts may hold brackets that rich would take for markup."""
    console.print(text, style=style, markup=False, highlight=False)


class LiveProgress:
    """One bar for the whole job: bytes, files, MB/s, ETA, fed from every rank."""

    def __init__(self, total_bytes: int, total_files: int, enabled: bool) -> None:
        self.total_files = total_files
        self.files = 0
        self.lock = threading.Lock()
        self.progress = Progress(
            TextColumn("[bold]grid-distcp"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("copy", total=max(total_bytes, 1), files=self._files_text())

    def _files_text(self) -> str:
        return f"{self.files}/{self.total_files} files"

    def add_bytes(self, n: int) -> None:
        self.progress.update(self.task, advance=n)

    def add_file(self) -> None:
        with self.lock:
            self.files += 1
            self.progress.update(self.task, files=self._files_text())

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def summary(coordinator: Coordinator, elapsed: float, deleted: int, extra: dict[str, Any]) -> dict[str, Any]:
    counts = coordinator.counts()
    copied_bytes = sum(t.bytes for t in coordinator.ranks)
    per_rank = [t.bytes for t in coordinator.ranks]
    busy = [t.busy for t in coordinator.ranks]
    return {
        "files_copied": counts[COPIED],
        "files_skipped": counts[SKIPPED],
        "files_failed": counts[FAILED],
        "files_verified": counts["verified"],
        "bytes_copied": copied_bytes,
        "seconds": round(elapsed, 3),
        "mb_per_s": round(copied_bytes / elapsed / 1e6, 1) if elapsed > 0 else 0.0,
        "files_per_s": round(counts[COPIED] / elapsed, 1) if elapsed > 0 else 0.0,
        "objects_deleted": deleted,
        "ranks": [{"rank": i, "bytes": t.bytes, "files": t.files, "tasks": t.tasks, "busy_s": round(t.busy, 2)}
                  for i, t in enumerate(coordinator.ranks)],
        # 1.0 means every rank moved the same bytes; the slowest rank sets the job's length.
        "balance": round(min(per_rank) / max(per_rank), 3) if max(per_rank, default=0) else 1.0,
        "busy_balance": round(min(busy) / max(busy), 3) if max(busy, default=0) else 1.0,
        "failed": [{"path": r.task.entry.rel, "error": r.error} for r in coordinator.results if r.status == FAILED],
        **extra,
    }


def print_report(report: dict[str, Any]) -> None:
    table = Table(title="grid-distcp report", show_header=False)
    for label, key in (("files copied", "files_copied"), ("files skipped", "files_skipped"),
                       ("files failed", "files_failed"), ("files verified against source", "files_verified"),
                       ("objects deleted", "objects_deleted"), ("bytes copied", "bytes_copied"),
                       ("seconds", "seconds"), ("throughput MB/s", "mb_per_s"), ("files/s", "files_per_s"),
                       ("balance (min/max bytes per rank)", "balance")):
        table.add_row(label, str(report[key]))
    console.print(table)
    ranks = Table(title="ranks")
    for col in ("rank", "bytes", "files", "tasks", "busy s"):
        ranks.add_column(col, justify="right")
    for r in report["ranks"]:
        ranks.add_row(str(r["rank"]), f"{r['bytes']:,}", str(r["files"]), str(r["tasks"]), str(r["busy_s"]))
    console.print(ranks)
    if report["files_copied"] == 0 and report["files_failed"] == 0:
        say("nothing to copy: the destination is up to date", "green")
    for f in report["failed"]:
        say(f"FAILED {f['path']}: {f['error']}", "red")

