"""Group commit: many callers, one fsync.

Callers hand their change to ``GroupCommit.submit`` and block. One who finds nobody committing takes
the whole queue (its own change included) and runs the commit function on it; callers that arrive
meanwhile queue for the next group. The commit function settles each change (a result or an error);
``submit`` returns or raises what it settled for the caller's own change, and only once the group is
done, so no caller is answered before the write that holds its change is durable. Alone, a caller
commits at once: group commit costs no latency, it only shares fsyncs among callers that overlap.

Used by the storage server's packs (gridfs/storage/packs.py) and by each container database of the
directory (gridfs/directory/meta2db.py).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Pending(Generic[T]):
    """One caller's change in a group, and how it ended."""

    item: T
    done: bool = False
    result: Any = None
    error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


class GroupCommit(Generic[T]):
    def __init__(self, commit: Callable[[list[Pending[T]]], None]) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._queue: list[Pending[T]] = []
        self._leading = False

    def submit(self, item: T) -> Any:
        me: Pending[T] = Pending(item)
        group: list[Pending[T]] = []
        with self._cond:
            self._queue.append(me)
            while not me.done and self._leading:
                self._cond.wait()
            if not me.done:  # nobody is committing: this caller commits the queue
                self._leading = True
                group, self._queue = self._queue, []
        if group:
            try:
                self._commit(group)
            except BaseException as exc:  # what the commit function left unsettled shares its failure
                for p in group:
                    if not p.done:
                        p.settle(error=exc)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if me.error is not None:
            raise me.error
        return me.result
