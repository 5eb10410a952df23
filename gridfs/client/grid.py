"""``GridClient``: the documented Python API of the grid.

Buckets map to directory containers of one account. Every write stores chunks first
and commits the directory record last; every read resolves the record, then reads
chunks directly from the storage servers. Chunks that a commit, delete or rename leaves
unreferenced are deleted by the event handlers fed by the directory's durable log, not
here: a client that dies after its commit must not leak them. The client only cleans
up chunks it wrote and the directory refused to record (see ``commits``). Instances
are picklable and safe to use after ``fork`` (pools are rebuilt in the child), so Dask
and MPI can ship them.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gridfs.client.batch import SmallObject, fits_batch, write_small
from gridfs.client.buffers import BufferPool
from gridfs.client.commits import commit_or_discard
from gridfs.client.context import IOContext
from gridfs.client.reader import ObjectReader
from gridfs.client.sources import PutData, known_size, peek
from gridfs.client.writer import ObjectWriter, WriteResult
from gridfs.coding.policies import StoragePolicy, all_policies, get_policy
from gridfs.common.config import DEFAULT_ACCOUNT, GridConfig
from gridfs.common.errors import GridError, NoSuchObject, NoSuchUpload
from gridfs.common.fileio import SinkFile
from gridfs.common.names import check_bucket, check_key, new_chunk_id
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import LOCK_PROPS, ContainerInfo, ListResult, ObjectInfo, PartInfo, UploadInfo
from gridfs.storage.client import ChunkClient

log = logging.getLogger("gridfs.client")
Progress = Callable[[int], Any] | None

# Chunk transfers in flight per client: enough for two EC 6+3 metachunks each way.
CHUNK_THREADS = 24
# put_many: objects (and bytes) per batch of chunk requests and directory commit.
BATCH_OBJECTS = 256
BATCH_BYTES = 16 << 20
# How long a bucket's policy is trusted before asking the directory again.
BUCKET_POLICY_TTL = 5.0


def _small_bytes(data: PutData) -> memoryview:
    """A small object's bytes: bytes-like as is, a path or file read whole."""
    if isinstance(data, bytes | bytearray | memoryview):
        return memoryview(data).cast("B")
    if isinstance(data, str | os.PathLike):
        return memoryview(Path(data).read_bytes())
    if hasattr(data, "read"):
        return memoryview(data.read())
    return memoryview(bytes(data))  # a numpy array


def _checked(writer: ObjectWriter, before_commit: Callable[[], Any] | None) -> Any:
    """Run ``before_commit`` once the data is stored; if it raises, the stored chunks are discarded."""
    if before_commit is None:
        return None
    try:
        return before_commit()
    except BaseException:
        writer.discard()
        raise


