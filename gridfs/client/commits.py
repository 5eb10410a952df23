"""Committing what was written: chunks are deleted only when the directory said no.

A write stores chunks, then commits a record naming them. If the commit fails, the
chunks are garbage only when the directory gave a definite answer that it did not
apply the change: a 4xx error, or ``OperationFenced`` once an unanswered commit was
settled as never to apply (``DirectoryClient`` settles lost answers itself). When the
outcome stays unknown (``CommitOutcomeUnknown``, any other 5xx, an interrupt) the chunks
are kept: the commit may have landed, and deleting them would leave an acknowledged
object pointing at nothing. ``grid crawl`` reclaims them later if no record names them.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from gridfs.common.errors import GridError
from gridfs.directory.client import lost_answer

log = logging.getLogger("gridfs.client")
T = TypeVar("T")


def commit_or_discard(commit: Callable[[], T], discard: Callable[[], None]) -> T:
    """``commit()``; on a definite refusal ``discard()`` the chunks written for it, else keep them."""
    try:
        return commit()
    except GridError as exc:
        if not lost_answer(exc):
            discard()
        else:
            log.warning("commit outcome unknown (%s): keeping its chunks", exc)
        raise
