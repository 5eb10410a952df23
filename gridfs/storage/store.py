"""Chunk files on one volume.

``VOLUME/<id[0:3]>/<id>``; written as ``<id>.tmp-<rand>``, fsynced, renamed, and the
directory fsynced, so a chunk is either whole and durable or absent. xattrs hold the
chunk's size, xxh3_64 of the whole chunk, xxh3_64 of every 1 MiB block (so a ranged
read verifies only the blocks it touches), and one ``ref.<ID>`` record per hard link
(object path, content id, position) because links share the inode.

Small chunks sent in a batch live in pack files instead (``gridfs.storage.packs``); every method
below answers for both kinds, so readers, the scrubber and the crawler see one volume.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import logging
import mmap
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import crc32c
import xxhash

from gridfs.common.errors import AlreadyExists, BadRequest, ChecksumMismatch, InvalidRange, NoSuchChunk, VolumeFull
from gridfs.common.fileio import DIRECT_ALIGN, aligned, private_map, set_direct
from gridfs.common.names import CHUNK_ID_RE, check_chunk_id
from gridfs.storage.iostats import IOStats
from gridfs.storage.packs import MAX_PACKED, NewChunk, Packed, PackStore

log = logging.getLogger("rawx")
BLOCK = 1 << 20
X = "user.grid."
Buffer = bytearray | mmap.mmap  # a pooled buffer (page-aligned), or a one-off bytearray


class BufferPool:
    """Reused byte buffers in 1 MiB size classes: a fresh buffer per request costs page faults.

    They are anonymous maps, page-aligned, so that a chunk received into one can be written with O_DIRECT
    (see ``Volume.put``)."""

    def __init__(self, keep: int = 8) -> None:
        self._free: dict[int, list[mmap.mmap]] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def acquire(self, size: int) -> mmap.mmap:
        cls = max(BLOCK, -(-size // BLOCK) * BLOCK)
        with self._lock:
            stack = self._free.get(cls)
            if stack:
                return stack.pop()
        return private_map(cls)

    def release(self, buf: mmap.mmap) -> None:
        with self._lock:
            stack = self._free.setdefault(len(buf), [])
            if len(stack) < self._keep:
                stack.append(buf)


@dataclass(frozen=True)
class FileRange:
    """Verified bytes [offset, offset+count) of an open chunk file (``size`` bytes whole); close() once sent."""

    fd: int
    offset: int
    count: int
    size: int

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True)
class _Span:
    """The checksum blocks a read of bytes [offset, end) of a chunk touches."""

    size: int
    hashes: bytes
    offset: int
    end: int

    @property
    def first(self) -> int:
        return self.offset // BLOCK

    @property
    def lo(self) -> int:
        return self.first * BLOCK

    @property
    def hi(self) -> int:
        """Where the last touched block ends (``lo`` for an empty range: nothing is read)."""
        if self.end <= self.offset:
            return self.lo
        return min(self.size, (max(self.offset, self.end - 1) // BLOCK + 1) * BLOCK)

    def blocks(self) -> range:
        return range(self.first, self.first + -(-(self.hi - self.lo) // BLOCK))

    def intact(self, b: int, blk: memoryview) -> bool:
        """Whether block ``b``'s bytes match its recorded checksum."""
        return xxhash.xxh3_64_digest(blk) == self.hashes[b * 8 : b * 8 + 8]


def _verified(chunk_id: str, data: memoryview, chunk_hash: str, crc: str) -> str:
    """The body's xxh3_64 hex, after checking it against the declared xxh3_64 or, when that is "", CRC32C."""
    actual = xxhash.xxh3_64_hexdigest(data)
    if chunk_hash and actual != chunk_hash.lower():
        raise ChecksumMismatch(f"chunk {chunk_id}: body hash {actual} != declared {chunk_hash}")
    if not chunk_hash:
        body_crc = f"{crc32c.crc32c(data):08x}"
        if body_crc != crc.lower():
            raise ChecksumMismatch(f"chunk {chunk_id}: body CRC32C {body_crc} != declared {crc}")
    return actual


def _supports_direct(root: Path) -> bool:
    """Whether files under ``root`` take O_DIRECT writes (tmpfs and some others refuse them). The probe file
    of a server killed while probing is removed by the next start's probe."""
    for stale in root.glob(".direct-probe-*"):
        stale.unlink(missing_ok=True)
    probe = root / f".direct-probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError:
        return False
    try:
        block = private_map(DIRECT_ALIGN)
        try:
            os.write(fd, block)
        except OSError:
            return False
        finally:
            block.close()
        return True
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def block_hashes(data: memoryview) -> bytes:
    return b"".join(xxhash.xxh3_64_digest(data[i : i + BLOCK]) for i in range(0, data.nbytes, BLOCK))


