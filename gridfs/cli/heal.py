"""``grid rebuild|drain|scrub|health`` and ``grid service|node remove``: the healing commands.

(Stub from the lead: helper B fills it in. ``register`` is called by gridfs/cli/main.py with the
top-level subparsers and the ``grid node`` subparsers, where ``node remove`` belongs.)

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

from typing import Any


def register(sub: Any, node_sub: Any) -> None:
    """Add the healing commands to ``grid`` (``sub``) and ``grid node`` (``node_sub``)."""
