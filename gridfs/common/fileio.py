"""Writing buffers to files in the pieces the kernel handles cheapest; reading an upload's source straight
from the disk when it is not in the page cache, and writing a large download straight to it.

Measured here (ext4 on virtio, Python 3.11): one ``os.write`` of an 8 MiB buffer followed by ``fsync``
costs 2-3 ns of system CPU per byte and runs at about 300-390 MB/s; the same bytes written 1 MiB at a
time cost 0.3-0.4 ns per byte and run at 900-1100 MB/s (a storage server's chunk PUT went from 310 to
565-710 MB/s and from 3.96 to 1.1-1.3 ns of its CPU per byte). Every large file write goes through here.

Reading a large source file that is not in the page cache through the cache costs the copy out of it
and the pages it must first find: 0.18-0.58 CPU-s per GB here, against 0.035 straight into an aligned
buffer (O_DIRECT), at 1.5 GB/s either way (bench/results/direct-files, docs/HDD.md). :class:`SourceFile` reads such
a file straight from the disk, and a file the cache already holds (just written, or read before) through it
as ever: memory is faster than any disk. Writing a large download through the cache cost as much again
(`grid get` of 1 GiB: 0.8-3.3 s of system time against 0.5 into /dev/null): :class:`SinkFile` writes its
whole blocks straight to the disk.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import io
import mmap
import os

WRITE_STEP = 1 << 20
DIRECT_ALIGN = 4096  # O_DIRECT wants buffer address, file offset and length in multiples of the block size
# Smaller sources are read through the cache: on a disk that seeks, its read-ahead is worth the copy; and
# smaller downloads written through it (likely read again soon, and cheap to keep).
DIRECT_READ_MIN = DIRECT_WRITE_MIN = 32 << 20


def write_all(fd: int, data: memoryview | bytes | bytearray) -> int:
    """Write all of ``data`` to ``fd`` in WRITE_STEP pieces (short writes resumed); returns the byte count."""
    view = memoryview(data).cast("B")
    for off in range(0, view.nbytes, WRITE_STEP):
        piece = view[off : off + WRITE_STEP]
        while piece.nbytes:
            piece = piece[os.write(fd, piece) :]
    return view.nbytes


def private_map(size: int) -> mmap.mmap:
    """A page-aligned anonymous buffer of this process alone: mmap's default is a shared map, which a forked
    child (the S3 gateway forks its workers) would write into under its parent's and its siblings' feet."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def aligned(data: memoryview) -> bool:
    """Whether ``data`` starts on a DIRECT_ALIGN boundary (a pooled buffer, or a slice of one at such an offset);
    read-only views (``bytes``) are never taken as aligned: ctypes cannot give their address."""
    if data.readonly:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(data)) % DIRECT_ALIGN == 0


def set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False when the file system refuses it (tmpfs)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    except OSError:
        return False
    return on


def cached(fd: int, offset: int) -> bool:
    """Whether the page at ``offset`` is in the page cache (a read that may not wait answers at once); a
    file system that cannot say counts as cached, so its files keep the usual way."""
    probe = private_map(DIRECT_ALIGN)
    try:
        os.preadv(fd, [probe], offset, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        probe.close()


class SourceFile(io.RawIOBase):
    """A file read once, in order, from ``offset`` (the source of an upload). Read straight from the disk
    (O_DIRECT) when it is large and its first page is not in the page cache; into any buffer that is not
    aligned, or after the file system refuses a direct read (EINVAL), through the cache from then on."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        super().__init__()
        self.name = os.fspath(path)
        self._fd = os.open(self.name, os.O_RDONLY | os.O_CLOEXEC)
        self.direct = False
        try:
            if offset:
                os.lseek(self._fd, offset, os.SEEK_SET)
            if (offset % DIRECT_ALIGN == 0 and os.fstat(self._fd).st_size - offset >= DIRECT_READ_MIN
                    and not cached(self._fd, offset)):
                self.direct = set_direct(self._fd, True)
        except BaseException:
            os.close(self._fd)
            raise

    def fileno(self) -> int:
        return self._fd

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def readinto(self, buffer: object) -> int:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if self.direct:
            if view.nbytes % DIRECT_ALIGN == 0 and aligned(view):
                try:
                    return os.readv(self._fd, [view])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
            # Nothing was read: the same bytes come through the cache, and so does the rest.
            self.direct = set_direct(self._fd, False)
        return os.readv(self._fd, [view])

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class SinkFile:
    """Writes a download, in order, to ``fd`` (a new regular file): its whole blocks straight to the disk
    (O_DIRECT) when it is large, from page-aligned buffers; a piece that is not (and the last partial
    block, and all after it), or a file system that refuses O_DIRECT, through the page cache."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.direct = size >= DIRECT_WRITE_MIN and set_direct(fd, True)

    def write(self, data: memoryview | bytes | bytearray) -> int:
        view = memoryview(data).cast("B")
        done = 0
        if self.direct and aligned(view):
            whole = view.nbytes - view.nbytes % DIRECT_ALIGN
            try:
                while done < whole:
                    done += os.write(self.fd, view[done : min(whole, done + WRITE_STEP)])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # This piece was refused whole: it and the rest go through the cache, from the same offset.
        if done < view.nbytes:
            if self.direct:
                self.direct = set_direct(self.fd, False)
            write_all(self.fd, view[done:])
        return view.nbytes
