"""``grid upgrade``: records written before service ids name their chunks by address.

Such a chunk URL is ``http://HOST:PORT/chunk/ID``; it is still read, straight from that
address, but it breaks once the server listens elsewhere. The upgrade rewrites each one
to ``rawx://SERVICE_ID/ID``: the address is mapped to the id of the service the
conscience lists there, and the chunk is checked to be on that service (a HEAD that
names the id) before its URL is rewritten, so an address that now belongs to another
server is never taken for the old one. Chunks that cannot be checked keep their URL and
are reported; running the upgrade again picks them up.

The new locations go through the directory's repair call (``replace_chunks``), which
only moves chunks when the object version is unchanged and counts as garbage only chunk
ids the record no longer holds: the same chunk under a new URL is not garbage, so the
upgrade deletes nothing. Parts of multipart uploads still in progress are not rewritten
(they stay readable; their object is recorded with whatever URLs they hold).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gridfs.common.errors import GridError
from gridfs.directory.model import ChunkInfo, Metachunk
from gridfs.storage.client import parse_chunk_url, service_chunk_url

if TYPE_CHECKING:
    from gridfs.client.grid import GridClient

log = logging.getLogger("gridfs.upgrade")


@dataclass
class UpgradeResult:
    versions: int = 0  # object versions checked
    upgraded: list[str] = field(default_factory=list)  # "bucket/key@version" whose record was rewritten
    kept: list[str] = field(default_factory=list)  # old-form URLs left as they are, with why


class Upgrader:
    def __init__(self, client: GridClient, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run
        self.result = UpgradeResult()
        # Address -> the row of the service listed there now.
        self.at = {s["addr"]: s for s in client.conscience.services("rawx")}

    def bucket(self, bucket: str) -> None:
        key_marker, version_marker = "", None
        while True:
            page = self.client.list_versions(bucket, key_marker=key_marker, version_marker=version_marker)
            for v in page["versions"]:
                if not v.delete_marker:
                    self.version(bucket, v.key, v.version)
            if not page["truncated"]:
                return
            key_marker, version_marker = page["next_key_marker"], page["next_version_marker"]

    def version(self, bucket: str, key: str, version: int) -> None:
        info = self.client.head(bucket, key, version=version, chunks=True)
        self.result.versions += 1
        metachunks = [replace(mc, chunks=[self._chunk(c) for c in mc.chunks]) for mc in info.metachunks]
        if _urls(metachunks) == _urls(info.metachunks):
            return
        name = f"{bucket}/{key}@{version}"
        if not self.dry_run:
            try:
                garbage = self.client.directory.replace_chunks(self.client.account, bucket, key, version,
                                                               info.content_id, metachunks)
            except GridError as exc:  # changed meanwhile (PreconditionFailed), say: the next run sees it
                self.result.kept.append(f"{name}: not rewritten: {exc}")
                return
            if garbage:  # the directory compares chunk ids: this cannot happen unless it does not
                log.error("%s: the directory reported %d chunks as garbage after an upgrade", name, len(garbage))
        self.result.upgraded.append(name)

    def _chunk(self, chunk: ChunkInfo) -> ChunkInfo:
        ref = parse_chunk_url(chunk.url)
        if ref.service_id is not None:
            return chunk
        svc = self.at.get(ref.addr or "")
        if svc is None:
            self.result.kept.append(f"{chunk.url}: no storage server is listed at {ref.addr}")
            return chunk
        url = service_chunk_url(svc, ref.chunk_id)
        if parse_chunk_url(url).service_id is None:
            self.result.kept.append(f"{chunk.url}: the server at {ref.addr} sends no service id")
            return chunk
        try:
            self.client.io.chunks.head(url)  # this chunk is on that service (not on a newcomer at the address)
        except GridError as exc:
            self.result.kept.append(f"{chunk.url}: not checked on {svc['id']}: {exc}")
            return chunk
        return replace(chunk, url=url)


def _urls(metachunks: list[Metachunk]) -> list[str]:
    return [c.url for mc in metachunks for c in mc.chunks]


def upgrade(client: GridClient, buckets: list[str] | None = None, dry_run: bool = False) -> UpgradeResult:
    """Rewrite the old-form chunk URLs of every object version in ``buckets`` (default: all of the account)."""
    upgrader = Upgrader(client, dry_run)
    for bucket in buckets or [b.bucket for b in client.list_buckets()]:
        upgrader.bucket(bucket)
    return upgrader.result

