"""Issue 13, item 5: encryption at rest. SSE-S3 and SSE-C through boto3 and the aws cli against a real grid and
gateway: round trips, ranged reads across segment and part boundaries, multipart, copies, bucket default
encryption, wrong and missing keys, what lies on the disks (no plaintext), and tampering found by the grid's
checksums and, under them, by each segment's GCM tag. A second user and anonymous requests are refused.

One grid and one gateway for the module; a bucket per test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import requests
import xxhash
from botocore import UNSIGNED
from botocore.config import Config

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.gateways.s3 import grants
from gridfs.gateways.s3.cipher import SEGMENT, STORED_SEGMENT
from gridfs.gateways.s3.users import UserStore
from gridfs.storage.client import parse_chunk_url
from gridfs.storage.store import block_hashes
from tests.conftest import held_chunks, rawx_of, volume

MiB = 1 << 20
AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def grid(s3_grid: LocalGrid) -> LocalGrid:
    return s3_grid


@pytest.fixture(scope="module")
def keys(grid: LocalGrid) -> dict[str, Any]:
    store = UserStore(grid.config_path)
    return {name: store.create(name) for name in ("alice", "bob")}


def client_for(s3_endpoint: str, user: Any = None) -> Any:
    if user is None:
        return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id=user.access_key,
                        aws_secret_access_key=user.secret_key)


@pytest.fixture(scope="module")
def alice(s3_endpoint: str, keys: dict[str, Any]) -> Any:
    return client_for(s3_endpoint, keys["alice"])


@pytest.fixture(scope="module")
def bob(s3_endpoint: str, keys: dict[str, Any]) -> Any:
    return client_for(s3_endpoint, keys["bob"])


@pytest.fixture(scope="module")
def anon(s3_endpoint: str) -> Any:
    return client_for(s3_endpoint)


@pytest.fixture
def bucket(alice: Any, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[5:45].strip("-") + "-" + secrets.token_hex(3)
    alice.create_bucket(Bucket=name)
    return name


def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def sse_c(key: bytes, prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def ranges(size: int) -> list[tuple[int, int]]:
    """Inclusive ranges around every segment boundary of an object, and its ends."""
    out = [(0, 0), (0, size - 1), (size - 1, size - 1), (1, size - 2)]
    for edge in range(SEGMENT, size, SEGMENT):
        out += [(edge - 1, edge), (edge - 3, edge + 5), (edge, edge), (edge - 1, edge - 1)]
    out.append((SEGMENT - 10, min(size - 1, 2 * SEGMENT + 10)))
    return out


def check_ranges(s3: Any, bucket: str, key: str, data: bytes, **extra: Any) -> None:
    for a, b in ranges(len(data)):
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={a}-{b}", **extra)
        assert got["Body"].read() == data[a:b + 1], (a, b)
        assert got["ContentRange"] == f"bytes {a}-{b}/{len(data)}"
    tail = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-70000", **extra)["Body"].read()
    assert tail == data[-70000:]


# -- SSE-S3 --------------------------------------------------------------------------------------------


def test_sse_s3_round_trip_with_ranges_across_segments(alice: Any, bucket: str, grid: LocalGrid) -> None:
    data = os.urandom(3 * SEGMENT + 1234)
    put = alice.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # SSE-S3: the MD5, as AWS
    head = alice.head_object(Bucket=bucket, Key="k")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(data)
    got = alice.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"
    check_ranges(alice, bucket, "k", data)
    listed = alice.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("k", len(data))]
    with GridClient(grid.config_path) as c:  # the grid holds the segments: larger, and not the data
        stored = c.get(bucket, "k")
    assert len(stored) == 3 * STORED_SEGMENT + 1234 + 28 and data[:4096] not in stored


def test_empty_and_exact_segment_objects(alice: Any, bucket: str) -> None:
    for key, data in (("empty", b""), ("one", os.urandom(SEGMENT)), ("two", os.urandom(2 * SEGMENT))):
        alice.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
        assert alice.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert alice.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    assert alice.get_object(Bucket=bucket, Key="two", Range=f"bytes={SEGMENT}-")["Body"].read() \
        == alice.get_object(Bucket=bucket, Key="two")["Body"].read()[SEGMENT:]
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0"))[1] == "InvalidRange"
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="one", Range=f"bytes={SEGMENT}-"))[1] \
        == "InvalidRange"


def test_another_user_and_anonymous_cannot_read_an_sse_s3_object(alice: Any, bob: Any, anon: Any,
                                                                bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="k", Body=b"private", ServerSideEncryption="AES256")
    assert refused(lambda: bob.get_object(Bucket=bucket, Key="k")) == (403, "AccessDenied")
    assert refused(lambda: bob.head_object(Bucket=bucket, Key="k"))[0] == 403
    assert refused(lambda: anon.get_object(Bucket=bucket, Key="k")) == (403, "AccessDenied")
    assert refused(lambda: bob.copy_object(Bucket=bucket, Key="mine", CopySource=f"{bucket}/k"))[0] == 403
    assert refused(lambda: anon.copy_object(Bucket=bucket, Key="mine", CopySource=f"{bucket}/k"))[0] == 403
    assert refused(lambda: anon.head_object(Bucket=bucket, Key="k"))[0] == 403
    assert refused(lambda: bob.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256"))[0] \
        == 403


def test_an_sse_s3_object_moved_to_another_bucket_behind_the_gateway_does_not_open(
        s3_endpoint: str, keys: dict[str, Any], alice: Any, bob: Any, bucket: str, grid: LocalGrid) -> None:
    alice.put_object(Bucket=bucket, Key="k", Body=b"alice's secret", ServerSideEncryption="AES256")
    bob.create_bucket(Bucket=bucket + "-bob")
    # A holder of the namespace secret who is also an S3 user copies the object, properties and all, into
    # a bucket of theirs, hoping the gateway will decrypt it for them there.
    with GridClient(grid.config_path) as c:
        c.copy(bucket, "k", bucket + "-bob", "k")
        # ...and makes it theirs by its ACL (objects' owners are not sealed), so that access control lets
        # them through and only the data key's binding to its bucket stands in the way.
        theirs = {"s3.owner": "bob", "s3.acl": grants.dump(grants.canned("private", "bob"))}
        c.set_properties(bucket + "-bob", "k", theirs)
    quiet = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
            aws_access_key_id=keys["bob"].access_key,
                         aws_secret_access_key=keys["bob"].secret_key, config=Config(retries={"max_attempts": 1}))
    assert refused(lambda: quiet.get_object(Bucket=bucket + "-bob", Key="k")) == (500, "InternalError")
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"alice's secret"


def test_unsupported_encryption_requests_are_refused(alice: Any, bucket: str) -> None:
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")) \
        == (501, "NotImplemented")
    key = os.urandom(32)
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256",
                                            **sse_c(key))) == (400, "InvalidArgument")
    with headers_changed(alice, {"x-amz-server-side-encryption": "AES128"}):
        assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"x")) == (400, "InvalidArgument")
    assert "Contents" not in alice.list_objects_v2(Bucket=bucket)  # nothing stored by a refused request


# -- SSE-C ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def headers_changed(s3: Any, changes: dict[str, str | None]) -> Iterator[None]:
    """Requests of ``s3`` signed with ``changes`` to their headers (None: removed), as a hostile client sends."""
    def change(request: Any, **_: Any) -> None:
        for name, value in changes.items():
            if name in request.headers:
                del request.headers[name]
            if value is not None:
                request.headers[name] = value

    s3.meta.events.register("before-sign.s3", change)
    try:
        yield
    finally:
        s3.meta.events.unregister("before-sign.s3", change)


def test_sse_c_round_trip_and_wrong_or_missing_keys(alice: Any, bucket: str) -> None:
    key, other = os.urandom(32), os.urandom(32)
    data = os.urandom(2 * SEGMENT + 999)
    put = alice.put_object(Bucket=bucket, Key="k", Body=data, **sse_c(key))
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    assert put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"] == md5
    assert put["ETag"] != f'"{hashlib.md5(data).hexdigest()}"'  # as AWS: an SSE-C ETag is not the data's MD5
    got = alice.get_object(Bucket=bucket, Key="k", **sse_c(key))
    assert got["Body"].read() == data and got["SSECustomerKeyMD5"] == md5 and got["ETag"] == put["ETag"]
    head = alice.head_object(Bucket=bucket, Key="k", **sse_c(key))
    assert head["ContentLength"] == len(data) and head["SSECustomerAlgorithm"] == "AES256"
    check_ranges(alice, bucket, "k", data, **sse_c(key))
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="k")) == (400, "InvalidRequest")
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="k"))[0] == 400
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="k", **sse_c(other))) == (403, "AccessDenied")
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="k", **sse_c(other)))[0] == 403
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="k", Range="bytes=5-10", **sse_c(other)))[0] == 403
    # An SSE-C key offered for an SSE-S3 or plain object is refused, as AWS does.
    alice.put_object(Bucket=bucket, Key="plain", Body=b"p")
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="plain", **sse_c(key))) == (400, "InvalidRequest")
    assert alice.list_objects_v2(Bucket=bucket)["Contents"][0]["Size"] == len(data)


def test_malformed_sse_c_headers_are_refused(alice: Any, bucket: str) -> None:
    key = os.urandom(32)
    alice.put_object(Bucket=bucket, Key="k", Body=b"secret", **sse_c(key))
    cases = [
        {"x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(b"0" * 16).decode()},
        {"x-amz-server-side-encryption-customer-key": base64.b64encode(os.urandom(16)).decode()},
        {"x-amz-server-side-encryption-customer-key": "not base64!"},
        {"x-amz-server-side-encryption-customer-key-MD5": None},
        {"x-amz-server-side-encryption-customer-key": None},
        {"x-amz-server-side-encryption-customer-algorithm": None},
    ]
    for changes in cases:
        with headers_changed(alice, changes):
            assert refused(lambda: alice.get_object(Bucket=bucket, Key="k", **sse_c(key))) \
                == (400, "InvalidArgument"), changes
            assert refused(lambda: alice.put_object(Bucket=bucket, Key="new", Body=b"x", **sse_c(key)))[0] == 400
    with headers_changed(alice, {"x-amz-server-side-encryption-customer-algorithm": "AES128"}):
        assert refused(lambda: alice.get_object(Bucket=bucket, Key="k", **sse_c(key))) \
            == (400, "InvalidEncryptionAlgorithmError")
    assert [o["Key"] for o in alice.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert alice.get_object(Bucket=bucket, Key="k", **sse_c(key))["Body"].read() == b"secret"


def test_versions_keep_their_own_encryption(alice: Any, bucket: str) -> None:
    alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = os.urandom(32)
    v1 = alice.put_object(Bucket=bucket, Key="k", Body=b"one", **sse_c(key))["VersionId"]
    v2 = alice.put_object(Bucket=bucket, Key="k", Body=b"second", ServerSideEncryption="AES256")["VersionId"]
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    assert alice.get_object(Bucket=bucket, Key="k", VersionId=v1, **sse_c(key))["Body"].read() == b"one"
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="k", VersionId=v1)) == (400, "InvalidRequest")
    sizes = {v["VersionId"]: v["Size"] for v in alice.list_object_versions(Bucket=bucket)["Versions"]}
    assert sizes == {v1: 3, v2: 6}


def test_the_customer_key_is_not_stored(alice: Any, bucket: str, grid: LocalGrid) -> None:
    key = os.urandom(32)
    alice.put_object(Bucket=bucket, Key="k", Body=b"x" * 100, **sse_c(key))
    with GridClient(grid.config_path) as c:
        props = json.dumps(c.head(bucket, "k").properties)
    for form in (key.hex(), base64.b64encode(key).decode(), base64.b64encode(hashlib.md5(key).digest()).decode()):
        assert form not in props


def test_second_user_and_anonymous_with_the_right_sse_c_key_are_refused(alice: Any, bob: Any, anon: Any,
                                                                        bucket: str) -> None:
    key = os.urandom(32)
    alice.put_object(Bucket=bucket, Key="k", Body=b"secret", **sse_c(key))
    assert refused(lambda: bob.get_object(Bucket=bucket, Key="k", **sse_c(key))) == (403, "AccessDenied")
    assert refused(lambda: anon.get_object(Bucket=bucket, Key="k", **sse_c(key))) == (403, "AccessDenied")


# -- multipart -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["SSE-C", "AES256"])
def test_multipart_encrypted_with_ranges_across_parts(alice: Any, bob: Any, anon: Any, bucket: str, mode: str) -> None:
    key = os.urandom(32)
    extra = sse_c(key) if mode == "SSE-C" else {}
    create_extra = extra or {"ServerSideEncryption": "AES256"}
    up = alice.create_multipart_upload(Bucket=bucket, Key="big", **create_extra)
    uid = up["UploadId"]
    parts_data = [os.urandom(5 * MiB + 123), os.urandom(70_000)]  # part ends off the segment grid
    etags = []
    if mode == "SSE-C":
        assert up["SSECustomerAlgorithm"] == "AES256"
        assert refused(lambda: alice.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=1,
                                                 Body=parts_data[0]))[0] == 400
        assert refused(lambda: alice.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=1,
                                                 Body=parts_data[0], **sse_c(os.urandom(32)))) \
            == (403, "AccessDenied")
    else:
        assert up["ServerSideEncryption"] == "AES256"
        assert refused(lambda: alice.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=1,
                                                 Body=b"x", **sse_c(key))) == (400, "InvalidRequest")
    for other in (bob, anon):
        assert refused(lambda: other.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=1,  # noqa: B023
                                                 Body=b"x", **extra))[0] == 403
    for n, part in enumerate(parts_data, 1):
        etags.append(alice.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=n, Body=part,
                                       **extra)["ETag"])
    listed = alice.list_parts(Bucket=bucket, Key="big", UploadId=uid)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in parts_data]  # the client's sizes, not the stored ones
    done = alice.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    assert done["ETag"].endswith('-2"')
    data = b"".join(parts_data)
    head = alice.head_object(Bucket=bucket, Key="big", **extra)
    assert head["ContentLength"] == len(data)
    assert alice.get_object(Bucket=bucket, Key="big", **extra)["Body"].read() == data
    boundary = len(parts_data[0])
    for a, b in ((boundary - 1, boundary), (boundary - 70_000, boundary + 65_000), (5 * MiB - 1, 5 * MiB + 200),
                 (len(data) - 5, len(data) - 1), (0, 10)):
        got = alice.get_object(Bucket=bucket, Key="big", Range=f"bytes={a}-{b}", **extra)["Body"].read()
        assert got == data[a:b + 1], (a, b)
    assert alice.list_objects_v2(Bucket=bucket)["Contents"][0]["Size"] == len(data)
    if mode == "SSE-C":
        assert refused(lambda: alice.get_object(Bucket=bucket, Key="big"))[0] == 400


def test_an_encrypted_part_under_5_mib_is_too_small(alice: Any, bucket: str) -> None:
    uid = alice.create_multipart_upload(Bucket=bucket, Key="k", ServerSideEncryption="AES256")["UploadId"]
    short = 5 * MiB - 100  # stored with its segments' nonces and tags, it is over 5 MiB: the client's size counts
    etags = [alice.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=os.urandom(size))["ETag"]
             for n, size in ((1, short), (2, 10))]
    assert refused(lambda: alice.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})) == (400, "EntityTooSmall")


# -- copies --------------------------------------------------------------------------------------------


def test_copies_between_encryptions(alice: Any, bob: Any, bucket: str) -> None:
    key, key2 = os.urandom(32), os.urandom(32)
    data = os.urandom(SEGMENT + 500)
    alice.put_object(Bucket=bucket, Key="c", Body=data, **sse_c(key))
    # The source's key is needed, and must be the right one.
    assert refused(lambda: alice.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/c"))[0] == 400
    assert refused(lambda: alice.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/c",
                                             **sse_c(key2, "CopySource")))[0] == 403
    # SSE-C -> SSE-S3
    out = alice.copy_object(Bucket=bucket, Key="s3", CopySource=f"{bucket}/c", ServerSideEncryption="AES256",
                            **sse_c(key, "CopySource"))
    assert out["ServerSideEncryption"] == "AES256"
    assert alice.get_object(Bucket=bucket, Key="s3")["Body"].read() == data
    assert alice.head_object(Bucket=bucket, Key="s3")["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    # SSE-S3 -> plain (no encryption asked, no bucket default)
    alice.copy_object(Bucket=bucket, Key="plain", CopySource=f"{bucket}/s3")
    plain = alice.head_object(Bucket=bucket, Key="plain")
    assert "ServerSideEncryption" not in plain and plain["ContentLength"] == len(data)
    assert alice.get_object(Bucket=bucket, Key="plain")["Body"].read() == data
    # plain -> SSE-C under a new key, and SSE-C -> SSE-C under another key (a key change in place)
    alice.copy_object(Bucket=bucket, Key="c2", CopySource=f"{bucket}/plain", **sse_c(key2))
    assert alice.get_object(Bucket=bucket, Key="c2", Range="bytes=65530-65540", **sse_c(key2))["Body"].read() \
        == data[65530:65541]
    alice.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/c", **sse_c(key, "CopySource"), **sse_c(key2))
    assert alice.get_object(Bucket=bucket, Key="c", **sse_c(key2))["Body"].read() == data
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="c", **sse_c(key)))[0] == 403
    # An object encrypted in place (copy onto itself with SSE headers), as AWS allows.
    alice.copy_object(Bucket=bucket, Key="plain", CopySource=f"{bucket}/plain", ServerSideEncryption="AES256")
    assert alice.head_object(Bucket=bucket, Key="plain")["ServerSideEncryption"] == "AES256"
    # Another user may not copy out of this bucket, with or without the key.
    bob.create_bucket(Bucket=bucket + "-bob")
    assert refused(lambda: bob.copy_object(Bucket=bucket + "-bob", Key="x", CopySource=f"{bucket}/c",
                                           **sse_c(key2, "CopySource")))[0] == 403


def test_a_copy_between_encryptions_links_the_encrypted_bytes(alice: Any, bucket: str, grid: LocalGrid) -> None:
    key = os.urandom(32)
    data = os.urandom(2 * SEGMENT + 7)
    alice.put_object(Bucket=bucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    out = alice.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/s3", **sse_c(key))
    assert out["SSECustomerAlgorithm"] == "AES256"
    assert out["CopyObjectResult"]["ETag"] != f'"{hashlib.md5(data).hexdigest()}"'  # SSE-C: not the MD5
    assert alice.get_object(Bucket=bucket, Key="c", Range="bytes=65530-65545", **sse_c(key))["Body"].read() \
        == data[65530:65546]
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="c"))[0] == 400
    held = held_chunks(grid.data)  # no byte moved: the copy's chunks are links of the source's

    def identities(name: str) -> list[tuple]:
        return sorted(held[chunk_id].identity for _volume, chunk_id in chunk_places(grid, bucket, name))

    assert identities("c") == identities("s3")
    assert alice.get_object(Bucket=bucket, Key="s3")["Body"].read() == data  # the source is untouched
    alice.create_bucket(Bucket=bucket + "-2")  # into another bucket: the key is wrapped for that bucket
    alice.copy_object(Bucket=bucket + "-2", Key="k", CopySource=f"{bucket}/s3", ServerSideEncryption="AES256")
    assert alice.get_object(Bucket=bucket + "-2", Key="k", Range="bytes=65535-65536")["Body"].read() \
        == data[65535:65537]


def test_upload_part_copy_from_an_sse_c_source_into_an_sse_s3_upload(alice: Any, bucket: str) -> None:
    key = os.urandom(32)
    src = os.urandom(5 * MiB + 77)
    alice.put_object(Bucket=bucket, Key="src", Body=src, **sse_c(key))
    uid = alice.create_multipart_upload(Bucket=bucket, Key="dst", ServerSideEncryption="AES256")["UploadId"]
    assert refused(lambda: alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                                                  CopySource=f"{bucket}/src"))[0] == 400
    p1 = alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1, CopySource=f"{bucket}/src",
                                **sse_c(key, "CopySource"))["CopyPartResult"]["ETag"]
    p2 = alice.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2, CopySource=f"{bucket}/src",
                                CopySourceRange="bytes=100-70099", **sse_c(key, "CopySource"))["CopyPartResult"]["ETag"]
    alice.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
    want = src + src[100:70100]
    got = alice.get_object(Bucket=bucket, Key="dst")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == want


# -- bucket default encryption -------------------------------------------------------------------------

AES_CONFIG = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def test_bucket_default_encryption(alice: Any, bob: Any, anon: Any, bucket: str) -> None:
    assert refused(lambda: alice.get_bucket_encryption(Bucket=bucket)) \
        == (404, "ServerSideEncryptionConfigurationNotFoundError")
    for other in (bob, anon):
        assert refused(lambda: other.put_bucket_encryption(  # noqa: B023
            Bucket=bucket, ServerSideEncryptionConfiguration=AES_CONFIG)) == (403, "AccessDenied")
    alice.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES_CONFIG)
    rules = alice.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert rules[0]["BucketKeyEnabled"] is False
    alice.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{**AES_CONFIG["Rules"][0], "BucketKeyEnabled": True}]})  # kept as set, as AWS answers it
    rules = alice.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["BucketKeyEnabled"] is True
    assert refused(lambda: bob.get_bucket_encryption(Bucket=bucket)) == (403, "AccessDenied")
    assert refused(lambda: anon.get_bucket_encryption(Bucket=bucket)) == (403, "AccessDenied")
    assert refused(lambda: bob.delete_bucket_encryption(Bucket=bucket)) == (403, "AccessDenied")
    assert refused(lambda: anon.delete_bucket_encryption(Bucket=bucket)) == (403, "AccessDenied")
    put = alice.put_object(Bucket=bucket, Key="k", Body=b"by default")
    assert put["ServerSideEncryption"] == "AES256"
    assert alice.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"by default"
    key = os.urandom(32)  # an SSE-C request is the client's choice, default or not
    alice.put_object(Bucket=bucket, Key="c", Body=b"c", **sse_c(key))
    assert alice.head_object(Bucket=bucket, Key="c", **sse_c(key))["SSECustomerAlgorithm"] == "AES256"
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read")  # a public bucket and object: the config stays the owner's
    alice.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    assert refused(lambda: anon.get_bucket_encryption(Bucket=bucket)) == (403, "AccessDenied")
    assert anon.get_object(Bucket=bucket, Key="k")["Body"].read() == b"by default"
    alice.delete_bucket_encryption(Bucket=bucket)
    assert refused(lambda: alice.get_bucket_encryption(Bucket=bucket))[0] == 404
    assert "ServerSideEncryption" not in alice.put_object(Bucket=bucket, Key="p", Body=b"p")


def test_a_browser_post_upload_takes_the_bucket_default_encryption(alice: Any, bucket: str, grid: LocalGrid) -> None:
    alice.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES_CONFIG)
    marker = secrets.token_hex(16).encode()
    data = marker * (200_000 // len(marker))
    post = alice.generate_presigned_post(bucket, "form.bin")
    fields = [(k, (None, v)) for k, v in post["fields"].items()] + [("file", ("f.bin", data, "text/plain"))]
    r = requests.post(post["url"], files=fields, allow_redirects=False)
    assert r.status_code == 204, r.content
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # SSE-S3: the ETag is the data's MD5
    head = alice.head_object(Bucket=bucket, Key="form.bin")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(data)
    assert alice.get_object(Bucket=bucket, Key="form.bin")["Body"].read() == data
    assert not [p for p in stored_files(grid) if marker in p.read_bytes()]
    acl = alice.get_object_acl(Bucket=bucket, Key="form.bin")  # the uploader's, private, as a PutObject's
    assert acl["Owner"]["ID"] == "alice"
    assert [(g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]] == [("alice", "FULL_CONTROL")]


@pytest.mark.parametrize("algorithm,code", [("aws:kms", "NotImplemented"), ("AES128", "MalformedXML")])
def test_bucket_encryption_refuses_what_it_cannot_do(alice: Any, bucket: str, algorithm: str, code: str) -> None:
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}]}
    assert refused(lambda: alice.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config))[1] \
        == code
    assert refused(lambda: alice.get_bucket_encryption(Bucket=bucket))[0] == 404


@contextlib.contextmanager
def body_sent(s3: Any, body: bytes) -> Iterator[None]:
    """Requests of ``s3`` that carry ``body`` instead of what boto3 made, signed, with its Content-MD5."""
    def replace(request: Any, **_: Any) -> None:
        request.data = body
        for name in [h for h in request.headers if h.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))]:
            del request.headers[name]
        if "Content-MD5" in request.headers:
            del request.headers["Content-MD5"]
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()

    s3.meta.events.register("before-sign.s3", replace)
    try:
        yield
    finally:
        s3.meta.events.unregister("before-sign.s3", replace)


@pytest.mark.parametrize("body,code", [
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "AES256">]><ServerSideEncryptionConfiguration><Rule>'
     b"<ApplyServerSideEncryptionByDefault><SSEAlgorithm>&a;</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
     b"</Rule></ServerSideEncryptionConfiguration>", "MalformedXML"),
    (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
     b"</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule><Rule/></ServerSideEncryptionConfiguration>",
     "MalformedXML"),
    (b"<ServerSideEncryptionConfiguration><Rule/></ServerSideEncryptionConfiguration>", "MalformedXML"),
    (b"<Tagging/>", "MalformedXML"),
    (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
     b"</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault></Rule>"
     b"</ServerSideEncryptionConfiguration>", "InvalidArgument"),
])
def test_hostile_encryption_configurations_are_refused(alice: Any, bucket: str, body: bytes, code: str) -> None:
    with body_sent(alice, body):
        status, got = refused(lambda: alice.put_bucket_encryption(Bucket=bucket,
                                                                   ServerSideEncryptionConfiguration=AES_CONFIG))
    assert (status, got) == (400, code)
    assert refused(lambda: alice.get_bucket_encryption(Bucket=bucket))[0] == 404  # nothing was set


def test_sse_header_on_a_read_is_refused(alice: Any, bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    with headers_changed(alice, {"x-amz-server-side-encryption": "AES256"}):
        assert refused(lambda: alice.get_object(Bucket=bucket, Key="k")) == (400, "InvalidArgument")


def test_aws_cli_sse_round_trip(s3_endpoint: str, keys: dict[str, Any], alice: Any, bucket: str,
        tmp_path: Path) -> None:
    user = keys["alice"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": user.access_key,
           "AWS_SECRET_ACCESS_KEY": user.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}
    src, back = tmp_path / "in.bin", tmp_path / "out.bin"
    data = os.urandom(200_000)
    src.write_bytes(data)
    key = secrets.token_hex(16)  # the aws cli takes a 32-character key as it is

    def aws(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(AWS), "--endpoint-url", s3_endpoint, "s3", "cp", *args], env=env,
                capture_output=True,
                              text=True)

    assert aws(str(src), f"s3://{bucket}/sse", "--sse", "AES256").returncode == 0
    assert aws(str(src), f"s3://{bucket}/ssec", "--sse-c", "AES256", "--sse-c-key", key).returncode == 0
    assert aws(f"s3://{bucket}/ssec", str(back), "--sse-c", "AES256", "--sse-c-key", key).returncode == 0
    assert back.read_bytes() == data
    head = alice.head_object(Bucket=bucket, Key="sse")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == len(data)
    assert alice.get_object(Bucket=bucket, Key="sse")["Body"].read() == data
    assert alice.get_object(Bucket=bucket, Key="ssec", **sse_c(key.encode()))["Body"].read() == data
    assert refused(lambda: alice.get_object(Bucket=bucket, Key="ssec")) == (400, "InvalidRequest")  # boto3: no key


# -- the disks -----------------------------------------------------------------------------------------


def stored_files(grid: LocalGrid) -> list[Path]:
    """Every file a storage server keeps chunks in: chunk files and packs."""
    return [p for p in grid.data.glob("node*/vol*/**/*") if p.is_file() and not p.name.endswith((".db", ".id"))
            and "-wal" not in p.name and "-shm" not in p.name]


def test_the_disks_hold_no_plaintext(alice: Any, bucket: str, grid: LocalGrid) -> None:
    marker = secrets.token_hex(16).encode()
    data = marker * (300_000 // len(marker))
    key = os.urandom(32)
    alice.put_object(Bucket=bucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    alice.put_object(Bucket=bucket, Key="c", Body=data, **sse_c(key))
    alice.put_object(Bucket=bucket, Key="small", Body=marker + b"!", ServerSideEncryption="AES256")
    assert not [p for p in stored_files(grid) if marker in p.read_bytes()]
    alice.put_object(Bucket=bucket, Key="plain", Body=data)  # the same data unencrypted is found: the scan sees
    assert [p for p in stored_files(grid) if marker in p.read_bytes()]


# -- tampering -----------------------------------------------------------------------------------------


def chunk_places(grid: LocalGrid, bucket: str, key: str) -> list[tuple[Path, str]]:
    """(volume, chunk id) of every chunk of an object."""
    with GridClient(grid.config_path) as c:
        info = c.head(bucket, key, chunks=True)
    return [(volume(rawx_of(grid, ch.url)), parse_chunk_url(ch.url).chunk_id)
            for mc in info.metachunks for ch in mc.chunks]


def flip_byte(volume_dir: Path, chunk_id: str, offset: int, fix_checksums: bool) -> None:
    """Flip a byte of a stored chunk; ``fix_checksums``: and give it the checksums of its new bytes, as an attacker
    with the disks would, so that only the data's own integrity check is left to notice."""
    path = volume_dir / chunk_id[:3] / chunk_id
    if path.is_file():
        body = bytearray(path.read_bytes())
        body[offset] ^= 0x01
        path.write_bytes(body)
        if fix_checksums:
            os.setxattr(path, "user.grid.hash", xxhash.xxh3_64_hexdigest(bytes(body)).encode())
            os.setxattr(path, "user.grid.blocks", block_hashes(memoryview(bytes(body))))
        return
    db = volume_dir / "packs" / "index.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        pack, at, size = conn.execute("SELECT pack, offset, size FROM chunks WHERE chunk_id = ?",
                                      (chunk_id,)).fetchone()
        pack_path = volume_dir / "packs" / f"{pack:08d}.pack"
        with open(pack_path, "r+b") as f:
            f.seek(at)
            body = bytearray(f.read(size))
            body[offset] ^= 0x01
            f.seek(at)
            f.write(body)
        if fix_checksums:
            conn.execute("UPDATE chunks SET hash = ? WHERE chunk_id = ?",
                         (xxhash.xxh3_64_hexdigest(bytes(body)), chunk_id))


