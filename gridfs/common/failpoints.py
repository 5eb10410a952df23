"""Failpoints: let a test crash a service at an exact moment (after a change, before its answer).

A service started with ``GRID_FAILPOINT_DIR`` set checks, at each ``failpoint(name)``, for a
file ``DIR/name``. When it exists it is removed (so it fires once) and its content says what
to do: ``kill`` (SIGKILL this process, the default), ``exit`` (``os._exit(1)``) or
``sleep SECONDS``. Without the variable a failpoint costs one attribute test.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "GRID_FAILPOINT_DIR"
_DIR = Path(os.environ[ENV]) if os.environ.get(ENV) else None


def failpoint(name: str) -> None:
    if _DIR is None:
        return
    armed = _DIR / name
    try:
        action = armed.read_text().strip() or "kill"
        armed.unlink()
    except FileNotFoundError:
        return
    if action.startswith("sleep"):
        time.sleep(float(action.split()[1]))
    elif action == "exit":
        os._exit(1)
    else:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(folder: str | os.PathLike, name: str, action: str = "kill") -> None:
    """Arm ``name`` in the services started with ``GRID_FAILPOINT_DIR=folder`` (for tests)."""
    path = Path(folder) / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(action)
    os.replace(tmp, path)