class GridClient:
    def __init__(
        self,
        config: GridConfig | str | os.PathLike | None = None,
        account: str = DEFAULT_ACCOUNT,
        depth: int = 3,
    ) -> None:
        self.config = config if isinstance(config, GridConfig) else GridConfig.load(config)
        self.account = account
        self.depth = depth
        self.directory = DirectoryClient(self.config.directory_url, self.config.secret)
        self.conscience = ConscienceClient(self.config.conscience_url, self.config.secret)
        self._ctx: IOContext | None = None
        self._ctx_pid = 0
        self._ctx_lock = threading.Lock()
        self._bucket_policy: dict[str, tuple[str, float]] = {}

    # -- plumbing -----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ctx"], state["_ctx_pid"], state["_bucket_policy"] = None, 0, {}
        del state["_ctx_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ctx_lock = threading.Lock()

    @property
    def io(self) -> IOContext:
        """The I/O context, built lazily and rebuilt in a forked child."""
        if self._ctx is None or self._ctx_pid != os.getpid():
            with self._ctx_lock:
                if self._ctx is None or self._ctx_pid != os.getpid():
                    services = CachedServices(self.conscience, "rawx", ttl=1.0)
                    self._ctx = IOContext(
                        chunks=ChunkClient.for_grid(self.config, services),  # service ids resolved from the list
                        services=services,
                        chunk_pool=ThreadPoolExecutor(CHUNK_THREADS, thread_name_prefix="grid-chunk"),
                        meta_pool=ThreadPoolExecutor(self.depth * 2, thread_name_prefix="grid-meta"),
                        prefetch_pool=ThreadPoolExecutor(self.depth, thread_name_prefix="grid-prefetch"),
                        buffers=BufferPool(keep=self.depth * 4 + 4),  # data and parity in flight
                        chunk_size=self.config.chunk_size,
                        depth=self.depth,
                    )
                    self._ctx_pid = os.getpid()
        return self._ctx

    def close(self) -> None:
        if self._ctx is not None and self._ctx_pid == os.getpid():
            self._ctx.shutdown()
        self._ctx = None

    def __enter__(self) -> GridClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def policies(self) -> dict[str, StoragePolicy]:
        return all_policies(self.config.policies)

    def choose_policy(self, bucket: str, explicit: str | None, size: int | None) -> StoragePolicy:
        """Explicit policy, else the bucket's, else the namespace's choice by size."""
        if explicit:
            return get_policy(explicit, self.config.policies)
        cached = self._bucket_policy.get(bucket)
        if cached is None or time.monotonic() - cached[1] > BUCKET_POLICY_TTL:
            policy = self.directory.get_container(self.account, bucket, stats=False).policy
            cached = self._bucket_policy[bucket] = (policy, time.monotonic())
        return get_policy(cached[0] or self.config.policy_for_size(size), self.config.policies)

    # -- buckets ------------------------------------------------------------------

    def create_bucket(
        self,
        bucket: str,
        *,
        policy: str = "",
        versioning: bool = False,
        exist_ok: bool = False,
        properties: dict[str, str] | None = None,
    ) -> ContainerInfo:
        if policy:
            get_policy(policy, self.config.policies)  # refuse unknown names before creating
        try:
            return self.directory.create_container(
                self.account, bucket, policy=policy, versioning=versioning, properties=properties
            )
        except FileExistsError:
            if not exist_ok:
                raise
            return self.directory.get_container(self.account, bucket)

    def delete_bucket(self, bucket: str) -> None:
        self._bucket_policy.pop(bucket, None)
        self.directory.delete_container(self.account, bucket)

    def bucket_info(self, bucket: str, *, stats: bool = True) -> ContainerInfo:
        """A bucket's settings; ``stats`` adds its object count and bytes (a scan: slower)."""
        return self.directory.get_container(self.account, bucket, stats=stats)

    def list_buckets(self, *, stats: bool = True) -> list[ContainerInfo]:
        """The account's buckets; ``stats`` (object count and bytes) costs a scan of each."""
        return self.directory.list_containers(self.account, stats=stats)

    def set_versioning(self, bucket: str, state: str) -> ContainerInfo:
        return self.directory.set_container(self.account, bucket, versioning=state)

    def set_bucket_properties(self, bucket: str, properties: dict[str, str]) -> ContainerInfo:
        """Replace a bucket's properties (owner, ACL, CORS... as front ends keep them)."""
        return self.directory.set_container(self.account, bucket, properties=properties)

    # -- writes -------------------------------------------------------------------

    def _write(
        self, bucket: str, key: str, data: PutData, policy: StoragePolicy, progress: Progress
    ) -> tuple[ObjectWriter, WriteResult]:
        check_bucket(bucket)
        check_key(key)
        writer = ObjectWriter(self.io, policy, new_chunk_id(), key, progress, container=f"{self.account}/{bucket}")
        return writer, writer.write(data)

    def put(
        self,
        bucket: str,
        key: str,
        data: PutData,
        *,
        policy: str | None = None,
        properties: dict[str, str] | None = None,
        mime_type: str = "application/octet-stream",
        if_none_match: bool = False,
        if_version: int | None = None,
        progress: Progress = None,
        before_commit: Callable[[], dict[str, str]] | None = None,
        origin: str = "",
    ) -> ObjectInfo:
        """Store ``data`` (bytes-like, a path, a binary file or an iterator of bytes).

        ``if_none_match``: only if ``key`` has no live version (AlreadyExists); ``if_version``: only if its
        live version is still that one (PreconditionFailed); both tested in the directory's commit.
        ``origin``: what the object's ``content.new`` event says it came from ("put", "post", "copy").

        ``before_commit`` runs once every chunk is stored and before the directory
        commit: it may check what was streamed (raising discards the chunks, so no
        object appears) and returns properties known only then (an MD5 ETag).
        """
        size = known_size(data)
        if size is None and policy is None and self.config.size_rules:
            data, size = peek(data, max(r.max_size for r in self.config.size_rules))
        chosen = self.choose_policy(bucket, policy, size)
        writer, result = self._write(bucket, key, data, chosen, progress)
        late = _checked(writer, before_commit) or {}
        record = ObjectInfo(
            account=self.account,
            bucket=bucket,
            key=key,
            content_id=writer.headers["X-Grid-Content-Id"],
            size=result.size,
            policy=chosen.name,
            chunk_method=chosen.chunk_method,
            hash=result.hash,
            crc32c=result.crc32c,
            mime_type=mime_type,
            properties={**(properties or {}), **late},
            metachunks=result.metachunks,
        )
        committed, _garbage = commit_or_discard(
            lambda: self.directory.commit_object(self.account, bucket, record, if_none_match=if_none_match,
                                                 if_version=if_version, origin=origin),
            writer.discard,
        )
        return committed

    def put_many(
        self,
        bucket: str,
        items: Iterable[tuple[str, PutData] | tuple[str, PutData, dict[str, str]]],
        *,
        policy: str | None = None,
        mime_type: str = "application/octet-stream",
    ) -> list[ObjectInfo]:
        """Store many objects ``(key, data)`` or ``(key, data, properties)``; their records, in order.

        Small objects (one metachunk of chunks up to 1 MiB) are written BATCH_OBJECTS at a time: the
        chunks bound for one storage server go in one request, made durable with one fsync there, and
        the batch's records in one directory commit, all or none. Larger objects go through ``put``.
        Every object is acknowledged, as by ``put``, only once its chunks are fsynced and its record
        committed; if this raises, objects of batches already returned may be stored.
        """
        check_bucket(bucket)
        out: list[ObjectInfo] = []
        batch: list[tuple[SmallObject, dict[str, str]]] = []
        held = 0
        for item in items:
            key, data, props = item[0], item[1], (item[2] if len(item) > 2 else {})  # type: ignore[misc]
            check_key(key)
            size = known_size(data)
            chosen = self.choose_policy(bucket, policy, size)
            if size is None or not fits_batch(chosen, size, self.config.chunk_size):
                out.append(self.put(bucket, key, data, policy=policy, properties=props, mime_type=mime_type))
                continue
            batch.append((SmallObject(key, _small_bytes(data), chosen), props))
            held += size
            if len(batch) >= BATCH_OBJECTS or held >= BATCH_BYTES:
                out += self._put_batch(bucket, batch, mime_type)
                batch, held = [], 0
        if batch:
            out += self._put_batch(bucket, batch, mime_type)
        return out

    def _put_batch(self, bucket: str, batch: list[tuple[SmallObject, dict[str, str]]],
                   mime_type: str) -> list[ObjectInfo]:
        written = write_small(self.io, f"{self.account}/{bucket}", [obj for obj, _ in batch])
        records = [
            ObjectInfo(account=self.account, bucket=bucket, key=obj.key, content_id=writer.headers["X-Grid-Content-Id"],
                       size=result.size, policy=obj.policy.name, chunk_method=obj.policy.chunk_method,
                       hash=result.hash, crc32c=result.crc32c, mime_type=mime_type, properties=dict(props),
                       metachunks=result.metachunks)
            for (obj, props), (writer, result) in zip(batch, written, strict=True)
        ]

        def discard() -> None:
            for writer, _ in written:
                writer.discard()

        committed, _garbage = commit_or_discard(
            lambda: self.directory.commit_objects(self.account, bucket, records), discard)
        return committed

    def put_file(self, bucket: str, key: str, path: str | os.PathLike, **kwargs: Any) -> ObjectInfo:
        return self.put(bucket, key, Path(path), **kwargs)

    def delete(self, bucket: str, key: str, *, version: int | None = None, bypass_governance: bool = False) -> dict:
        """Delete a version, or the object (a delete marker in a versioned bucket). A version under object
        lock is refused (ObjectLocked); ``bypass_governance`` lifts GOVERNANCE retention, nothing else."""
        result, _garbage = self.directory.delete_object(self.account, bucket, key, version=version,
                                                        bypass_governance=bypass_governance)
        return result

    def rename(self, bucket: str, src: str, dst: str) -> ObjectInfo:
        """Metadata-only rename: no chunk is read or written."""
        info, _garbage = self.directory.rename_object(self.account, bucket, src, dst)
        return info

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        version: int | None = None,
        properties: dict[str, str] | None = None,
        mime_type: str | None = None,
        if_none_match: bool = False,
        if_version: int | None = None,
    ) -> ObjectInfo:
        """Server-side copy: each chunk is hard-linked on its server, no data moves. ``if_none_match`` and
        ``if_version`` apply to the destination key, as ``put`` takes them."""
        src = self.head(src_bucket, src_key, version=version, chunks=True)
        check_bucket(dst_bucket)
        check_key(dst_key)
        links = [
            (chunk, self.io.chunk_pool.submit(self._link, chunk.url, dst_bucket, dst_key))
            for mc in src.metachunks
            for chunk in mc.chunks
        ]
        new_urls: list[str] = []
        try:
            for chunk, fut in links:
                chunk.url = fut.result()
                new_urls.append(chunk.url)
        except BaseException:
            for _chunk, fut in links:
                with contextlib.suppress(BaseException):
                    new_urls.append(fut.result())
            self.io.delete_chunks(sorted(set(new_urls)))
            raise
        record = ObjectInfo(
            account=self.account,
            bucket=dst_bucket,
            key=dst_key,
            content_id=new_chunk_id(),
            size=src.size,
            policy=src.policy,
            chunk_method=src.chunk_method,
            hash=src.hash,
            crc32c=src.crc32c,  # the same bytes: the source's CRC holds
            mime_type=mime_type or src.mime_type,
            # The source's properties but not its object lock (a copy is locked by its bucket's default, as in S3).
            properties=({k: v for k, v in src.properties.items() if k not in LOCK_PROPS} if properties is None
                        else dict(properties)),
            metachunks=src.metachunks,
        )
        committed, _garbage = commit_or_discard(
            lambda: self.directory.commit_object(self.account, dst_bucket, record, if_none_match=if_none_match,
                                                 if_version=if_version, origin="copy"),
            lambda: self.io.delete_chunks(new_urls),
        )
        return committed

    def _link(self, url: str, bucket: str, key: str) -> str:
        """A hard link whose back-reference names the copy, not the source."""
        return self.io.chunks.link(url, new_chunk_id(), container=f"{self.account}/{bucket}", path=key)

    def set_properties(
        self, bucket: str, key: str, properties: dict[str, str | None], *, replace: bool = False,
        version: int | None = None, bypass_governance: bool = False,
    ) -> ObjectInfo:
        """Change an object version's properties (the latest by default); shortening or removing a running
        object-lock retention is refused unless GOVERNANCE and ``bypass_governance``."""
        return self.directory.set_properties(self.account, bucket, key, properties, replace=replace,
                                             version=version, bypass_governance=bypass_governance)

    # -- reads --------------------------------------------------------------------

    def head(self, bucket: str, key: str, *, version: int | None = None, chunks: bool = False,
             delete_markers: bool = False) -> ObjectInfo:
        """A version's record; ``delete_markers``: a delete marker's record too (else NoSuchObject)."""
        return self.directory.get_object(self.account, bucket, key, version=version, chunks=chunks,
                                         markers=delete_markers)

    def reader(self, bucket: str, key: str, *, version: int | None = None) -> ObjectReader:
        return ObjectReader(self.io, self.head(bucket, key, version=version, chunks=True))

    def get(
        self, bucket: str, key: str, *, offset: int = 0, length: int | None = None, version: int | None = None
    ) -> bytes:
        """The bytes of an object, or of ``length`` bytes from ``offset``."""
        reader = self.reader(bucket, key, version=version)
        start, end = reader.check_range(offset, length)
        out = bytearray(end - start)
        reader.read_into(start, end, memoryview(out))
        return bytes(out)

    def get_stream(
        self, bucket: str, key: str, *, offset: int = 0, length: int | None = None, version: int | None = None
    ) -> Iterator[memoryview]:
        """Stream an object in metachunk-sized views (each valid until the next one)."""
        reader = self.reader(bucket, key, version=version)
        start, end = reader.check_range(offset, length)
        return reader.iter_range(start, end)

    def get_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike,
        *,
        version: int | None = None,
        progress: Progress = None,
    ) -> ObjectInfo:
        """Download to ``path`` atomically: a failed download leaves no file behind. A ``path`` that exists
        and is not a regular file (a pipe, /dev/null, a device) is written into as it is, never replaced."""
        reader = self.reader(bucket, key, version=version)
        target = Path(path)
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(target).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                with open(target, "wb", buffering=0) as f:
                    self._copy_out(reader, f, progress)
                return reader.info
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
        try:
            try:
                self._copy_out(reader, SinkFile(fd, reader.info.size), progress)  # large: straight to the disk
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return reader.info

    @staticmethod
    def _copy_out(reader: ObjectReader, f: Any, progress: Progress) -> None:
        for piece in reader.iter_range(0, reader.info.size):
            f.write(piece)
            if progress:
                progress(piece.nbytes)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
            return True
        except NoSuchObject:
            return False

    def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        token: str = "",
        max_keys: int = 1000,
    ) -> ListResult:
        return self.directory.list_objects(
            self.account,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            token=token,
            max_keys=max_keys,
        )

    def iter_list(self, bucket: str, *, prefix: str = "", delimiter: str = "") -> Iterator[ObjectInfo | str]:
        """Every object (and, with a delimiter, every common prefix as a str), page by page."""
        token = ""
        while True:
            page = self.list(bucket, prefix=prefix, delimiter=delimiter, token=token)
            yield from page.prefixes
            yield from page.objects
            if not page.truncated:
                return
            token = page.next_token

    def list_versions(self, bucket: str, **kwargs: Any) -> dict:
        return self.directory.list_versions(self.account, bucket, **kwargs)

    def locate(self, bucket: str, key: str) -> dict:
        """The resolution path of an object: prefix -> meta1 -> meta2 -> chunk URLs."""
        return self.directory.locate(self.account, bucket, key)

    # -- multipart ----------------------------------------------------------------

    def create_multipart(
        self,
        bucket: str,
        key: str,
        *,
        policy: str | None = None,
        properties: dict[str, str] | None = None,
        mime_type: str = "application/octet-stream",
    ) -> UploadInfo:
        chosen = self.choose_policy(bucket, policy, None)
        check_key(key)
        return self.directory.create_upload(
            self.account, bucket, key, policy=chosen.name, mime_type=mime_type, properties=properties
        )

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        data: PutData,
        *,
        etag: str = "",
        progress: Progress = None,
        before_commit: Callable[[], str] | None = None,
    ) -> PartInfo:
        """Store one part. ``before_commit`` (see ``put``) checks the data and returns its etag."""
        if not 1 <= part_number <= 10000:
            raise GridError(f"part number {part_number} outside 1-10000")
        upload = next((u for u in self.directory.list_uploads(self.account, bucket) if u.upload_id == upload_id), None)
        if upload is None:  # refused before any chunk is written (the directory would refuse the part anyway)
            raise NoSuchUpload(f"no upload {upload_id!r} in bucket {bucket!r}")
        policy = get_policy(upload.policy or self.config.default_policy, self.config.policies)
        writer, result = self._write(bucket, key, data, policy, progress)
        etag = _checked(writer, before_commit) or etag
        part = PartInfo(
            upload_id=upload_id,
            part_number=part_number,
            size=result.size,
            etag=etag or result.hash,
            crc32c=result.crc32c,
            metachunks=result.metachunks,
        )
        commit_or_discard(
            lambda: self.directory.commit_part(self.account, bucket, upload_id, part, policy.chunk_method,
                                               op_id=writer.headers["X-Grid-Content-Id"]),
            writer.discard,
        )
        return part

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]] | list[int],
        *,
        properties: dict[str, str] | None = None,
        if_none_match: bool = False,
        if_version: int | None = None,
    ) -> ObjectInfo:
        """Assemble the object from its parts: a directory operation, no data is copied.

        ``properties`` are added to the upload's in the same commit (values known only
        at the end, such as a checksum of the parts); ``if_none_match`` and ``if_version``
        as ``put`` takes them."""
        normalized = [p if isinstance(p, tuple) else (p, "") for p in parts]
        info, _garbage = self.directory.complete_upload(self.account, bucket, upload_id, normalized,
                                                        properties=properties, if_none_match=if_none_match,
                                                        if_version=if_version)
        return info

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self.directory.abort_upload(self.account, bucket, upload_id)

    def list_parts(self, bucket: str, upload_id: str) -> list[PartInfo]:
        return self.directory.list_parts(self.account, bucket, upload_id)

    def list_multipart(self, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        return self.directory.list_uploads(self.account, bucket, prefix=prefix)
