"""Sources and destinations: local or mounted paths, any fsspec URL, and the grid.

A source lists itself (the top level first, so ranks can share the walk) and opens a
file at an offset. A destination knows what it already holds, stores a file or one
part of it, assembles parts, renames and deletes. Local paths are read with plain
unbuffered files (the grid client reads them straight into its stripe buffers);
``grid://`` destinations go through ``GridClient``; other URLs (s3://...) through fsspec.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import functools
import grp
import os
import posixpath
import pwd
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from grid_distcp.tasks import FileEntry
from gridfs.common.fileio import DIRECT_WRITE_MIN, SinkFile, SourceFile, private_map


class JobError(Exception):
    """A source or destination the job cannot use at all: it stops before copying anything."""


@functools.cache
def _owner(uid: int) -> str:
    return _name_or_number(pwd.getpwuid, uid)


@functools.cache
def _group(gid: int) -> str:
    return _name_or_number(grp.getgrgid, gid)


def _name_or_number(lookup: Any, number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:  # an id without an entry (files from another machine)
        return str(number)


def _pump(reader: Any, size: int, write: Any) -> None:
    """Copy a source reader (which checksums what it reads) to ``write``, through one buffer: for a large
    file a page-aligned map, which a local destination writes straight to the disk (SinkFile)."""
    n = copy_buffer_size(size)
    view = memoryview(private_map(n) if size >= DIRECT_WRITE_MIN else bytearray(n))
    while n := reader.readinto(view):
        write(view[:n])


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _strip_file_scheme(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


# -- sources ---------------------------------------------------------------------


class LocalSource:
    """A file or a tree on a local or mounted filesystem (NFS, Lustre...)."""

    def __init__(self, url: str, index: int = 0) -> None:
        self.index = index
        self.root = os.path.abspath(_strip_file_scheme(url))
        if not os.path.exists(self.root):
            raise JobError(f"source {url!r} does not exist")
        self.name = os.path.basename(self.root.rstrip("/"))

    def _entry(self, path: str, rel: str) -> FileEntry:
        try:
            st = os.stat(path)
        except OSError as exc:  # a dangling symlink, or the file went away
            return FileEntry(self.index, path, rel, 0, 0.0, error=f"cannot stat: {exc.strerror}")
        entry = FileEntry(self.index, path, rel, st.st_size, st.st_mtime, stat.S_IMODE(st.st_mode),
                          _owner(st.st_uid), _group(st.st_gid))
        if not stat.S_ISREG(st.st_mode):
            entry.error = "not a regular file"
        elif not os.access(path, os.R_OK):
            entry.error = "permission denied"
        return entry

    def top(self) -> tuple[list[FileEntry], list[str]]:
        """Files directly under the root (or the root itself), and the sub-directories to walk."""
        if not os.path.isdir(self.root):
            return [self._entry(self.root, os.path.basename(self.root))], []
        files, dirs = [], []
        try:
            with os.scandir(self.root) as it:
                for d in it:
                    if d.is_dir(follow_symlinks=False):
                        dirs.append(d.name)
                    else:
                        files.append(self._entry(d.path, d.name))
        except OSError as exc:
            raise JobError(f"cannot list source {self.root!r}: {exc.strerror}") from exc
        return files, dirs

    def walk(self, rel_dir: str) -> list[FileEntry]:
        out: list[FileEntry] = []
        stack = [rel_dir]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(os.path.join(self.root, rel)) as it:
                    for d in it:
                        child = f"{rel}/{d.name}"
                        if d.is_dir(follow_symlinks=False):
                            stack.append(child)
                        else:
                            out.append(self._entry(d.path, child))
            except OSError as exc:
                out.append(FileEntry(self.index, os.path.join(self.root, rel), rel + "/", 0, 0.0,
                                     error=f"cannot list directory: {exc.strerror}"))
        return out

    def open(self, entry: FileEntry, offset: int = 0) -> BinaryIO:
        # Straight from the disk when large and not in the page cache (gridfs.common.fileio): a backup reads
        # each file once, and the host's cache is better left to what its own jobs read.
        f = SourceFile(entry.url, offset)
        if not f.direct:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(f.fileno(), offset, 0, os.POSIX_FADV_SEQUENTIAL)
        return f  # type: ignore[return-value]


def _mtime(info: dict[str, Any]) -> float:
    if isinstance(info.get("modificationTime"), int | float):  # WebHDFS: milliseconds
        return info["modificationTime"] / 1000
    for key in ("mtime", "LastModified", "last_modified", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(TypeError, ValueError):
            return float(value)
    return 0.0


class FsspecSource:
    """Any fsspec URL: hdfs:// (pyarrow), webhdfs:// (fsspec's own, over ``requests``), s3://, grid://..."""

    def __init__(self, url: str, index: int = 0) -> None:
        import fsspec

        self.index = index
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
            exists = self.fs.exists(self.root)
        except (ImportError, ValueError, OSError) as exc:
            raise JobError(f"cannot open source {url!r}: {exc}") from exc
        if not exists:
            raise JobError(f"source {url!r} does not exist")
        self.root = self.root.rstrip("/")
        self.name = posixpath.basename(self.root)

    def _entry(self, info: dict[str, Any]) -> FileEntry:
        path = info["name"].rstrip("/")
        rel = path[len(self.root) + 1:] if path != self.root else posixpath.basename(path)
        checksum = str(info.get("checksum") or "")
        return FileEntry(self.index, path, rel, int(info.get("size") or 0), _mtime(info), checksum=checksum)

    def top(self) -> tuple[list[FileEntry], list[str]]:
        if self.fs.isfile(self.root):
            return [self._entry(self.fs.info(self.root))], []
        files, dirs = [], []
        for info in self.fs.ls(self.root, detail=True):
            if info["type"] == "directory":
                dirs.append(posixpath.basename(info["name"].rstrip("/")))
            else:
                files.append(self._entry(info))
        return files, dirs

    def walk(self, rel_dir: str) -> list[FileEntry]:
        found = self.fs.find(f"{self.root}/{rel_dir}", detail=True)
        return [self._entry(info) for info in found.values() if info["type"] != "directory"]

    def open(self, entry: FileEntry, offset: int = 0) -> BinaryIO:
        f = self.fs.open(entry.url, "rb", block_size=8 * 1024 * 1024, cache_type="readahead")
        if offset:
            f.seek(offset)
        return f


