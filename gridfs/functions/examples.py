"""Example user functions, installed with gridfs so any grid can run them.

``parquet_summary``: on ``created``, write each new Parquet file's row count, row groups and
schema into the object's own properties (``parquet.rows``, ``parquet.row_groups``,
``parquet.columns``, ``parquet.schema``)::

    grid function add pq-summary --on created --bucket lake --prefix tables/ \\
        --run gridfs.functions.examples:parquet_summary

``parquet_index``: on ``created`` and ``deleted``, keep a footer index of the Parquet files
under the function's bucket and prefix: one JSON object (``_parquet_index/PREFIX.json``, or
``_parquet_index/all.json`` for the whole bucket) listing every file's size, schema, row count
and row groups, so a planner reads one object instead of every footer::

    grid function add pq-index --on created,deleted --bucket lake --prefix tables/ \\
        --run gridfs.functions.examples:parquet_index

Both read only the footer of a file (two ranged reads), never its data, and are idempotent:
delivery is at least once.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import random
import struct
import time
from typing import Any

from gridfs.client import GridClient
from gridfs.common.errors import AlreadyExists, NoSuchObject, PreconditionFailed

MAGIC = b"PAR1"
INDEX_FOLDER = "_parquet_index/"
SCHEMA_PROPERTY_MAX = 4000  # characters of the schema kept in a property


def read_footer(client: GridClient, bucket: str, key: str, size: int, version: int | None = None) -> Any:
    """The file's ``pyarrow.parquet.FileMetaData``, from its footer alone; ValueError if it is no Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if size < 12:
        raise ValueError(f"{bucket}/{key} is too small for a Parquet file ({size} bytes)")
    tail = client.get(bucket, key, offset=size - 8, length=8, version=version)
    if tail[4:] != MAGIC:
        raise ValueError(f"{bucket}/{key} does not end with the Parquet magic")
    length = struct.unpack("<I", tail[:4])[0]
    if length + 12 > size:
        raise ValueError(f"{bucket}/{key}: footer of {length} bytes in a file of {size}")
    footer = client.get(bucket, key, offset=size - 8 - length, length=length, version=version)
    # A footer only refers to the file's offsets; read_metadata parses it without them.
    return pq.read_metadata(pa.BufferReader(MAGIC + bytes(footer) + bytes(tail)))


def describe(meta: Any) -> dict[str, Any]:
    schema = meta.schema.to_arrow_schema()
    return {"rows": meta.num_rows, "row_groups": [meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
            "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
            "created_by": meta.created_by}


def _is_parquet(key: str) -> bool:
    return key.endswith(".parquet") and not key.startswith(INDEX_FOLDER)


def parquet_summary(event: dict[str, Any], client: GridClient) -> None:
    data = event["data"]
    if event["type"] != "content.new" or not _is_parquet(data["key"]):
        return
    try:
        meta = read_footer(client, data["bucket"], data["key"], int(data["size"]), data.get("version"))
        info = describe(meta)
        schema = ", ".join(f"{c['name']}: {c['type']}" for c in info["columns"])
        # This very version: a newer one written meanwhile gets its own event.
        client.set_properties(data["bucket"], data["key"], {
            "parquet.rows": str(info["rows"]), "parquet.row_groups": str(len(info["row_groups"])),
            "parquet.columns": str(len(info["columns"])), "parquet.schema": schema[:SCHEMA_PROPERTY_MAX],
        }, version=data.get("version"))
    except NoSuchObject:
        print(f"{data['bucket']}/{data['key']} v{data.get('version')} is gone: nothing to summarise")


def index_key(prefix: str) -> str:
    return f"{INDEX_FOLDER}{prefix.strip('/').replace('/', '_') or 'all'}.json"


def parquet_index(event: dict[str, Any], client: GridClient) -> None:
    """Update the index entry of the event's file; the first call builds the whole index from a listing.

    Calls for one bucket may run side by side on several nodes: each update is a conditional
    write of the index version it read, tried again on a conflict."""
    data, scope = event["data"], event.get("function", {})
    bucket, key, prefix = data["bucket"], data["key"], scope.get("prefix", "")
    if not _is_parquet(key):
        return
    target = index_key(prefix)
    for _attempt in range(50):
        try:
            current = client.head(bucket, target)
            index, version = json.loads(client.get(bucket, target)), current.version
        except NoSuchObject:
            index, version = {"bucket": bucket, "prefix": prefix, "files": {}}, None
            for obj in client.iter_list(bucket, prefix=prefix):
                if not isinstance(obj, str) and _is_parquet(obj.key):
                    _index_one(client, index, bucket, obj.key)
        _index_one(client, index, bucket, key)
        index["updated"] = time.time()
        body = json.dumps(index, sort_keys=True).encode()
        try:
            client.put(bucket, target, body, mime_type="application/json", if_none_match=version is None,
                       if_version=version)
            return
        except (PreconditionFailed, AlreadyExists):
            time.sleep(random.uniform(0.05, 0.3))  # another call wrote it first: read theirs, add ours
    raise RuntimeError(f"{bucket}/{target}: gave up after 50 conflicting updates")


def _index_one(client: GridClient, index: dict[str, Any], bucket: str, key: str) -> None:
    """The file's current entry, or none if it is gone (this is also how a deletion is indexed)."""
    try:
        obj = client.head(bucket, key)
        index["files"][key] = {"size": obj.size, "version": obj.version,
                               **describe(read_footer(client, bucket, key, obj.size, obj.version))}
    except NoSuchObject:
        index["files"].pop(key, None)
    except ValueError as exc:  # named .parquet, but is not: listed as such rather than failing forever
        index["files"][key] = {"error": str(exc)}
