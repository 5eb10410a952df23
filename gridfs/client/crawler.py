"""The orphan crawler: delete chunks that no object or upload references.

Orphans come from writers that died between storing chunks and committing the
directory record (a killed client, a killed grid-distcp rank). Every chunk names the
container that must reference it (``account/bucket`` in its back-reference, set when
it is written, and set to the copy's container when a copy hard-links it). The
crawler lists each storage server's chunks older than a grace period, asks each named
container once for every URL it references (all object versions and all uploaded
parts), and deletes the chunks that are not among them. It is conservative: a chunk
without a container in its back-reference, or whose container cannot be asked, is
kept; young chunks are kept, because their writer may still be about to commit.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gridfs.common.errors import GridError, NoSuchContainer
from gridfs.storage.client import chunk_url

if TYPE_CHECKING:
    from gridfs.client.grid import GridClient

log = logging.getLogger("gridfs.crawler")
DEFAULT_GRACE = 24 * 3600.0


@dataclass
class CrawlResult:
    scanned: int = 0
    orphans: list[str] = field(default_factory=list)  # chunk URLs deleted (or, dry run, to delete)
    kept_unknown: int = 0  # no container in the back-reference: never deleted
    unreachable: list[str] = field(default_factory=list)  # servers or containers that could not be asked


def crawl(client: GridClient, older_than: float = DEFAULT_GRACE, dry_run: bool = False) -> CrawlResult:
    result = CrawlResult()
    by_container: dict[str, list[str]] = defaultdict(list)
    for svc in client.conscience.services("rawx"):
        addr = svc["addr"]
        try:
            chunks = client.io.chunks.list_chunks(addr, older_than)
        except (GridError, OSError) as exc:
            result.unreachable.append(f"{addr}: {exc}")
            continue
        for chunk in chunks:
            result.scanned += 1
            container = chunk.get("ref", {}).get("container", "")
            if "/" not in container:
                result.kept_unknown += 1
                continue
            by_container[container].append(chunk_url(addr, chunk["chunk_id"]))
    for container, urls in by_container.items():
        account, _, bucket = container.partition("/")
        try:
            referenced = client.directory.referenced_urls(account, bucket)
        except NoSuchContainer:
            referenced = set()  # the bucket is gone: nothing can reference its chunks any more
        except (GridError, OSError) as exc:
            result.unreachable.append(f"{container}: {exc}")
            continue
        result.orphans += [u for u in urls if u not in referenced]
    if not dry_run and result.orphans:
        client.io.delete_chunks(result.orphans)
        log.info("deleted %d orphan chunks", len(result.orphans))
    return result
