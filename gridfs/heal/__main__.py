"""``python -m gridfs.heal --config grid.toml --state DIR``: the rebuilder service.

It runs :class:`gridfs.heal.service.Rebuilder` in a thread and serves ``/health`` only; it does
not register with the conscience (nothing calls it: its jobs show in the reverse index). A job in
progress at SIGTERM stops between objects and stays resumable.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from gridfs.common import threadservice
from gridfs.heal.service import Rebuilder


def main() -> None:
    threadservice.main("heal", "gridfs rebuilder: rebuilds storage volumes silent longer than [heal] rebuild_grace",
                       "folder for the rebuilder's state (the last job's record)", Rebuilder,
                       lambda rebuilder, _state: {"job": rebuilder.current})


if __name__ == "__main__":
    main()
