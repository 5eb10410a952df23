"""The client library: what every front end (CLI, fsspec, MPI engine, gateways) calls.

It resolves containers through the directory, places chunks with live conscience
scores, stripes and encodes metachunks, talks to the storage servers directly and in
parallel, and commits the object record last, so an object is visible only once its
data is durable.

    from gridfs.client import GridClient
    grid = GridClient()                       # finds grid.toml via GRID_CONFIG or ~/.gridfs
    grid.create_bucket("lake")
    grid.put("lake", "a/b.parquet", b"...")   # bytes, a file object, a path or an iterator
    data = grid.get("lake", "a/b.parquet", offset=10, length=100)
    grid.get_file("lake", "a/b.parquet", "/tmp/b.parquet")

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from gridfs.client.grid import GridClient

__all__ = ["GridClient"]
