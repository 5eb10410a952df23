"""The orphan crawler: delete chunks that no object or upload references.

Orphans come from writers that died between storing chunks and committing the
directory record (a killed client, a killed grid-distcp rank), or whose commit's
outcome stayed unknown. Every chunk names the container that must reference it
(``account/bucket`` in its back-reference, set when it is written, and set to the
copy's container when a copy hard-links it). The crawler lists each storage server's
chunks older than a grace period, by service id (so the listing is of that volume
whatever port it listens on now), asks each named container once for every chunk it
references (all object versions and all uploaded parts), and deletes the chunks whose
chunk id is not among them. Chunk ids are random and unique in the grid, so comparing
them, never URL strings, stays right when a server moves or a record holds an old-form
URL. It is conservative: a chunk without a container in its back-reference, or whose
container cannot be asked, is kept; young chunks are kept, because their writer may
still be about to commit.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gridfs.common.errors import GridError, NoSuchContainer
from gridfs.storage.client import parse_chunk_url, service_chunk_url

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
    by_container: dict[str, dict[str, str]] = defaultdict(dict)  # container -> chunk id -> URL
    for svc in client.conscience.services("rawx"):
        name = svc.get("id") or svc["addr"]
        try:
            chunks = client.io.chunks.list_chunks(name, older_than)
        except (GridError, OSError) as exc:
            result.unreachable.append(f"{name}: {exc}")
            continue
        for chunk in chunks:
            result.scanned += 1
            container = chunk.get("ref", {}).get("container", "")
            if "/" not in container:
                result.kept_unknown += 1
                continue
            by_container[container][chunk["chunk_id"]] = service_chunk_url(svc, chunk["chunk_id"])
    for container, urls in by_container.items():
        account, _, bucket = container.partition("/")
        try:
            referenced = {parse_chunk_url(u).chunk_id for u in client.directory.referenced_urls(account, bucket)}
        except NoSuchContainer:
            referenced = set()  # the bucket is gone: nothing can reference its chunks any more
        except (GridError, OSError) as exc:  # InvalidName too: a record we cannot read keeps every chunk
            result.unreachable.append(f"{container}: {exc}")
            continue
        result.orphans += [url for chunk_id, url in urls.items() if chunk_id not in referenced]
    if not dry_run and result.orphans:
        client.io.delete_chunks(result.orphans)
        log.info("deleted %d orphan chunks", len(result.orphans))
    return result
