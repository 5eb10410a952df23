"""One account's buckets seen as a Hadoop file system (blocking calls, run on the gateway's threads).

Semantics follow HDFS where an object store can keep them:

- a directory exists when objects lie under its prefix or its marker ``KEY/`` exists;
  MKDIRS writes a marker, and removing the last entry of a directory (DELETE, RENAME)
  writes one for it, so the directory stays as it would in HDFS;
- CREATE refuses a path below a file (ParentNotDirectoryException) or on a directory;
  missing parents (the bucket included) are created, as ``create`` does in HDFS;
- RENAME answers ``false`` where HDFS's rename does (no source, destination exists, its
  parent is missing, destination inside the source); onto an existing directory it
  moves the source into it. A file moves by one directory call (a metadata rename in
  the bucket; across buckets a server-side copy of linked chunks, then a delete).
  A directory moves object by object, 16 at a time, and is not atomic: if a move fails
  the rename stops and answers an IOException saying how many objects moved; those are
  under the destination, the rest still under the source (move what is left, entry by
  entry, to finish). Buckets are not renamed;
- DELETE of a directory deletes every object under it, 16 at a time; a failure stops it
  with an IOException and what was deleted stays deleted. A bucket is deleted with its
  objects (and unfinished multipart uploads) when ``recursive=true``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from gridfs.client import GridClient
from gridfs.client.reader import ObjectReader
from gridfs.common.errors import NoSuchContainer, NoSuchObject
from gridfs.directory.model import ContainerInfo, ObjectInfo
from gridfs.gateways.webhdfs import checksum
from gridfs.gateways.webhdfs.errors import WebHdfsError, bad_argument, not_found, unsupported
from gridfs.gateways.webhdfs.paths import HPath
from gridfs.gateways.webhdfs.status import Entry

DIR_MIME = "application/x-directory"
IN_FLIGHT = 16  # objects moved or deleted at once by a directory RENAME or DELETE
PAGE = 1000
LAST_CHAR = "\U0010ffff"  # after every key of a directory: resumes a listing past it


class Namespace:
    def __init__(self, client: GridClient, user: str, bulk: Executor) -> None:
        self.client = client
        self.user = user
        self.bulk = bulk
        self.policies = client.policies()

    # -- lookups ----------------------------------------------------------------------

    def _file(self, info: ObjectInfo) -> Entry:
        policy = self.policies.get(info.policy)
        copies = policy.copies if policy is not None and not policy.is_ec else 1
        return Entry("FILE", info.mtime, info.size, info.properties, info, copies)

    @staticmethod
    def _bucket(container: ContainerInfo) -> Entry:
        return Entry("DIRECTORY", container.ctime, properties=container.properties)

    def lookup(self, p: HPath) -> Entry | None:
        """The file or directory at ``p``, or None."""
        if p.is_root:
            return Entry("DIRECTORY")
        try:
            if p.is_bucket:
                return self._bucket(self.client.bucket_info(p.bucket, stats=False))
            try:
                return self._file(self.client.head(p.bucket, p.key))
            except NoSuchObject:
                pass
            page = self.client.list(p.bucket, prefix=p.prefix, max_keys=1)
        except NoSuchContainer:
            return None
        if page.objects and page.objects[0].key == p.marker:  # the marker sorts first under its prefix
            marker = page.objects[0]
            return Entry("DIRECTORY", marker.mtime, properties=marker.properties, info=marker)
        return Entry("DIRECTORY") if page.objects or page.prefixes else None

    def stat(self, p: HPath) -> Entry:
        entry = self.lookup(p)
        if entry is None:
            raise not_found(p.text)
        return entry

    def _is_file(self, bucket: str, key: str) -> bool:
        try:
            self.client.head(bucket, key)
            return True
        except (NoSuchObject, NoSuchContainer):
            return False

    def _check_parents(self, p: HPath) -> None:
        for parent in p.ancestors():
            if self._is_file(parent.bucket, parent.key):
                raise WebHdfsError("ParentNotDirectoryException", f"{parent.text} (is not a directory)")

    def _ensure_bucket(self, bucket: str) -> None:
        try:
            self.client.bucket_info(bucket, stats=False)
        except NoSuchContainer:
            self.client.create_bucket(bucket, exist_ok=True)

    def _keep(self, directory: HPath) -> None:
        """Write the marker of a directory that just lost its last entry, so it stays."""
        if directory.key and not self._holds_anything(directory):
            self.client.put(directory.bucket, directory.marker, b"", mime_type=DIR_MIME)

    def _holds_anything(self, p: HPath) -> bool:
        page = self.client.list(p.bucket, prefix=p.prefix, max_keys=1)
        return bool(page.objects or page.prefixes)

    # -- listings ---------------------------------------------------------------------

    def list_dir(self, p: HPath, start_after: str = "", limit: int | None = None) -> tuple[list[tuple[str, Entry]],
                                                                                          bool]:
        """The entries of a directory in key order, after the entry named ``start_after``; whether more follow.

        A file lists as itself, with the suffix "".
        """
        if "/" in start_after or "\x00" in start_after:
            raise bad_argument(f"Invalid value for webhdfs parameter \"startAfter\": {start_after!r}")
        if p.is_root:
            buckets = sorted(self.client.list_buckets(), key=lambda c: c.bucket)
            entries = [(c.bucket, self._bucket(c)) for c in buckets if c.bucket > start_after]
            return (entries[:limit], len(entries) > limit) if limit else (entries, False)
        if p.key:
            try:
                return [("", self._file(self.client.head(p.bucket, p.key)))], False
            except NoSuchObject:
                pass
        return self._list_prefix(p, start_after, limit)

    def _list_prefix(self, p: HPath, start_after: str, limit: int | None) -> tuple[list[tuple[str, Entry]], bool]:
        prefix, start, skip = p.prefix, "", ""
        if start_after:
            start = prefix + start_after
            if not self._is_file(p.bucket, start):  # it was a directory: resume past everything under it
                start, skip = start + "/" + LAST_CHAR, start + "/"
        out: list[tuple[str, Entry]] = []
        token, more, seen = "", True, False
        while more and (limit is None or len(out) < limit):
            page = self.client.list(p.bucket, prefix=prefix, delimiter="/", start_after=start, token=token,
                                    max_keys=min(PAGE, limit - len(out)) if limit else PAGE)
            seen = seen or bool(page.objects or page.prefixes)
            rows: list[tuple[str, ObjectInfo | None]] = [(o.key, o) for o in page.objects]
            rows += [(common, None) for common in page.prefixes]
            for position, info in sorted(rows, key=lambda row: row[0]):
                name = position[len(prefix):].removesuffix("/") if info is None else position[len(prefix):]
                if not name or position == skip or (info is not None and position == prefix):
                    continue  # this directory's own marker, or an empty name (a key with "//")
                out.append((name, Entry("DIRECTORY") if info is None else self._file(info)))
            more, token = page.truncated, page.next_token
        if not seen and not start_after and p.key:
            raise not_found(p.text)
        return out, more

    def walk(self, p: HPath) -> Iterator[tuple[str, ObjectInfo]]:
        """Every object under a directory (markers included), with its bucket."""
        buckets = [p.bucket] if p.bucket else [c.bucket for c in self.client.list_buckets()]
        for bucket in buckets:
            for info in self.client.iter_list(bucket, prefix=p.prefix):
                if not isinstance(info, str):
                    yield bucket, info

    def content_summary(self, p: HPath) -> dict[str, Any]:
        entry = self.stat(p)
        files = length = consumed = 0
        directories: set[str] = set()  # below p, by path relative to it

        def add(info: ObjectInfo) -> None:
            nonlocal files, length, consumed
            policy = self.policies.get(info.policy)
            files += 1
            length += info.size
            consumed += int(info.size * (policy.overhead if policy else 1))

        if not entry.is_dir:
            add(entry.info)  # type: ignore[arg-type]
        else:
            for bucket, info in self.walk(p):
                rel = (info.key[len(p.prefix):] if p.bucket else f"{bucket}/{info.key}").split("/")
                directories.update("/".join(rel[: i + 1]) for i in range(len(rel) - 1))
                if not info.key.endswith("/"):
                    add(info)
            if p.is_root:  # empty buckets too
                directories.update(c.bucket for c in self.client.list_buckets())
        return {"ContentSummary": {
            "directoryCount": len(directories) + (1 if entry.is_dir else 0), "fileCount": files, "length": length,
            "spaceConsumed": consumed, "quota": -1, "spaceQuota": -1, "typeQuota": {}, "ecPolicy": "",
        }}

    # -- changes ------------------------------------------------------------------------

    def mkdirs(self, p: HPath, properties: dict[str, str]) -> bool:
        if p.is_root:
            return True
        existing = self.lookup(p)
        if existing is not None:
            if existing.is_dir:
                return True
            raise WebHdfsError("FileAlreadyExistsException", f"Path is not a directory: {p.text}")
        if p.is_bucket:
            self.client.create_bucket(p.bucket, exist_ok=True, properties=properties)
            return True
        self._check_parents(p)
        self._ensure_bucket(p.bucket)
        self.client.put(p.bucket, p.marker, b"", properties=properties, mime_type=DIR_MIME)
        return True

    def check_create(self, p: HPath, overwrite: bool, create_parent: bool) -> None:
        """Refuse a CREATE before any byte is sent."""
        existing = self.lookup(p)
        if p.is_root or p.is_bucket or (existing is not None and existing.is_dir):
            raise WebHdfsError("FileAlreadyExistsException", f"{p.text} already exists as a directory")
        if existing is not None and not overwrite:
            raise WebHdfsError("FileAlreadyExistsException", f"{p.text} already exists")
        self._check_parents(p)
        if not create_parent and self.lookup(p.parent) is None:
            raise WebHdfsError("FileNotFoundException", f"Parent directory doesn't exist: {p.parent.text}")

    def create(self, p: HPath, pieces: Iterable[bytes], overwrite: bool, properties: dict[str, str]) -> ObjectInfo:
        """Store a file from a stream of pieces (after :meth:`check_create`)."""
        self._ensure_bucket(p.bucket)
        return self.client.put(p.bucket, p.key, iter(pieces), properties=properties, if_none_match=not overwrite)

    def set_attributes(self, p: HPath, properties: dict[str, str]) -> None:
        """SETTIMES, SETPERMISSION, SETOWNER: object (or marker, or bucket) properties."""
        if p.is_root:
            raise unsupported("the root directory keeps no attributes")
        if p.is_bucket:
            try:
                container = self.client.bucket_info(p.bucket, stats=False)
            except NoSuchContainer:
                raise not_found(p.text) from None
            self.client.set_bucket_properties(p.bucket, {**container.properties, **properties})
            return
        entry = self.stat(p)
        if not entry.is_dir:
            self.client.set_properties(p.bucket, p.key, dict(properties))
        elif entry.info is not None:
            self.client.set_properties(p.bucket, p.marker, dict(properties))
        else:  # a directory implied by keys: it gets a marker to hold its attributes
            self.client.put(p.bucket, p.marker, b"", properties=properties, mime_type=DIR_MIME)

    def rename(self, src: HPath, dst: HPath) -> bool:
        if src.is_bucket:
            raise unsupported(f"{src.text} is a bucket: buckets cannot be renamed")
        source = self.lookup(src)
        if src.is_root or source is None or dst.is_under(src):
            return False
        target = self.lookup(dst)
        if target is not None and target.is_dir and dst != src:
            dst = dst.child(src.name)  # into an existing directory, as HDFS does
            target = self.lookup(dst)
        if dst == src:
            return True
        if target is not None or dst.is_root or dst.is_bucket:
            return False
        parent = self.lookup(dst.parent)
        if parent is None or not parent.is_dir:
            return False
        if source.is_dir:
            self._move_tree(src, dst)
        else:
            self._move(src.bucket, src.key, dst.bucket, dst.key)
        self._keep(src.parent)
        return True

    def _move(self, bucket: str, key: str, dst_bucket: str, dst_key: str) -> None:
        if bucket == dst_bucket:
            self.client.rename(bucket, key, dst_key)  # metadata only
        else:
            self.client.copy(bucket, key, dst_bucket, dst_key)  # chunks linked, no data moves
            self.client.delete(bucket, key)

    def _move_tree(self, src: HPath, dst: HPath) -> None:
        keys = (info.key for _, info in self.walk(src))
        self._each(lambda key: self._move(src.bucket, key, dst.bucket, dst.prefix + key[len(src.prefix):]),
                   keys, f"rename of {src.text} to {dst.text}")

    def delete(self, p: HPath, recursive: bool) -> bool:
        entry = self.lookup(p)
        if p.is_root or entry is None:
            return False
        if not entry.is_dir:
            self.client.delete(p.bucket, p.key)
            self._keep(p.parent)
            return True
        if not recursive:
            page = self.client.list(p.bucket, prefix=p.prefix, max_keys=2)
            if page.prefixes or any(o.key != p.marker for o in page.objects):
                raise WebHdfsError("PathIsNotEmptyDirectoryException", f"`{p.text} is non empty': Directory is not "
                                   "empty")
        self._each(lambda key: self._delete_key(p.bucket, key), (info.key for _, info in self.walk(p)),
                   f"delete of {p.text}")
        if p.is_bucket:
            for upload in self.client.list_multipart(p.bucket):
                self.client.abort_multipart(p.bucket, upload.key, upload.upload_id)
            self.client.delete_bucket(p.bucket)
        else:
            self._keep(p.parent)
        return True

    def _delete_key(self, bucket: str, key: str) -> None:
        with contextlib.suppress(NoSuchObject):  # deleted by someone else meanwhile: gone either way
            self.client.delete(bucket, key)

    def _each(self, fn: Callable[[str], Any], keys: Iterable[str], what: str) -> int:
        """Apply ``fn`` to every key, IN_FLIGHT at a time on the bulk pool; stop at the first failure."""
        window: deque[Future[Any]] = deque()
        done = 0
        failure: BaseException | None = None
        it = iter(keys)
        while True:
            while failure is None and len(window) < IN_FLIGHT and (key := next(it, None)) is not None:
                window.append(self.bulk.submit(fn, key))
            if not window:
                break
            try:
                window.popleft().result()
                done += 1
            except Exception as exc:  # let the ones in flight finish, submit no more
                failure = failure or exc
        if failure is not None:
            raise WebHdfsError("IOException", f"{what} stopped after {done} objects: {failure}") from failure
        return done

    # -- reads ---------------------------------------------------------------------------

    def file(self, p: HPath) -> Entry:
        entry = self.stat(p)
        if entry.is_dir:
            raise WebHdfsError("FileNotFoundException", f"Path is not a file: {p.text}")
        return entry

    def reader(self, p: HPath) -> ObjectReader:
        if p.key:
            try:
                return self.client.reader(p.bucket, p.key)
            except NoSuchObject:
                pass
        self.file(p)  # says why: a directory, or nothing there
        raise not_found(p.text)

    def file_checksum(self, p: HPath) -> dict[str, Any]:
        entry = self.file(p)
        info = entry.info
        assert info is not None
        block = entry.block_size()
        tag = checksum.cache_tag(info.content_id, block)
        cached = info.properties.get(checksum.CACHE_PROP, "")
        if cached.startswith(tag):
            algorithm, _, raw = cached[len(tag):].partition("/")
            return {"FileChecksum": {"algorithm": algorithm, "bytes": raw, "length": len(raw) // 2}}
        reader = self.client.reader(p.bucket, p.key)
        result = checksum.compute(reader.iter_range(0, reader.info.size), block)
        tag = checksum.cache_tag(reader.info.content_id, block)
        cached = f"{tag}{result['algorithm']}/{result['bytes']}"
        with contextlib.suppress(NoSuchObject):  # deleted meanwhile: the answer stands for the bytes read
            self.client.set_properties(p.bucket, p.key, {checksum.CACHE_PROP: cached})
        return {"FileChecksum": result}

    def block_locations(self, p: HPath, offset: int, length: int, host: str) -> dict[str, Any]:
        """One location per block of the file's block size: the gateway serves every byte."""
        entry = self.file(p)
        block, end = entry.block_size(), min(entry.size, offset + length)
        blocks = []
        for start in range(offset - offset % block, end, block):
            blocks.append({
                "offset": start, "length": min(block, entry.size - start), "corrupt": False,
                "hosts": [host.rsplit(":", 1)[0]], "names": [host], "topologyPaths": [f"/default-rack/{host}"],
                "cachedHosts": [], "storageIds": [], "storageTypes": ["DISK"],
            })
        return {"BlockLocations": {"BlockLocation": blocks}}
