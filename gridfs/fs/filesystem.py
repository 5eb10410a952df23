"""``GridFileSystem``: an asynchronous fsspec filesystem over :class:`GridClient`.

Buckets are the top-level directories; inside a bucket, directories are key prefixes
the way s3fs treats them (they need no object of their own). Blocking client calls
run in threads (the client releases the GIL in its I/O). Instances pickle by their
arguments (fsspec's ``__reduce__``), so Dask workers rebuild their own client.

Small whole files written together (``put`` of many files or a folder, ``pipe`` of a dict: fsspec
runs up to ``batch_size`` ``_put_file``/``_pipe_file`` coroutines at once) are gathered per bucket
and policy into ``GridClient.put_many`` calls: one chunk request per storage server and one
directory commit per batch instead of one of each per file. Large files and ``mode="create"``
writes go alone, through ``put``.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from fsspec.asyn import AsyncFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile
from fsspec.utils import tokenize

from gridfs.client import GridClient
from gridfs.client.batch import fits_batch
from gridfs.client.grid import BATCH_BYTES, BATCH_OBJECTS
from gridfs.common.errors import NoSuchObject
from gridfs.directory.model import ObjectInfo

MIN_PART = 5 << 20  # smallest multipart part, as S3 (and s3fs) use
DEFAULT_BLOCK = 32 << 20
FLUSHES = 4  # put_many calls in flight per bucket and policy
ALONE = 8  # objects of a refused batch written again at once, one by one

log = logging.getLogger("gridfs.fs")


def split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    return bucket, key


@dataclass
class _Write:
    key: str
    data: Any  # bytes, or a local file's path
    size: int
    done: asyncio.Future[ObjectInfo]


class _SmallWrites:
    """Whole small objects written at the same time, stored with ``GridClient.put_many``.

    A write joins the queue of its bucket and policy once its policy says it fits a batch. A flush
    first waits until every write started alongside has queued or gone its own way (``settled``),
    then takes one directory commit's worth (BATCH_OBJECTS objects or BATCH_BYTES, as put_many cuts
    them) and stores it; up to FLUSHES run at once per queue. A batch put_many refuses is written
    again object by object, so that each write gets its own outcome: one bad key fails alone.
    """

    def __init__(self, client: GridClient) -> None:
        self.client = client
        self.queues: dict[tuple[str, str | None], deque[_Write]] = {}
        self.flushes: Counter[tuple[str, str | None]] = Counter()
        self.deciding = 0
        self.settled = asyncio.Event()
        self.settled.set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def write(self, bucket: str, key: str, data: Any, size: int, policy: str | None) -> ObjectInfo | None:
        """Stored in a batch; None when the object is too large for one (the caller puts it)."""
        self.deciding += 1
        self.settled.clear()
        try:
            chosen = await asyncio.to_thread(self.client.choose_policy, bucket, policy, size)
        finally:
            self.deciding -= 1
            if not self.deciding:
                self.settled.set()
        if not fits_batch(chosen, size, self.client.config.chunk_size):
            return None
        where = (bucket, policy)
        done: asyncio.Future[ObjectInfo] = asyncio.get_running_loop().create_future()
        self.queues.setdefault(where, deque()).append(_Write(key, data, size, done))
        if self.flushes[where] < FLUSHES:
            self.flushes[where] += 1
            task = asyncio.create_task(self._flush(where))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await done

    async def _flush(self, where: tuple[str, str | None]) -> None:
        try:
            while True:
                await self.settled.wait()
                batch = self._take(where)
                if not batch:
                    return
                await self._store(where, batch)
        finally:
            self.flushes[where] -= 1

    def _take(self, where: tuple[str, str | None]) -> list[_Write]:
        queue = self.queues.get(where)
        batch: list[_Write] = []
        held = 0
        while queue and len(batch) < BATCH_OBJECTS and held < BATCH_BYTES:
            w = queue.popleft()
            if not w.done.cancelled():  # its caller gave up (fsspec cancels the rest on a first error)
                batch.append(w)
                held += w.size
        if not queue:
            self.queues.pop(where, None)
        return batch

    async def _store(self, where: tuple[str, str | None], batch: list[_Write]) -> None:
        bucket, policy = where
        outcomes: list[Any]
        if len(batch) == 1:
            outcomes = [await self._alone(bucket, policy, batch[0], asyncio.Semaphore(1))]
        else:
            try:
                outcomes = await asyncio.to_thread(self.client.put_many, bucket, [(w.key, w.data) for w in batch],
                                                   policy=policy)
            except Exception as exc:
                log.warning("a batch of %d objects to %s failed (%s): writing them one by one", len(batch),
                            bucket, exc)
                gate = asyncio.Semaphore(ALONE)
                outcomes = await asyncio.gather(*(self._alone(bucket, policy, w, gate) for w in batch))
        for w, outcome in zip(batch, outcomes, strict=True):
            if w.done.done():
                continue
            if isinstance(outcome, BaseException):
                w.done.set_exception(outcome)
            else:
                w.done.set_result(outcome)

    async def _alone(self, bucket: str, policy: str | None, w: _Write,
                     gate: asyncio.Semaphore) -> ObjectInfo | BaseException:
        async with gate:
            if w.done.cancelled():
                return asyncio.CancelledError()
            try:
                return await asyncio.to_thread(self.client.put, bucket, w.key, w.data, policy=policy)
            except Exception as exc:
                return exc


class GridFileSystem(AsyncFileSystem):
    protocol = ("grid",)
    root_marker = ""

    def __init__(self, config: Any = None, account: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = GridClient(config, account)
        self._batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SmallWrites] = \
            weakref.WeakKeyDictionary()

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        for proto in ("grid://", "grid::"):
            path = path.removeprefix(proto)
        return path.strip("/")

    def _invalidate(self, path: str) -> None:
        self.invalidate_cache(path)

    def invalidate_cache(self, path: str | None = None) -> None:
        if path is None:
            self.dircache.clear()
            return
        path = self._strip_protocol(path)
        while True:
            self.dircache.pop(path, None)
            if not path:
                return
            path = self._parent(path)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _small_writes(self) -> _SmallWrites:
        """The batcher of this event loop (fsspec's own, or the caller's with ``asynchronous=True``)."""
        loop = asyncio.get_running_loop()
        if loop not in self._batches:
            self._batches[loop] = _SmallWrites(self.client)
        return self._batches[loop]

    # -- metadata -------------------------------------------------------------------

    @staticmethod
    def _file_entry(info: ObjectInfo) -> dict[str, Any]:
        return {
            "name": f"{info.bucket}/{info.key}", "size": info.size, "type": "file", "mtime": info.mtime,
            "created": info.mtime, "checksum": info.hash, "crc32c": info.crc32c, "policy": info.policy,
            "version": info.version, "content_type": info.mime_type, "metadata": info.properties,
        }

    @staticmethod
    def _dir_entry(name: str) -> dict[str, Any]:
        return {"name": name, "size": 0, "type": "directory"}

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        bucket, key = split(path)
        if not bucket:
            return self._dir_entry("")
        if not key:
            await self._call(self.client.bucket_info, bucket)
            return self._dir_entry(bucket)
        try:
            return self._file_entry(await self._call(self.client.head, bucket, key))
        except NoSuchObject:
            pass
        page = await self._call(self.client.list, bucket, prefix=key + "/", max_keys=1)
        if page.objects or page.prefixes:
            return self._dir_entry(path)
        raise FileNotFoundError(f"grid://{path}")

    async def _ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not refresh and path in self.dircache:
            entries = self.dircache[path]
        else:
            entries = await self._list_dir(path)
            if entries and entries[0]["name"] != path:  # a listing, not a single file
                self.dircache[path] = entries
        return entries if detail else [e["name"] for e in entries]

    async def _list_dir(self, path: str) -> list[dict[str, Any]]:
        bucket, key = split(path)
        if not bucket:
            return [self._dir_entry(b.bucket) for b in await self._call(self.client.list_buckets)]
        prefix = key + "/" if key else ""
        entries: list[dict[str, Any]] = []
        token = ""
        marked = False  # the directory's own marker (KEY/, as the WebHDFS gateway and Hadoop write): it exists
        while True:
            page = await self._call(self.client.list, bucket, prefix=prefix, delimiter="/", token=token)
            entries += [self._dir_entry(f"{bucket}/{p.rstrip('/')}") for p in page.prefixes]
            entries += [self._file_entry(o) for o in page.objects if o.key != prefix]
            marked = marked or any(o.key == prefix for o in page.objects)
            if not page.truncated:
                break
            token = page.next_token
        if not entries and key and not marked:
            try:
                return [self._file_entry(await self._call(self.client.head, bucket, key))]
            except NoSuchObject:
                raise FileNotFoundError(f"grid://{path}") from None
        return sorted(entries, key=lambda e: e["name"])

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
                    **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        bucket, key = split(path)
        if maxdepth is not None or not bucket:
            return await super()._find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        out: dict[str, dict[str, Any]] = {}
        try:
            info = await self._info(path)
        except FileNotFoundError:
            return {} if detail else []
        if info["type"] == "file":
            out[path] = info
        else:
            if withdirs and key:
                out[path] = info
            prefix = key + "/" if key else ""
            objects = await self._call(lambda: list(self.client.iter_list(bucket, prefix=prefix)))
            for obj in objects:
                if obj.key.endswith("/"):  # a directory's marker (Hadoop, WebHDFS): a directory, never a file
                    entry = self._dir_entry(f"{bucket}/{obj.key.rstrip('/')}")
                    if withdirs:
                        out[entry["name"]] = entry
                else:
                    entry = self._file_entry(obj)
                    out[entry["name"]] = entry
                if withdirs:
                    parent = self._parent(entry["name"])
                    while len(parent) > len(path):
                        out.setdefault(parent, self._dir_entry(parent))
                        parent = self._parent(parent)
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    # -- reading and writing whole files ---------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        bucket, key = split(self._strip_protocol(path))
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            start = size + start if start is not None and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        start = max(0, start or 0)
        length = None if end is None else max(0, end - start)
        try:
            return await self._call(self.client.get, bucket, key, offset=start, length=length)
        except ValueError:  # InvalidRange: a start past the end reads nothing, as files do
            if (await self._info(path))["size"] <= start:
                return b""
            raise

    async def _cat_ranges(self, paths: list[str], starts: Any, ends: Any, max_gap: Any = None,
                          on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Resolve each object once, then read every range from its chunk map concurrently
        (Parquet footers and row groups): no directory round trip per range."""
        if not isinstance(starts, list):
            starts = [starts] * len(paths)
        if not isinstance(ends, list):
            ends = [ends] * len(paths)
        readers: dict[str, Any] = {}
        for path in set(paths):
            bucket, key = split(self._strip_protocol(path))
            try:
                readers[path] = await self._call(self.client.reader, bucket, key)
            except Exception as exc:
                readers[path] = exc

        def read(path: str, start: int | None, end: int | None) -> bytes:
            reader = readers[path]
            if isinstance(reader, Exception):
                raise reader
            size = reader.info.size
            a = max(0, size + start if start is not None and start < 0 else start or 0)
            b = size if end is None else min(size, size + end if end < 0 else end)
            out = bytearray(max(0, b - a))
            if out:
                reader.read_into(a, b, memoryview(out))
            return bytes(out)

        results = await asyncio.gather(*(asyncio.to_thread(read, p, s, e) for p, s, e in zip(paths, starts, ends,
                                                                                            strict=True)),
                                       return_exceptions=on_error == "return")
        return list(results)

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(path))
        policy = kwargs.get("policy")
        batched = None
        if mode != "create" and isinstance(value, bytes | bytearray | memoryview):
            batched = await self._small_writes().write(bucket, key, value, memoryview(value).nbytes, policy)
        if batched is None:
            await self._call(self.client.put, bucket, key, value, policy=policy, if_none_match=mode == "create")
        self._invalidate(path)

    async def _put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite",
                        **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # directories are key prefixes: nothing to store
        bucket, key = split(self._strip_protocol(rpath))
        policy = kwargs.get("policy")
        size = os.path.getsize(lpath)
        callback.set_size(size)
        if mode != "create" and await self._small_writes().write(bucket, key, lpath, size, policy) is not None:
            callback.relative_update(size)
        else:
            await self._call(self.client.put_file, bucket, key, lpath, policy=policy, if_none_match=mode == "create",
                             progress=callback.relative_update)
        self._invalidate(rpath)

    async def _get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> None:
        if os.path.isdir(lpath) and await self._isdir(rpath):
            return
        info = await self._info(rpath)
        if info["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return
        bucket, key = split(self._strip_protocol(rpath))
        callback.set_size(info["size"])
        await self._call(self.client.get_file, bucket, key, lpath, progress=callback.relative_update)

    # -- namespace changes -------------------------------------------------------------

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(path))
        await self._call(self.client.delete, bucket, key)
        self._invalidate(path)

    async def _rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        files = [p for p in paths if split(p)[1]]
        buckets = [p for p in paths if not split(p)[1]]

        async def one(p: str) -> None:
            with contextlib.suppress(FileNotFoundError):  # a directory is only a prefix
                await self._rm_file(p)
        await asyncio.gather(*(one(p) for p in files))
        for b in buckets:
            await self._call(self.client.delete_bucket, b)
        for p in paths:
            self._invalidate(p)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        b1, k1 = split(self._strip_protocol(path1))
        b2, k2 = split(self._strip_protocol(path2))
        if (await self._info(path1))["type"] == "directory":
            return
        await self._call(self.client.copy, b1, k1, b2, k2)
        self._invalidate(path2)

    async def _mv_file(self, path1: str, path2: str) -> None:
        b1, k1 = split(self._strip_protocol(path1))
        b2, k2 = split(self._strip_protocol(path2))
        if b1 == b2:
            await self._call(self.client.rename, b1, k1, k2)  # metadata only
        else:
            await self._cp_file(path1, path2)
            await self._rm_file(path1)
        self._invalidate(path1)
        self._invalidate(path2)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        """A single file moves by a metadata rename; trees by copy (linked chunks) and delete."""
        if isinstance(path1, str) and isinstance(path2, str) and not recursive and self.isfile(path1):
            target = self._strip_protocol(path2)
            if self.isdir(target):
                target = f"{target}/{self._strip_protocol(path1).rsplit('/', 1)[-1]}"
            self.sync_mv_file(path1, target)
            return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    def sync_mv_file(self, path1: str, path2: str) -> None:
        from fsspec.asyn import sync

        sync(self.loop, self._mv_file, path1, path2)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        bucket, key = split(self._strip_protocol(path))
        if not key:
            await self._call(self.client.create_bucket, bucket, policy=kwargs.get("policy", ""))
        elif create_parents:
            await self._call(self.client.create_bucket, bucket, exist_ok=True)
        self._invalidate("")

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        bucket, key = split(self._strip_protocol(path))
        if not key and not exist_ok and await self._exists(bucket):
            raise FileExistsError(f"grid://{bucket}")
        await self._call(self.client.create_bucket, bucket, exist_ok=True)
        self._invalidate("")

    async def _rmdir(self, path: str) -> None:
        bucket, key = split(self._strip_protocol(path))
        if not key:
            await self._call(self.client.delete_bucket, bucket)
            self._invalidate("")
        elif (await self._ls(path, refresh=True)):
            raise OSError(f"grid://{path} is not empty")

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        if truncate or not await self._exists(path):
            await self._pipe_file(path, b"", **kwargs)

    # -- attributes ----------------------------------------------------------------------

    def checksum(self, path: str) -> int:
        """The object's CRC32C as an int: the value ``grid stat`` shows and Hadoop's COMPOSITE_CRC compares.

        Objects stored before the grid kept it fall back to their xxh3-128 ("checksum"), else to a
        token of their listing entry (size, mtime, version): the value still changes with the content."""
        info = self.info(path)
        value = info.get("crc32c") or info.get("checksum")
        return int(value, 16) if value else int(tokenize(info), 16)

    def ukey(self, path: str) -> str:
        info = self.info(path)
        return f"{info.get('checksum', '')}-{info.get('version', '')}"

    def modified(self, path: str) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.info(path)["mtime"], tz=datetime.UTC)

    def created(self, path: str) -> datetime.datetime:
        return self.modified(path)

    def getxattr(self, path: str, attr: str) -> str:
        return self.info(path)["metadata"][attr]

    def setxattr(self, path: str, copy_kwargs: dict | None = None, **kwargs: str | None) -> None:
        bucket, key = split(self._strip_protocol(path))
        self.client.set_properties(bucket, key, kwargs)
        self._invalidate(path)

    # -- files -----------------------------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any) -> GridFile:
        return GridFile(self, path, mode, block_size or DEFAULT_BLOCK, autocommit,
                        cache_options=cache_options, **kwargs)


