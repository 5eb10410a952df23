"""``python -m gridfs.lifecycle --config grid.toml --state DIR``: the lifecycle service.

It runs :class:`gridfs.lifecycle.worker.LifecycleWorker` in a thread, a pass every ``[lifecycle] interval``
seconds, and serves ``/health`` (with the last pass's summary) only.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from gridfs.common import threadservice
from gridfs.lifecycle.worker import LifecycleWorker, read_status


def main() -> None:
    threadservice.main("lifecycle", "gridfs lifecycle: executes the buckets' lifecycle rules ([lifecycle] in "
                       "grid.toml)", "folder for the action log (lifecycle.log) and status.json",
                       LifecycleWorker, lambda _worker, state: {"last": read_status(state)})


if __name__ == "__main__":
    main()
