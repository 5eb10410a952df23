"""MPI messaging between the ranks and rank 0's work queue.

MPICH waits by spinning, and this job shares two cores with the grid's own
processes, so every wait here polls with short sleeps instead of blocking in MPI:
a rank waiting for work, or for the others, must not burn the core a copier needs.
Rank 0 serves the queue from a thread (mpi4py initialises MPI_THREAD_MULTIPLE) while
its main thread copies like every other rank.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import threading
import time
from typing import Any

from grid_distcp.coordinator import Coordinator, Reply

TAG_ASK, TAG_REPLY, TAG_PROGRESS = 11, 12, 13
POLL = 0.002


def quiet_wait(comm: Any) -> None:
    """A barrier that sleeps while it waits."""
    if comm.size == 1:
        return
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(POLL)


def bcast(comm: Any, obj: Any) -> Any:
    quiet_wait(comm)
    return comm.bcast(obj, root=0)


def gather(comm: Any, obj: Any) -> list[Any] | None:
    quiet_wait(comm)
    return comm.gather(obj, root=0)


class LocalQueue:
    """Rank 0's own access to the coordinator: a function call."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def next(self, rank: int, results: list, busy: bool = False) -> Reply:
        return self.coordinator.next(rank, results, busy)

    def progress(self, rank: int, nbytes: int) -> None:
        self.coordinator.progress(rank, nbytes)


class RemoteQueue:
    """Another rank's access to the coordinator: a request and its reply over MPI."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self._lock = threading.Lock()

    def next(self, rank: int, results: list, busy: bool = False) -> Reply:
        with self._lock:
            self.comm.send((results, busy), dest=0, tag=TAG_ASK)
            while not self.comm.iprobe(source=0, tag=TAG_REPLY):
                time.sleep(POLL)
            return self.comm.recv(source=0, tag=TAG_REPLY)

    def progress(self, rank: int, nbytes: int) -> None:
        with self._lock:
            self.comm.send(nbytes, dest=0, tag=TAG_PROGRESS)


class QueueServer(threading.Thread):
    """Rank 0's thread answering the other ranks until each has been told to stop."""

    def __init__(self, comm: Any, coordinator: Coordinator) -> None:
        super().__init__(name="distcp-queue", daemon=True)
        self.comm = comm
        self.coordinator = coordinator
        self.error: BaseException | None = None

    def run(self) -> None:
        from mpi4py import MPI

        active = set(range(1, self.comm.size))
        status = MPI.Status()
        try:
            while active:
                if not self.comm.iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                    time.sleep(POLL)
                    continue
                source, tag = status.Get_source(), status.Get_tag()
                message = self.comm.recv(source=source, tag=tag)
                if tag == TAG_PROGRESS:
                    self.coordinator.progress(source, message)
                elif tag == TAG_ASK:
                    reply = self.coordinator.next(source, *message)
                    self.comm.send(reply, dest=source, tag=TAG_REPLY)
                    if reply.stop:
                        active.discard(source)
        except BaseException as exc:  # surfaced by the job; the other ranks are aborted
            self.error = exc