def test_a_flipped_byte_is_caught_by_the_grid_checksum_first(alice: Any, bucket: str, grid: LocalGrid) -> None:
    data = os.urandom(100_000)  # three copies: the grid's checksum finds the bad one and reads another
    alice.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="AES256")
    places = chunk_places(grid, bucket, "k")
    assert len(places) == 3
    flip_byte(*places[0], offset=50, fix_checksums=False)
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_a_tampered_segment_fails_its_gcm_tag(s3_endpoint: str, keys: dict[str, Any], bucket: str,
                                               grid: LocalGrid) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
            aws_access_key_id=keys["alice"].access_key,
                      aws_secret_access_key=keys["alice"].secret_key, config=Config(retries={"max_attempts": 1}))
    data = os.urandom(3 * SEGMENT)
    key = os.urandom(32)
    for name, extra in (("s3", {"ServerSideEncryption": "AES256"}), ("c", sse_c(key))):
        s3.put_object(Bucket=bucket, Key=name, Body=data, **extra)
        read = sse_c(key) if name == "c" else {}
        for place in chunk_places(grid, bucket, name):  # every copy, checksums mended: the grid sees nothing
            flip_byte(*place, offset=STORED_SEGMENT + 100, fix_checksums=True)
        assert s3.get_object(Bucket=bucket, Key=name, Range="bytes=0-99", **read)["Body"].read() == data[:100]
        bad_range = f"bytes={SEGMENT}-{SEGMENT + 10}"
        assert refused(lambda: s3.get_object(Bucket=bucket, Key=name, Range=bad_range, **read)) \
            == (500, "InternalError")  # noqa: B023
        # The bad segment is among the first the answer needs: an error before any byte.
        assert refused(lambda: s3.get_object(Bucket=bucket, Key=name, **read)) == (500, "InternalError")  # noqa: B023
    # A bad segment further on (past the first 8 MiB block of one copy): the answer has begun, it is cut short
    # there, at once, and never carries that segment.
    big = os.urandom(9 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=big, ServerSideEncryption="AES256", StorageClass="SINGLE")
    places = chunk_places(grid, bucket, "big")
    assert len(places) == 2
    flip_byte(*places[1], offset=100, fix_checksums=True)
    assert s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-99")["Body"].read() == big[:100]
    body = s3.get_object(Bucket=bucket, Key="big")["Body"]
    with pytest.raises((botocore.exceptions.ResponseStreamingError, botocore.exceptions.IncompleteReadError)):
        body.read()