def open_source(url: str, index: int = 0) -> LocalSource | FsspecSource:
    return LocalSource(url, index) if _is_local(url) else FsspecSource(url, index)


# -- destinations ----------------------------------------------------------------


@dataclass
class Existing:
    """What the destination already holds under a key."""

    size: int
    mtime: float  # the source mtime recorded at copy time, or the object's own
    checksum: str = ""
    properties: dict[str, str] = field(default_factory=dict)


MTIME_PROP = "distcp.mtime"
COPY_BUFFER = 8 * 1024 * 1024


def copy_buffer_size(size: int) -> int:
    """A small file gets a small buffer: zero-filling 8 MiB per file would cost more than copying it."""
    return max(1, min(COPY_BUFFER, size))
PARTS_PROP = "distcp.parts"


def fmt_mtime(mtime: float) -> str:
    return f"{mtime:.6f}"


class GridDestination:
    """``grid://bucket/prefix``: objects in the grid, written through the client library."""

    splits = True  # big files go as parts, assembled by the directory

    def __init__(self, url: str, config: str | None) -> None:
        from gridfs.client import GridClient

        rest = url[len("grid://"):].strip("/")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise JobError(f"destination {url!r} names no bucket")
        self.prefix = prefix.strip("/")
        self.url = url
        self.config = config
        self.client = GridClient(config)

    def key(self, rel: str, staging: str = "") -> str:
        parts = [p for p in (self.prefix, staging, rel) if p]
        return "/".join(parts)

    def validate(self, key: str) -> str:
        """Why the grid would refuse this key ("" when it takes it)."""
        from gridfs.common.names import check_key

        try:
            check_key(key)
        except ValueError as exc:
            return str(exc)
        return ""


    def ensure_bucket(self, create: bool, policy: str | None) -> bool:
        """True when the bucket had to be created."""
        from gridfs.common.errors import NoSuchContainer

        try:
            self.client.bucket_info(self.bucket)
            return False
        except NoSuchContainer as exc:
            if not create:
                raise JobError(f"destination bucket {self.bucket!r} does not exist (and -no-create was given)") from exc
            self.client.create_bucket(self.bucket, policy=policy or "", exist_ok=True)
            return True

    def existing(self, staging: str = "") -> dict[str, Existing]:
        """What the destination holds (nothing when the bucket does not exist yet: -dry-run)."""
        from gridfs.common.errors import NoSuchContainer

        base = self.key("", staging)
        out = {}
        try:
            listing = list(self.client.iter_list(self.bucket, prefix=base + "/" if base else ""))
        except NoSuchContainer:
            return {}
        for info in listing:
            if isinstance(info, str):
                continue
            props = info.properties
            mtime = float(props[MTIME_PROP]) if MTIME_PROP in props else info.mtime
            out[info.key[len(base) + 1:] if base else info.key] = Existing(info.size, mtime, info.hash, props)
        return out

    def put(self, key: str, reader: Any, size: int, policy: str | None, props: dict[str, str]) -> str:
        """Stored through the client; returns the checksum the grid recorded for the object."""
        chosen = self.client.choose_policy(self.bucket, policy, size).name
        info = self.client.put(self.bucket, key, reader, policy=chosen, properties=props)
        return info.hash

    def batchable(self, size: int, policy: str | None) -> bool:
        """Whether a file of ``size`` bytes can go in a ``put_many`` batch (one metachunk of small chunks)."""
        from gridfs.client.batch import fits_batch

        return fits_batch(self.client.choose_policy(self.bucket, policy, size), size, self.client.config.chunk_size)

    def put_many(self, items: list[tuple[str, Any, dict[str, str]]], policy: str | None) -> list[str]:
        """Small files ``(key, bytes, properties)`` stored together: one chunk request per storage server and
        one directory commit, all or none. Returns the checksums the grid recorded, in order."""
        return [info.hash for info in self.client.put_many(self.bucket, items, policy=policy)]

    def part_size(self, policy: str | None, target: int) -> int:
        """A part size in whole metachunks, so that every stripe of the object stays full."""
        from gridfs.coding.policies import get_policy
        from gridfs.common.errors import NoSuchContainer

        try:
            chosen = self.client.choose_policy(self.bucket, policy, None)
        except NoSuchContainer:  # -dry-run before the bucket exists: the namespace default
            chosen = get_policy(policy or self.client.config.default_policy, self.client.config.policies)
        stripe = chosen.metachunk_size(self.client.config.chunk_size)
        return max(1, round(target / stripe)) * stripe

    def start_upload(self, key: str, policy: str | None, props: dict[str, str]) -> tuple[str, dict[int, str]]:
        """Reuse an unfinished upload of the same source version (resume), else start one.

        Returns the upload id and the parts already stored, by number, with their checksums.
        """
        for up in self.client.list_multipart(self.bucket, prefix=key):
            if up.key != key or MTIME_PROP not in up.properties:
                continue
            if up.properties == props:
                return up.upload_id, {p.part_number: p.etag for p in self.client.list_parts(self.bucket, up.upload_id)}
            self.client.abort_multipart(self.bucket, key, up.upload_id)  # a stale upload of an older source
        up = self.client.create_multipart(self.bucket, key, policy=policy, properties=props)
        return up.upload_id, {}

    def put_part(self, key: str, upload_id: str, number: int, reader: Any) -> str:
        return self.client.upload_part(self.bucket, key, upload_id, number, reader).etag

    def complete(self, key: str, upload_id: str, parts: int, part_size: int) -> list[str]:
        """Assemble the parts (no data is copied) and return their checksums in order."""
        stored = {p.part_number: p.etag for p in self.client.list_parts(self.bucket, upload_id)}
        missing = [n for n in range(1, parts + 1) if n not in stored]
        if missing:
            raise RuntimeError(f"parts {missing} of {key} are not stored")
        hashes = [stored[n] for n in range(1, parts + 1)]
        self.client.complete_multipart(self.bucket, key, upload_id, [(n, stored[n]) for n in range(1, parts + 1)],
                                       properties={PARTS_PROP: f"{part_size}:" + ",".join(hashes)})
        return hashes

    def rename(self, src_key: str, dst_key: str) -> None:
        self.client.rename(self.bucket, src_key, dst_key)

    def delete(self, key: str) -> None:
        self.client.delete(self.bucket, key)