class Volume:
    def __init__(self, root: str | os.PathLike, max_bytes: int | None = None, throttle_mb: float = 0.0,
                 pack_below: int = 0, direct: bool = True) -> None:
        self.root = Path(root)
        # A chunk PUT alone of at most this many bytes is packed (group commit) rather than given a file.
        self.pack_below = min(pack_below, MAX_PACKED)
        self.io = IOStats(throttle_mb)  # counts every disk call below; --throttle paces them
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.corrupt_seen = 0
        self._lock = threading.Lock()
        self.packs = PackStore(self.root, self.io)
        self.used, self.chunks = self._scan()
        packed_bytes, packed_count = self.packs.usage()
        self.used, self.chunks = self.used + packed_bytes, self.chunks + packed_count
        # Prefix folders whose own entry in the volume root is known durable: those found at start (after
        # one fsync of the root) and those created since, each fsynced into the root once (_folder).
        self._durable = {sub.name for sub in self.root.iterdir() if sub.is_dir()}
        self._folder_lock = threading.Lock()
        self.io.fsync_dir(self.root)
        # Chunk files written straight from the request's buffer to the disk (see _write_chunk), unless
        # asked not to or the file system refuses O_DIRECT.
        self.direct = direct and _supports_direct(self.root)

    def _scan(self) -> tuple[int, int]:
        """Sizes of stored chunks (each inode once), after removing interrupted uploads."""
        used, count, inodes = 0, 0, set()
        for sub in self._folders():
            for f in sub.iterdir():
                if ".tmp-" in f.name:
                    log.info("removing interrupted upload %s", f)
                    f.unlink(missing_ok=True)
                    continue
                st = f.stat()
                count += 1
                if st.st_ino not in inodes:
                    inodes.add(st.st_ino)
                    used += st.st_size
        return used, count

    def chunk_ids(self, after: str = "") -> Iterator[str]:
        """Every stored chunk id greater than ``after``, in order, one folder at a time: the scrubber
        walks a volume with it, and ordered ids let a pass resume where it stopped."""
        return heapq.merge(self._file_ids(after), self.packs.ids(after))

    def _folders(self) -> Iterator[Path]:
        """The prefix folders of chunk files (not ``packs``)."""
        return (sub for sub in self.root.iterdir() if sub.is_dir() and len(sub.name) == 3)

    def _file_ids(self, after: str) -> Iterator[str]:
        folders = sorted(sub.name for sub in self._folders() if sub.name >= after[:3])
        for folder in folders:
            try:
                names = sorted(f.name for f in (self.root / folder).iterdir())
            except FileNotFoundError:
                continue
            for name in names:
                if name > after and CHUNK_ID_RE.match(name):  # not an upload in progress (.tmp-)
                    yield name

    def path(self, chunk_id: str) -> Path:
        check_chunk_id(chunk_id)
        return self.root / chunk_id[:3] / chunk_id

    def space(self) -> tuple[int, int]:
        """(free, total) bytes, bounded by the quota when there is one."""
        st = os.statvfs(self.root)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        if self.max_bytes is not None:
            total = min(total, self.max_bytes)
            free = max(0, min(free, self.max_bytes - self.used))
        return free, total

    def put(self, chunk_id: str, data: memoryview, chunk_hash: str, ref: dict, crc: str = "") -> str:
        """Store a chunk whose body matches ``chunk_hash`` (xxh3_64 hex) or, when that is "", ``crc``
        (CRC32C hex: what a client without xxh3, the Java connector, can declare). Returns the xxh3_64
        kept with the chunk, which every later read verifies."""
        if data.nbytes <= self.pack_below:
            (packed,) = self.put_batch([(chunk_id, data, chunk_hash, crc, ref)])
            return packed
        final = self.path(chunk_id)
        actual = _verified(chunk_id, data, chunk_hash, crc)
        if chunk_id in self.packs:
            raise AlreadyExists(f"chunk {chunk_id} already exists")
        self._reserve(data.nbytes)
        blocks = block_hashes(data)  # before the timed disk calls: CPU, not disk
        self._folder(final.parent)
        tmp = final.with_name(f"{chunk_id}.tmp-{secrets.token_hex(4)}")
        try:
            with self.io.transfer(data.nbytes):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self.io.count(files_created=1)
                try:
                    self._write_chunk(fd, data)
                    os.setxattr(fd, X + "hash", actual.encode())
                    os.setxattr(fd, X + "size", str(data.nbytes).encode())
                    os.setxattr(fd, X + "blocks", blocks)
                    os.setxattr(fd, X + "ref." + chunk_id, json.dumps(ref).encode())
                    self.io.count(xattr_writes=4)
                    self.io.fsync(fd)
                finally:
                    os.close(fd)
                if final.exists():
                    raise AlreadyExists(f"chunk {chunk_id} already exists")
                os.rename(tmp, final)
                self.io.count(renames=1)
                self.io.fsync_dir(final.parent)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            with self._lock:
                self.used -= data.nbytes
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise VolumeFull(f"volume {self.root} is full: {exc}") from exc
            raise
        with self._lock:
            self.chunks += 1
        return actual

    def _write_chunk(self, fd: int, data: memoryview) -> None:
        """The chunk's bytes, straight from ``data`` to the disk (O_DIRECT) where the volume and the buffer
        allow it, the last partial block through the page cache.

        Through the page cache, every byte is copied once more, into pages that must first be found, and
        the copy cost grew with the cache: from 1.6 to 5 CPU-s per GB on the storage servers within four
        rounds of writes here, against 0.07 straight from the buffer. A chunk is rarely read right after it
        is written (a scrub, a rebuild or a cold read comes later), so the cache gained nothing for it."""
        whole = data.nbytes - data.nbytes % DIRECT_ALIGN
        if self.direct and whole and aligned(data) and set_direct(fd, True):
            try:
                self.io.write(fd, data[:whole], direct=True)
                data = data[whole:]
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The file system took the probe's write but not this one: the cache from now on, and this
                # chunk again from its start (the file is ours alone, a temporary name).
                log.warning("volume %s refused an O_DIRECT write (%s): writing through the page cache", self.root, exc)
                self.direct = False
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            finally:
                set_direct(fd, False)
        if data.nbytes:
            self.io.write(fd, data)  # in 1 MiB calls (gridfs.common.fileio), paced and counted

    def _reserve(self, nbytes: int) -> None:
        """Count ``nbytes`` as used before writing them (the caller gives them back if the write fails)."""
        with self._lock:
            if self.space()[0] < nbytes:
                raise VolumeFull(f"volume {self.root} has no room for {nbytes} bytes")
            self.used += nbytes

    def put_batch(self, chunks: list[tuple[str, memoryview, str, str, dict]]) -> list[str]:
        """Store small chunks ``(id, body, xxh3_64 hex or "", crc32c hex or "", ref)`` in a pack, all or
        none, durable on return; their xxh3_64s, as ``put`` answers."""
        hashes = []
        for chunk_id, body, chunk_hash, crc, _ref in chunks:
            check_chunk_id(chunk_id)
            if body.nbytes > MAX_PACKED:
                raise BadRequest(f"chunk {chunk_id}: {body.nbytes} bytes; a batch carries chunks of at most "
                                 f"{MAX_PACKED} bytes")
            if self.path(chunk_id).exists():
                raise AlreadyExists(f"chunk {chunk_id} already exists")
            hashes.append(_verified(chunk_id, body, chunk_hash, crc))
        total = sum(c[1].nbytes for c in chunks)
        self._reserve(total)
        try:
            self.packs.append([NewChunk(c[0], c[1], h, c[4]) for c, h in zip(chunks, hashes, strict=True)])
        except BaseException as exc:
            with self._lock:
                self.used -= total
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise VolumeFull(f"volume {self.root} is full: {exc}") from exc
            raise
        with self._lock:
            self.chunks += len(chunks)
        return hashes

    def _packed(self, chunk_id: str) -> Packed:
        rec = self.packs.get(chunk_id)
        if rec is None:
            raise NoSuchChunk(f"no chunk {chunk_id}")
        return rec

    def exists(self, chunk_id: str) -> bool:
        return self.path(chunk_id).exists() or chunk_id in self.packs

    def identity(self, chunk_id: str) -> tuple[object, int]:
        """What identifies the chunk's bytes (shared by its hard links) and how many ids name them."""
        try:
            st = os.stat(self.path(chunk_id))
            return ("inode", st.st_ino), st.st_nlink
        except FileNotFoundError:
            rec = self._packed(chunk_id)
            return ("pack", rec.pack, rec.offset), self.packs.sharing(rec)

    def _folder(self, folder: Path) -> None:
        """Make the prefix folder a chunk goes in. A new one's name in the volume root is fsynced before any
        chunk in it is acknowledged: the folder's own fsync after the rename makes the chunk's entry durable,
        not the folder's entry in its parent. At most once per folder (4096 per volume)."""
        if folder.name in self._durable:
            return
        with self._folder_lock:  # a second writer must not acknowledge a chunk in it before this fsync
            if folder.name not in self._durable:
                folder.mkdir(exist_ok=True)
                self.io.fsync_dir(self.root)
                self._durable.add(folder.name)

    def meta(self, chunk_id: str) -> dict:
        path = self.path(chunk_id)
        try:
            size = int(os.getxattr(path, X + "size"))
            meta = {"chunk_id": chunk_id, "size": size, "hash": os.getxattr(path, X + "hash").decode()}
            with contextlib.suppress(OSError):
                meta.update(json.loads(os.getxattr(path, X + "ref." + chunk_id)))
            return meta
        except FileNotFoundError:
            rec = self._packed(chunk_id)
            return {"chunk_id": chunk_id, "size": rec.size, "hash": rec.hash, **rec.ref}

    def read(
        self, chunk_id: str, offset: int = 0, length: int | None = None, buffers: BufferPool | None = None
    ) -> tuple[memoryview, int, Buffer | None]:
        """Bytes [offset, offset+length) after verifying every block they touch, the chunk size, and the
        pooled buffer holding them (give it back to ``buffers`` once the bytes are sent)."""
        # Into a pooled (page-aligned) buffer, a volume written around the page cache is read around it too:
        # filling the cache with a chunk cost more than the read itself (see _write_chunk).
        if self.direct and buffers is not None:
            try:
                return self._read_file(chunk_id, offset, length, buffers, direct=True)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.warning("volume %s refused an O_DIRECT read (%s): reading through the page cache", self.root, exc)
                self.direct = False
        return self._read_file(chunk_id, offset, length, buffers, direct=False)

    def _read_file(
        self, chunk_id: str, offset: int, length: int | None, buffers: BufferPool | None, direct: bool
    ) -> tuple[memoryview, int, Buffer | None]:
        path = self.path(chunk_id)
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
        except FileNotFoundError:
            return self._read_packed(self._packed(chunk_id), offset, length, buffers)
        pooled = None
        try:
            span = self._span(fd, chunk_id, offset, length)
            pooled = buffers.acquire(span.hi - span.lo) if buffers is not None else bytearray(span.hi - span.lo)
            view = memoryview(pooled)[: span.hi - span.lo]
            # O_DIRECT reads whole blocks: the span's start is one (a checksum block, 1 MiB) and its end is
            # rounded up within the pooled buffer; the file's end stops the read where it stops.
            whole = memoryview(pooled)[: -(-view.nbytes // DIRECT_ALIGN) * DIRECT_ALIGN] if direct else view
            with self.io.transfer(view.nbytes):
                got = self.io.read(fd, whole, span.lo) if view.nbytes else 0
            if got < view.nbytes:
                self._corrupt(chunk_id, "size differs from its record")
            for b in span.blocks():
                if not span.intact(b, view[(b - span.first) * BLOCK : (b - span.first + 1) * BLOCK]):
                    self._corrupt(chunk_id, f"block {b} checksum mismatch")
            return view[offset - span.lo : span.end - span.lo], span.size, pooled if buffers is not None else None
        except BaseException:
            if buffers is not None and pooled is not None:
                buffers.release(pooled)
            raise
        finally:
            os.close(fd)

    def open_verified(self, chunk_id: str, offset: int, length: int, scratch: Buffer) -> FileRange | None:
        """The chunk file open at bytes [offset, offset+length), every block they touch verified (read a
        block at a time into ``scratch``, of BLOCK bytes, which stays in the CPU cache), for the caller
        to send with sendfile(2) and close: the bytes go from the page cache to the socket without
        passing through a buffer of ours. None for a packed chunk (read it with :meth:`read`)."""
        try:
            fd = os.open(self.path(chunk_id), os.O_RDONLY)
        except FileNotFoundError:
            self._packed(chunk_id)  # NoSuchChunk if it is not packed either
            return None
        try:
            span = self._span(fd, chunk_id, offset, length)
            with self.io.transfer(span.hi - span.lo):
                for b in span.blocks():
                    blk = memoryview(scratch)[: min(BLOCK, span.size - b * BLOCK)]
                    if self.io.read(fd, blk, b * BLOCK) != blk.nbytes:
                        self._corrupt(chunk_id, "size differs from its record")
                    if not span.intact(b, blk):
                        self._corrupt(chunk_id, f"block {b} checksum mismatch")
            return FileRange(fd, offset, span.end - offset, span.size)
        except BaseException:
            os.close(fd)
            raise

    def _span(self, fd: int, chunk_id: str, offset: int, length: int | None) -> _Span:
        """The checksum blocks bytes [offset, offset+length) of an open chunk file touch, once its record
        (size, block checksums) and its size on disk agree."""
        try:
            size = int(os.getxattr(fd, X + "size"))
            hashes = os.getxattr(fd, X + "blocks")
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
            self._corrupt(chunk_id, "its size or block checksums are lost")  # nothing to verify it against
        end = size if length is None else offset + length
        if offset < 0 or end > size or offset > end:
            raise InvalidRange(f"range {offset}-{end} outside chunk {chunk_id} of {size} bytes")
        if os.fstat(fd).st_size != size:
            self._corrupt(chunk_id, "size differs from its record")
        return _Span(size, hashes, offset, end)

    def _read_packed(
        self, rec: Packed, offset: int, length: int | None, buffers: BufferPool | None
    ) -> tuple[memoryview, int, Buffer | None]:
        """A packed chunk is one checksum block: read whole and verified, whatever the range."""
        end = rec.size if length is None else offset + length
        if offset < 0 or end > rec.size or offset > end:
            raise InvalidRange(f"range {offset}-{end} outside chunk {rec.chunk_id} of {rec.size} bytes")
        pooled = buffers.acquire(rec.size) if buffers is not None else bytearray(rec.size)
        try:
            view = memoryview(pooled)[: rec.size]
            with self.io.transfer(rec.size):
                got = self.packs.read(rec, view)
            if got != rec.size:
                self._corrupt(rec.chunk_id, "its pack is shorter than its record")
            if xxhash.xxh3_64_hexdigest(view) != rec.hash:
                self._corrupt(rec.chunk_id, "checksum mismatch")
            return view[offset:end], rec.size, pooled if buffers is not None else None
        except BaseException:
            if buffers is not None:
                buffers.release(pooled)
            raise

    def _corrupt(self, chunk_id: str, why: str) -> NoReturn:
        self.corrupt_seen += 1
        log.warning("corrupt chunk %s in %s: %s; not serving it", chunk_id, self.root, why)
        raise ChecksumMismatch(f"chunk {chunk_id} is corrupt ({why})")

    def delete(self, chunk_id: str) -> None:
        path = self.path(chunk_id)
        try:
            st = path.stat()
            with contextlib.suppress(OSError):
                os.removexattr(path, X + "ref." + chunk_id)
            path.unlink()
            self.io.count(unlinks=1)
        except FileNotFoundError:
            rec = self._packed(chunk_id)
            last = self.packs.delete(rec)
            with self._lock:
                self.chunks -= 1
                self.used -= rec.size if last else 0
            return
        with self._lock:
            self.chunks -= 1
            if st.st_nlink == 1:
                self.used -= st.st_size

    def listing(self, older_than: float) -> list[dict]:
        """Every chunk id last written more than ``older_than`` seconds ago, with its back-reference."""
        limit = time.time() - older_than
        out = [{"chunk_id": cid, "ref": ref} for cid, ref in self.packs.older_than(limit)]
        for sub in self._folders():
            for f in sub.iterdir():
                if ".tmp-" in f.name:
                    continue
                try:
                    if f.stat().st_mtime > limit:
                        continue
                    ref = json.loads(os.getxattr(f, X + "ref." + f.name))
                except (OSError, ValueError):
                    ref = {}
                out.append({"chunk_id": f.name, "ref": ref})
        return out

    def link(self, chunk_id: str, new_id: str, ref_update: dict | None = None) -> None:
        src, dst = self.path(chunk_id), self.path(new_id)
        if not src.exists():
            rec = self._packed(chunk_id)
            if dst.exists():
                raise AlreadyExists(f"chunk {new_id} already exists")
            self.packs.link(rec, new_id, {**rec.ref, **{k: v for k, v in (ref_update or {}).items() if v}})
            with self._lock:
                self.chunks += 1
            return
        if new_id in self.packs:
            raise AlreadyExists(f"chunk {new_id} already exists")
        self._folder(dst.parent)
        try:
            os.link(src, dst)
        except FileExistsError:
            raise AlreadyExists(f"chunk {new_id} already exists") from None
        ref = {}
        with contextlib.suppress(OSError):
            ref = json.loads(os.getxattr(src, X + "ref." + chunk_id))
        ref.update({k: v for k, v in (ref_update or {}).items() if v})
        os.setxattr(dst, X + "ref." + new_id, json.dumps(ref).encode())
        self.io.count(links=1, xattr_writes=1)
        fd = os.open(dst, os.O_RDONLY)
        try:
            self.io.fsync(fd)
        finally:
            os.close(fd)
        self.io.fsync_dir(dst.parent)
        with self._lock:
            self.chunks += 1
