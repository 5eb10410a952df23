"""The records the job passes around: manifest entries, units of work, their results.

All are plain dataclasses so that MPI can pickle them between ranks.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Task kinds.
COPY = "copy"  # a whole file
PART = "part"  # one stripe-aligned range of a split file
COMPLETE = "complete"  # assemble a split file once every part is stored
CHECK = "check"  # -update -verify: compare checksums, copy when they differ

# Outcomes, as written to the JSON log.
COPIED, SKIPPED, FAILED = "COPY", "SKIP", "FAIL"


@dataclass
class FileEntry:
    """One source file, as listed."""

    source: int  # index of the source (command line order) it was listed from
    url: str  # what the source opens
    rel: str  # path relative to the source root; becomes the key under the destination prefix
    size: int
    mtime: float
    mode: int = 0
    owner: str = ""
    group: str = ""
    checksum: str = ""  # the source's own checksum, when it has one (grid:// sources)
    error: str = ""  # set when the entry cannot be copied (broken link, not a regular file)


@dataclass
class Task:
    kind: str
    entry: FileEntry
    key: str  # destination key (or relative path for a local destination)
    part: int = 0  # part number, 1-based, for PART
    offset: int = 0
    length: int = 0
    upload_id: str = ""
    parts: int = 0  # number of parts of the file, for PART and COMPLETE
    expected: str = ""  # CHECK: the destination's checksum to compare with

    @property
    def weight(self) -> int:
        return self.length if self.kind == PART else self.entry.size


@dataclass
class Result:
    task: Task
    status: str  # COPIED, SKIPPED or FAILED
    nbytes: int = 0
    checksum: str = ""
    verified: bool = False
    seconds: float = 0.0
    rank: int = 0
    error: str = ""
    fatal: bool = False  # the grid itself is unreachable: stop the job, it can resume
    part_hashes: list[str] = field(default_factory=list)