class LocalDestination:
    """A local or mounted folder (restores): each file written to a temporary name, fsynced, renamed."""

    splits = False

    def __init__(self, url: str) -> None:
        self.root = os.path.abspath(_strip_file_scheme(url))

    def key(self, rel: str, staging: str = "") -> str:
        return "/".join(p for p in (staging, rel) if p)

    def validate(self, key: str) -> str:
        try:
            self._path(key)
        except ValueError as exc:
            return str(exc)
        return ""

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"key {key!r} escapes the destination folder")
        return path

    def ensure_bucket(self, create: bool, policy: str | None) -> bool:
        if os.path.isdir(self.root):
            return False
        if not create:
            raise JobError(f"destination folder {self.root!r} does not exist (and -no-create was given)")
        os.makedirs(self.root, exist_ok=True)
        return True

    def existing(self, staging: str = "") -> dict[str, Existing]:
        out = {}
        base = os.path.join(self.root, staging) if staging else self.root
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if ".distcp-tmp-" in name:
                    continue
                path = os.path.join(dirpath, name)
                st = os.stat(path)
                out[os.path.relpath(path, base).replace(os.sep, "/")] = Existing(st.st_size, st.st_mtime)
        return out

    def put(self, key: str, reader: Any, size: int, policy: str | None, props: dict[str, str]) -> None:
        """Written to a temporary name, fsynced, renamed. A folder keeps no checksum of its own: None."""
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".distcp-tmp-", dir=os.path.dirname(path))
        try:
            _pump(reader, size, SinkFile(fd, size).write)  # large: straight to the disk
            os.fsync(fd)
            os.close(fd)
            if MTIME_PROP in props:
                t = float(props[MTIME_PROP])
                os.utime(tmp, (t, t))
            if "distcp.mode" in props:
                os.chmod(tmp, int(props["distcp.mode"], 8))
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def rename(self, src_key: str, dst_key: str) -> None:
        dst = self._path(dst_key)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(self._path(src_key), dst)

    def delete(self, key: str) -> None:
        os.unlink(self._path(key))


