"""Rebuild one volume's reverse index from the volume itself.

The storage server lists its chunk ids with each one's back-reference (the xattr written
with the chunk: container, path, content id, position). The back-reference is a hint: it
lacks the version, a rename leaves the old path in it, and a multipart completion
renumbers positions. So the directory decides: for each container, the versions of the
keys the hints name are read with their chunks, and a chunk on the volume becomes an
entry only if one of them references it (an orphan the reaper has not removed yet is
not indexed). Chunks still unplaced after that (renamed objects) send the walk over
every version of that container, once. Entries are upserted; none are deleted, since
an entry whose chunk is gone from the disk is what the scrubber reports missing.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from gridfs.common.config import GridConfig
from gridfs.common.errors import NoSuchContainer, NoSuchObject
from gridfs.common.names import check_service_id
from gridfs.conscience.client import CachedServices, ConscienceClient
from gridfs.directory.client import DirectoryClient
from gridfs.directory.model import ObjectInfo
from gridfs.rdir.client import RdirClient
from gridfs.storage.client import ChunkClient, parse_chunk_url

log = logging.getLogger("gridfs.rdir")
PUSH_BATCH = 1000


def _versions(directory: DirectoryClient, account: str, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
    marker, vmarker = "", None
    while True:
        page = directory.list_versions(account, bucket, prefix=prefix, key_marker=marker, version_marker=vmarker)
        yield from page["versions"]
        if not page["truncated"]:
            return
        marker, vmarker = page["next_key_marker"], page["next_version_marker"]


def _entries_of(directory: DirectoryClient, account: str, bucket: str, versions: Iterable[ObjectInfo],
                wanted: set[str]) -> Iterator[dict]:
    """Index entries for the chunks in ``wanted`` (removed from it as they are placed)."""
    for v in versions:
        if v.delete_marker or not wanted:
            continue
        try:
            info = directory.get_object(account, bucket, v.key, version=v.version, chunks=True)
        except NoSuchObject:
            continue  # deleted meanwhile
        for mc in info.metachunks:
            for c in mc.chunks:
                ref = parse_chunk_url(c.url)
                if ref.chunk_id in wanted:  # chunk ids are random and unique: no need to compare services
                    wanted.discard(ref.chunk_id)
                    yield {"chunk_id": ref.chunk_id, "container": f"{account}/{bucket}", "key": info.key,
                           "version": info.version, "content_id": info.content_id, "pos": f"{mc.pos}.{c.sub}",
                           "size": c.size}


def reindex(cfg: GridConfig, volume: str) -> int:
    """Upsert an entry for every chunk of ``volume`` that an object version references; returns how many."""
    check_service_id(volume)
    conscience = ConscienceClient(cfg.conscience_url, cfg.secret)
    chunks = ChunkClient.for_grid(cfg, CachedServices(conscience, "rawx"))
    directory = DirectoryClient(cfg.directory_url, cfg.secret)
    rdir = RdirClient(conscience, cfg.secret)
    by_container: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    skipped = 0
    for item in chunks.list_chunks(volume, older_than=0):
        ref = item.get("ref") or {}
        if "/" not in str(ref.get("container", "")) or not ref.get("path"):
            skipped += 1
            continue
        by_container[ref["container"]][ref["path"]].add(item["chunk_id"])
    done, batch = 0, []
    for container, keys in by_container.items():
        account, _, bucket = container.partition("/")
        wanted = {c for ids in keys.values() for c in ids}
        try:
            found = [e for key in keys for e in _entries_of(
                directory, account, bucket, (v for v in _versions(directory, account, bucket, key) if v.key == key),
                wanted)]
            if wanted:  # renamed since written: the hint's path is stale
                found += _entries_of(directory, account, bucket, _versions(directory, account, bucket), wanted)
        except NoSuchContainer:
            continue  # the bucket is gone: its chunks are orphans
        skipped += len(wanted)
        for entry in found:
            batch.append(entry)
            if len(batch) >= PUSH_BATCH:
                rdir.push(volume, batch)
                done, batch = done + len(batch), []
    rdir.push(volume, batch)
    done += len(batch)
    log.info("reindexed %s: %d entries, %d chunks not referenced by any object", volume, done, skipped)
    return done
