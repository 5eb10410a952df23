"""Holes of issue 13 in how the grid and its S3 gateway take a request, each shown on live processes on 127.0.0.1
to be answered by a clear 4xx error with nothing lost or changed:

- hole 5: names that end in a newline.
"""

from __future__ import annotations

import pytest
import requests
import xxhash

from gridfs.cli.local import LocalGrid
from gridfs.common import names
from gridfs.common.errors import InvalidName
from gridfs.common.http import SECRET_HEADER

# -- hole 5: names, and keys S3 allows -----------------------------------------------------------------------------


def test_names_with_a_trailing_newline_are_refused_and_no_chunk_is_stored(local_grid: LocalGrid) -> None:
    """Hole 5: the name checks ended in ``$``, which matches before a final newline: a storage server took
    a chunk id ending in a newline (and stored a chunk under it). Every check is now a full match."""
    rawx = next(s for s in local_grid.services() if s.type == "rawx")
    body = b"newline chunk"
    chunk_id = "AB" * 32
    headers = {SECRET_HEADER: local_grid.config().secret, "X-Grid-Chunk-Hash": xxhash.xxh3_64_hexdigest(body)}
    put = requests.put(f"{rawx.url}/chunk/{chunk_id}%0A", data=body, headers=headers, timeout=10)
    assert put.status_code == 400, put.text
    for url in (f"{rawx.url}/chunk/{chunk_id}", f"{rawx.url}/chunk/{chunk_id}%0A"):
        assert requests.get(url, headers=headers, timeout=10).status_code in (400, 404)
    checks = {names.check_account: "acct", names.check_bucket: "bucket", names.check_chunk_id: chunk_id,
              names.check_container_id: chunk_id, names.check_service_id: "rawx-0123456789abcdef"}
    for check, good in checks.items():
        assert check(good) == good
        with pytest.raises(InvalidName):
            check(good + "\n")