class FsspecDestination:
    """Any other fsspec URL (s3://, webhdfs://, ...): files written whole, as the filesystem writes them.

    Object stores commit a file on close, so a failed copy leaves nothing. Split parts, modes and owners
    need the grid; here each file is one stream and only its bytes are copied.
    """

    splits = False

    def __init__(self, url: str) -> None:
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise JobError(f"cannot open destination {url!r}: {exc}") from exc
        self.root = root.rstrip("/")
        self.url = url

    def key(self, rel: str, staging: str = "") -> str:
        return "/".join(p for p in (self.root, staging, rel) if p)

    def validate(self, key: str) -> str:
        return ""  # the filesystem answers for itself when the file is written


    def ensure_bucket(self, create: bool, policy: str | None) -> bool:
        if self.fs.exists(self.root):
            return False
        if not create:
            raise JobError(f"destination {self.url!r} does not exist (and -no-create was given)")
        self.fs.makedirs(self.root, exist_ok=True)
        return True

    def existing(self, staging: str = "") -> dict[str, Existing]:
        base = self.key("", staging)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        return {info["name"][len(base) + 1:]: Existing(int(info.get("size") or 0), _mtime(info))
                for info in found.values() if info.get("type") != "directory" and info["name"].startswith(base + "/")}

    def put(self, key: str, reader: Any, size: int, policy: str | None, props: dict[str, str]) -> None:
        """Written whole and committed on close; no checksum of its own is read back: None."""
        with self.fs.open(key, "wb") as f:
            _pump(reader, size, f.write)

    def rename(self, src_key: str, dst_key: str) -> None:
        self.fs.mv(src_key, dst_key)

    def delete(self, key: str) -> None:
        self.fs.rm(key)


def open_destination(url: str, config: str | None) -> GridDestination | LocalDestination | FsspecDestination:
    if url.startswith("grid://"):
        return GridDestination(url, config)
    if _is_local(url):
        return LocalDestination(url)
    return FsspecDestination(url)