class GridFile(AbstractBufferedFile):
    """Reads with ranged GETs through fsspec's block cache; writes stream in parts and
    become visible only on a successful close (or at the end of a transaction)."""

    def __init__(self, fs: GridFileSystem, path: str, mode: str = "rb", block_size: int = DEFAULT_BLOCK,
                 autocommit: bool = True, policy: str | None = None, **kwargs: Any) -> None:
        self.bucket, self.key = split(fs._strip_protocol(path))
        if "r" in mode and not self.key:
            raise IsADirectoryError(f"grid://{path}")
        self.policy = policy
        self.exclusive = "x" in mode
        if self.exclusive and fs.exists(path):
            raise FileExistsError(f"grid://{path}")
        self.upload_id = ""
        self.parts: list[tuple[int, str]] = []
        self.pending = b""  # a small file's bytes, put at commit
        if "w" in mode and block_size < MIN_PART:
            block_size = MIN_PART
        if "r" in mode:
            try:
                info = fs.info(path)
            except FileNotFoundError:
                raise FileNotFoundError(f"grid://{path}") from None
            if info["type"] == "directory":
                raise IsADirectoryError(f"grid://{path} is a directory")
            kwargs["size"] = info["size"]
        super().__init__(fs, path, mode, block_size, autocommit, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        if start >= end:
            return b""
        return self.fs.client.get(self.bucket, self.key, offset=start, length=end - start)

    def _initiate_upload(self) -> None:
        # Refuse an unknown policy or a missing bucket before any data is sent.
        self.fs.client.choose_policy(self.bucket, self.policy, None)

    def _upload_chunk(self, final: bool = False) -> bool:
        data = self.buffer.getvalue()
        if final and not self.upload_id:
            self.pending = data  # the whole file fits in one buffer: a single put
        elif data:
            client = self.fs.client
            if not self.upload_id:
                self.upload_id = client.create_multipart(self.bucket, self.key, policy=self.policy).upload_id
            part = client.upload_part(self.bucket, self.key, self.upload_id, len(self.parts) + 1, data)
            self.parts.append((part.part_number, part.etag))
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        client = self.fs.client
        if self.upload_id:
            client.complete_multipart(self.bucket, self.key, self.upload_id, self.parts)
        else:
            client.put(self.bucket, self.key, self.pending, policy=self.policy, if_none_match=self.exclusive)
        self.fs.invalidate_cache(self.path)

    def discard(self) -> None:
        if self.upload_id:
            self.fs.client.abort_multipart(self.bucket, self.key, self.upload_id)
            self.upload_id = ""

    def __exit__(self, exc_type: object, *args: object) -> None:
        if exc_type is not None and self.writable() and not self.closed:
            # An error inside `with fs.open(..., "wb")`: never leave a partial object.
            self.discard()
            self.closed = True
            return
        self.close()
