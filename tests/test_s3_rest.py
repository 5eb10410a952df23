"""Issue 13, item 6, "the rest that clients use": bucket tagging, GetObjectAttributes, conditional writes
(If-None-Match, If-Match) on PutObject, CopyObject and CompleteMultipartUpload, ListBuckets pagination, delete-marker
answers, CORS headers on actual requests, Content-Encoding without aws-chunked, and browser POST uploads.

One grid and one gateway for the module (real processes); boto3 as the owner, as a second user and as an
anonymous client, raw requests signed by botocore, the aws cli, and ``requests`` for browser forms.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.exceptions
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.errors import PreconditionFailed
from gridfs.gateways.s3 import sigv4
from gridfs.gateways.s3.users import UserStore

MiB = 1 << 20
AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGrid]:
    """A smaller grid than conftest's: one node of three volumes, one gateway worker."""
    g = LocalGrid(tmp_path_factory.mktemp("rest"))
    g.up(nodes=1, volumes=3, s3_workers=1, webhdfs_port=None)
    try:
        yield g
    finally:
        g.down()


@pytest.fixture(scope="module")
def users(local_grid: LocalGrid) -> dict[str, dict[str, str]]:
    store = UserStore(local_grid.config_path)
    made = [store.create(name) for name in ("alice", "bob")]
    return {u.name: {"access_key": u.access_key, "secret_key": u.secret_key} for u in made}


def client(endpoint: str, user: dict[str, str] | None) -> Any:
    if user is None:
        return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=user["access_key"],
                        aws_secret_access_key=user["secret_key"])


@pytest.fixture(scope="module")
def alice(endpoint: str, users: dict) -> Any:
    return client(endpoint, users["alice"])


@pytest.fixture(scope="module")
def alice_v4(endpoint: str, users: dict) -> Any:
    """Alice's client signing POST policies with SigV4 (boto3 writes Signature Version 2 ones by default)."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version="s3v4"),
                        aws_access_key_id=users["alice"]["access_key"],
                        aws_secret_access_key=users["alice"]["secret_key"])


@pytest.fixture(scope="module")
def bob(endpoint: str, users: dict) -> Any:
    return client(endpoint, users["bob"])


@pytest.fixture(scope="module")
def anon(endpoint: str) -> Any:
    return client(endpoint, None)


@pytest.fixture(scope="module")
def endpoint(local_grid: LocalGrid) -> str:
    return local_grid.config().extra["s3"]["url"]


_count = iter(range(10**6))


@pytest.fixture
def bucket(alice: Any) -> str:
    """A fresh bucket of alice's for each test."""
    name = f"rest-{next(_count)}"
    alice.create_bucket(Bucket=name)
    return name


def refused(call: Callable[[], Any]) -> tuple[str, int, dict[str, str]]:
    """The S3 error code, HTTP status and headers a call fails with (it must fail)."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    meta = e.value.response["ResponseMetadata"]
    return e.value.response["Error"]["Code"], meta["HTTPStatusCode"], meta["HTTPHeaders"]


def signed(endpoint: str, user: dict, method: str, path: str, body: bytes = b"", headers: dict | None = None,
           trailer: bool = False) -> requests.Response:
    """A raw request signed by botocore's SigV4 signer (``trailer``: as an aws-chunked upload with a checksum
    trailer, the body already encoded)."""
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    if trailer:
        req.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                                         "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    return requests.request(method, prepared.url, data=body, headers=dict(prepared.headers))


def aws_cli(endpoint: str, user: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": user["access_key"], "AWS_SECRET_ACCESS_KEY": user["secret_key"],
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    return subprocess.run([str(AWS), "--endpoint-url", endpoint, *args], env=env, capture_output=True, text=True,
                          timeout=60)


# -- bucket tagging ---------------------------------------------------------------------------------


def test_bucket_tagging_round_trip_and_validation(endpoint: str, users: dict, alice: Any, bucket: str) -> None:
    assert refused(lambda: alice.get_bucket_tagging(Bucket=bucket))[:2] == ("NoSuchTagSet", 404)
    tags = [{"Key": "team", "Value": "data"}, {"Key": "cost centre", "Value": "a+b=c/d@e:f_g.h-i"}]
    alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert alice.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    fifty = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": fifty})
    assert len(alice.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    for bad in ([*fifty, {"Key": "k50", "Value": "v"}],  # 51 tags
                [{"Key": "k" * 129, "Value": "v"}], [{"Key": "k", "Value": "v" * 257}],
                [{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}],
                [{"Key": "aws:reserved", "Value": "v"}], [{"Key": "semi;colon", "Value": "v"}],
                [{"Key": "k", "Value": "<angle>"}]):
        assert refused(lambda b=bad: alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": b}))[:2] \
            == ("InvalidTag", 400), bad
    for doc in (b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet></Tagging>",  # boto3 won't
                b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>", b"<Tagging/>", b"<Tagging>"):
        md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
        r = signed(endpoint, users["alice"], "PUT", f"/{bucket}?tagging", doc, headers={"Content-MD5": md5})
        assert r.status_code == 400 and (b"<Code>InvalidTag</Code>" in r.content
                                         or b"<Code>MalformedXML</Code>" in r.content), (doc, r.content)
    assert len(alice.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50  # nothing stored by a refusal
    alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k" * 128, "Value": "v" * 256}]})
    alice.delete_bucket_tagging(Bucket=bucket)
    assert refused(lambda: alice.get_bucket_tagging(Bucket=bucket))[:2] == ("NoSuchTagSet", 404)


def test_object_tagging_shares_the_validation(alice: Any, bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="o", Body=b"x")
    for bad in ([{"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}],
                [{"Key": f"k{i}", "Value": "v"} for i in range(11)], [{"Key": "aws:x", "Value": "v"}]):
        assert refused(lambda b=bad: alice.put_object_tagging(Bucket=bucket, Key="o", Tagging={"TagSet": b}))[:2] \
            == ("InvalidTag", 400)
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="o2", Body=b"x", Tagging="a=1&a=2"))[:2] \
        == ("InvalidTag", 400)
    alice.put_object(Bucket=bucket, Key="o3", Body=b"x", Tagging="a=1&b=2")
    assert alice.get_object_tagging(Bucket=bucket, Key="o3")["TagSet"] == [{"Key": "a", "Value": "1"},
                                                                          {"Key": "b", "Value": "2"}]


def test_bucket_tagging_is_the_owners_alone(alice: Any, bob: Any, anon: Any, bucket: str) -> None:
    alice.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read")  # reads of objects open to all; not the settings
    for who in (bob, anon):
        assert refused(lambda w=who: w.get_bucket_tagging(Bucket=bucket))[:2] == ("AccessDenied", 403)
        assert refused(lambda w=who: w.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": []}))[:2] \
            == ("AccessDenied", 403)
        assert refused(lambda w=who: w.delete_bucket_tagging(Bucket=bucket))[:2] == ("AccessDenied", 403)
    assert alice.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]


def test_bucket_tagging_with_the_aws_cli(endpoint: str, users: dict, bucket: str) -> None:
    put = aws_cli(endpoint, users["alice"], "s3api", "put-bucket-tagging", "--bucket", bucket, "--tagging",
                  "TagSet=[{Key=env,Value=prod},{Key=owner,Value=alice}]")
    assert put.returncode == 0, put.stderr
    got = aws_cli(endpoint, users["alice"], "s3api", "get-bucket-tagging", "--bucket", bucket)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["TagSet"] == [{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "alice"}]
    denied = aws_cli(endpoint, users["bob"], "s3api", "get-bucket-tagging", "--bucket", bucket)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr


# -- conditional writes -----------------------------------------------------------------------------


def test_put_if_none_match_and_if_match(alice: Any, bucket: str) -> None:
    first = alice.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*"))[:2] \
        == ("PreconditionFailed", 412)
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch='"0123"'))[:2] \
        == ("PreconditionFailed", 412)
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    second = alice.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=first["ETag"])
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    # The ETag that matched is gone: a writer holding it is refused.
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=first["ETag"]))[:2] \
        == ("PreconditionFailed", 412)
    alice.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=second["ETag"].strip('"'))  # unquoted too
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="nothing", Body=b"x", IfMatch=first["ETag"]))[:2] \
        == ("NoSuchKey", 404)
    assert refused(lambda: alice.put_object(Bucket=bucket, Key="k2", Body=b"x", IfNoneMatch=first["ETag"]))[:2] \
        == ("NotImplemented", 501)  # AWS takes only "*" on a write
    alice.delete_object(Bucket=bucket, Key="k")
    alice.put_object(Bucket=bucket, Key="k", Body=b"again", IfNoneMatch="*")  # deleted: may be created again


def test_conditional_put_refuses_others_before_telling_anything(alice: Any, bob: Any, anon: Any,
                                                                bucket: str) -> None:
    etag = alice.put_object(Bucket=bucket, Key="k", Body=b"mine")["ETag"]
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
    for who in (bob, anon):
        for kwargs in ({"IfNoneMatch": "*"}, {"IfMatch": etag}, {"IfMatch": '"other"'}):
            assert refused(lambda w=who, k=kwargs: w.put_object(Bucket=bucket, Key="k", Body=b"x", **k))[:2] \
                == ("AccessDenied", 403)
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"mine"


def race(writers: int, write: Callable[[int], Any]) -> dict[int, str]:
    """Run ``write(i)`` in ``writers`` threads released at once: "won", or the S3 error code, by writer."""
    outcomes: dict[int, str] = {}
    start = threading.Barrier(writers)

    def run(i: int) -> None:
        start.wait()
        try:
            write(i)
            outcomes[i] = "won"
        except botocore.exceptions.ClientError as exc:
            outcomes[i] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_racing_if_none_match_puts_have_one_winner(alice: Any, bucket: str) -> None:
    outcomes = race(6, lambda i: alice.put_object(Bucket=bucket, Key="race", Body=f"writer {i}".encode() * 1000,
                                                  IfNoneMatch="*"))
    winners = [i for i, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    assert set(outcomes.values()) == {"won", "PreconditionFailed"}
    assert alice.get_object(Bucket=bucket, Key="race")["Body"].read() == f"writer {winners[0]}".encode() * 1000


def test_racing_if_match_puts_have_one_winner(alice: Any, bucket: str) -> None:
    etag = alice.put_object(Bucket=bucket, Key="cas", Body=b"base")["ETag"]
    outcomes = race(6, lambda i: alice.put_object(Bucket=bucket, Key="cas", Body=f"update {i}".encode(), IfMatch=etag))
    winners = [i for i, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    assert set(outcomes.values()) <= {"won", "PreconditionFailed"}
    assert alice.get_object(Bucket=bucket, Key="cas")["Body"].read() == f"update {winners[0]}".encode()


def _upload(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n,
                                                     Body=data)["ETag"]} for n, data in enumerate(parts, 1)]
    return up, done


def test_complete_multipart_if_none_match_and_if_match(alice: Any, bucket: str) -> None:
    up, parts = _upload(alice, bucket, "mp", [b"a" * 10])
    alice.put_object(Bucket=bucket, Key="mp", Body=b"there first")
    assert refused(lambda: alice.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, IfNoneMatch="*"))[:2] \
        == ("PreconditionFailed", 412)
    assert alice.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"there first"
    # The upload is left as it was: completed once the condition holds.
    assert [p["PartNumber"] for p in alice.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]] == [1]
    assert refused(lambda: alice.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts}, IfMatch='"nope"'))[:2] \
        == ("PreconditionFailed", 412)
    current = alice.head_object(Bucket=bucket, Key="mp")["ETag"]
    alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts},
                                    IfMatch=current)
    assert alice.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"a" * 10
    up2, parts2 = _upload(alice, bucket, "fresh", [b"b" * 10])
    alice.complete_multipart_upload(Bucket=bucket, Key="fresh", UploadId=up2, MultipartUpload={"Parts": parts2},
                                    IfNoneMatch="*")
    assert alice.get_object(Bucket=bucket, Key="fresh")["Body"].read() == b"b" * 10


def test_the_client_library_writes_conditionally(local_grid: LocalGrid, alice: Any, bucket: str) -> None:
    """Whatever the gateway saw first: a key written between the check and the commit is found by the commit."""
    with GridClient(local_grid.config_path) as c:
        c.put(bucket, "k", b"first")
        with pytest.raises(FileExistsError):
            c.put(bucket, "k", b"second", if_none_match=True)
        info = c.head(bucket, "k")
        c.put(bucket, "k", b"third", if_version=info.version)
        with pytest.raises(PreconditionFailed):
            c.put(bucket, "k", b"fourth", if_version=info.version)  # that version was replaced
        assert c.get(bucket, "k") == b"third"
        up = c.create_multipart(bucket, "k")
        c.upload_part(bucket, "k", up.upload_id, 1, b"part")
        with pytest.raises(FileExistsError):
            c.complete_multipart(bucket, "k", up.upload_id, [1], if_none_match=True)
        assert [p.part_number for p in c.list_parts(bucket, up.upload_id)] == [1]


# -- ListBuckets ------------------------------------------------------------------------------------


def test_list_buckets_pages(alice: Any, bob: Any, anon: Any) -> None:
    names = [f"lb-page-{i}" for i in range(5)]
    for name in names:
        alice.create_bucket(Bucket=name)
    alice.create_bucket(Bucket="lb-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    seen, token, pages = [], None, 0
    while True:
        page = alice.list_buckets(MaxBuckets=2, Prefix="lb-page-", **({"ContinuationToken": token} if token else {}))
        assert page["Prefix"] == "lb-page-"
        assert all(b["BucketRegion"] == "us-east-1" for b in page["Buckets"])
        seen += [b["Name"] for b in page["Buckets"]]
        pages += 1
        token = page.get("ContinuationToken")
        if not token:
            break
    assert seen == names and pages == 3
    paged = [b["Name"] for p in alice.get_paginator("list_buckets").paginate(
        Prefix="lb-", PaginationConfig={"PageSize": 4}) for b in p["Buckets"]]
    assert paged == sorted([*names, "lb-eu"])
    eu = alice.list_buckets(BucketRegion="eu-west-1", Prefix="lb-")["Buckets"]
    assert [(b["Name"], b["BucketRegion"]) for b in eu] == [("lb-eu", "eu-west-1")]
    assert "BucketRegion" not in alice.list_buckets()["Buckets"][0]  # unpaged: the answer as before
    assert bob.list_buckets(Prefix="lb-")["Buckets"] == []  # alice's are not bob's
    assert refused(lambda: anon.list_buckets())[:2] == ("AccessDenied", 403)


def test_list_buckets_refuses_bad_paging(endpoint: str, users: dict) -> None:
    for query in ("max-buckets=0", "max-buckets=10001", "max-buckets=-1", "max-buckets=x",
                  "continuation-token=%21%21", "continuation-token=" + base64.urlsafe_b64encode(b"A/B").decode(),
                  "continuation-token=" + base64.urlsafe_b64encode(b"\xff").decode()):
        name, _, value = query.partition("=")
        r = signed(endpoint, users["alice"], "GET", f"/?{name}={quote(value, safe='')}")
        assert r.status_code == 400 and b"<Code>InvalidArgument</Code>" in r.content, (query, r.content)


# -- delete markers ---------------------------------------------------------------------------------


def test_delete_marker_answers(alice: Any, bob: Any, anon: Any, bucket: str) -> None:
    alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = alice.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    deleted = alice.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] not in ("", v1)
    marker = deleted["VersionId"]
    code, status, headers = refused(lambda: alice.get_object(Bucket=bucket, Key="k"))
    assert (code, status) == ("NoSuchKey", 404)
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    code, status, headers = refused(lambda: alice.head_object(Bucket=bucket, Key="k"))
    assert status == 404 and headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    code, status, headers = refused(lambda: alice.get_object(Bucket=bucket, Key="k", VersionId=marker))
    assert (code, status) == ("MethodNotAllowed", 405)
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    assert "last-modified" in headers
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="k", VersionId=marker))[1] == 405
    code, status, headers = refused(lambda: alice.get_object_attributes(Bucket=bucket, Key="k",
                                                                        ObjectAttributes=["ETag"]))
    assert status == 404 and headers["x-amz-delete-marker"] == "true"
    assert alice.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"v1"
    # Another user learns nothing of the marker: the bucket is closed to him.
    for who in (bob, anon):
        for call in (lambda w=who: w.get_object(Bucket=bucket, Key="k"),
                     lambda w=who: w.get_object(Bucket=bucket, Key="k", VersionId=marker),
                     lambda w=who: w.delete_object(Bucket=bucket, Key="k", VersionId=marker)):
            code, status, headers = refused(call)
            assert (code, status) == ("AccessDenied", 403) and "x-amz-delete-marker" not in headers
    # Deleting the marker itself says so; the object is back.
    gone = alice.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert gone["DeleteMarker"] is True and gone["VersionId"] == marker
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    # A key that never was: 404 without the header.
    code, status, headers = refused(lambda: alice.get_object(Bucket=bucket, Key="never"))
    assert status == 404 and "x-amz-delete-marker" not in headers


def test_delete_objects_reports_markers(alice: Any, bucket: str) -> None:
    alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("a", "b"):
        alice.put_object(Bucket=bucket, Key=key, Body=b"x")
    out = alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})["Deleted"]
    assert all(d["DeleteMarker"] is True and d["DeleteMarkerVersionId"] for d in out)
    marker = next(d["DeleteMarkerVersionId"] for d in out if d["Key"] == "a")
    again = alice.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": marker}]})["Deleted"]
    assert again == [{"Key": "a", "VersionId": marker, "DeleteMarker": True, "DeleteMarkerVersionId": marker}]


# -- CORS on actual requests ------------------------------------------------------------------------


def test_cors_headers_on_actual_requests(endpoint: str, users: dict, alice: Any, bucket: str) -> None:
    alice.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET", "PUT", "HEAD"],
         "AllowedHeaders": ["x-amz-*", "content-type"], "ExposeHeaders": ["ETag", "x-amz-version-id"],
         "MaxAgeSeconds": 300},
        {"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET"]}]})
    alice.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>")
    origin = {"Origin": "https://app.example"}
    got = signed(endpoint, users["alice"], "GET", f"/{bucket}/page.html", headers=origin)
    assert got.status_code == 200 and got.content == b"<p>hi</p>"
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert got.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-version-id"
    assert got.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in got.headers["Vary"]
    put = signed(endpoint, users["alice"], "PUT", f"/{bucket}/up.txt", b"data", headers=origin)
    assert put.status_code == 200 and put.headers["Access-Control-Allow-Origin"] == "https://app.example"
    head = signed(endpoint, users["alice"], "HEAD", f"/{bucket}/page.html", headers=origin)
    assert head.headers["Access-Control-Allow-Origin"] == "https://app.example"
    missing = signed(endpoint, users["alice"], "GET", f"/{bucket}/nothing", headers=origin)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "https://app.example"
    # Refused before the bucket was loaded: the error still carries the bucket's CORS answer.
    denied = signed(endpoint, users["bob"], "GET", f"/{bucket}/page.html", headers=origin)
    assert denied.status_code == 403 and denied.headers["Access-Control-Allow-Origin"] == "https://app.example"
    anonymous = requests.get(f"{endpoint}/{bucket}/page.html", headers=origin)
    assert anonymous.status_code == 403 and anonymous.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert b"<p>hi</p>" not in denied.content + anonymous.content
    sub = signed(endpoint, users["alice"], "GET", f"/{bucket}/page.html", headers={"Origin": "https://a.example.org"})
    assert sub.headers["Access-Control-Allow-Origin"] == "https://a.example.org"
    # No rule for this origin, or for this method from that origin: no Allow-Origin, but Vary all the same.
    for origin_value, method, path, body in (("https://evil.example", "GET", "page.html", b""),
                                             ("https://a.example.org", "PUT", "up2.txt", b"x")):
        r = signed(endpoint, users["alice"], method, f"/{bucket}/{path}", body, headers={"Origin": origin_value})
        assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
        assert "Origin" in r.headers["Vary"]


def test_cors_preflight_checks_the_requested_headers(endpoint: str, users: dict, alice: Any, bucket: str) -> None:
    alice.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["x-amz-*"]}]})

    def preflight(headers: str) -> requests.Response:
        return requests.options(f"{endpoint}/{bucket}/k", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": headers})

    for rule in ("<AllowedOrigin>https://*.*.example</AllowedOrigin>",
                 "<AllowedOrigin>*</AllowedOrigin><ExposeHeader>ETag&#13;&#10;Set-Cookie: x=1</ExposeHeader>",
                 "<AllowedOrigin>*</AllowedOrigin><AllowedHeader>a*b*</AllowedHeader>"):
        doc = f"<CORSConfiguration><CORSRule>{rule}<AllowedMethod>GET</AllowedMethod></CORSRule>" \
              "</CORSConfiguration>"
        md5 = base64.b64encode(hashlib.md5(doc.encode()).digest()).decode()
        r = signed(endpoint, users["alice"], "PUT", f"/{bucket}?cors", doc.encode(), headers={"Content-MD5": md5})
        assert r.status_code == 400 and b"<Code>InvalidRequest</Code>" in r.content, rule
    assert alice.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedMethods"] == ["PUT"]  # kept
    ok = preflight("X-Amz-Date, x-amz-content-sha256")
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Headers"] == "X-Amz-Date, x-amz-content-sha256"
    assert preflight("x-amz-date, authorization").status_code == 403  # authorization is not allowed


# -- Content-Encoding -------------------------------------------------------------------------------


def _chunked_put(endpoint: str, user: dict, path: str, data: bytes, encoding: str) -> requests.Response:
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    return signed(endpoint, user, "PUT", path, body, trailer=True, headers={
        "Content-Encoding": encoding, "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32"})


def test_content_encoding_is_kept_without_aws_chunked(endpoint: str, users: dict, alice: Any, bucket: str) -> None:
    gz = b"\x1f\x8b" + b"gzip bytes"
    r = _chunked_put(endpoint, users["alice"], f"/{bucket}/gz", gz, "gzip,aws-chunked")
    assert r.status_code == 200, r.content
    assert alice.head_object(Bucket=bucket, Key="gz")["ContentEncoding"] == "gzip"
    r = _chunked_put(endpoint, users["alice"], f"/{bucket}/plain", b"plain", "aws-chunked")
    assert r.status_code == 200, r.content
    assert "ContentEncoding" not in alice.head_object(Bucket=bucket, Key="plain")
    assert alice.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"plain"
    alice.put_object(Bucket=bucket, Key="br", Body=b"x", ContentEncoding="br, gzip")
    assert alice.head_object(Bucket=bucket, Key="br")["ContentEncoding"] == "br, gzip"


# -- GetObjectAttributes ----------------------------------------------------------------------------


ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_object_attributes_of_a_simple_object(alice: Any, bucket: str) -> None:
    put = alice.put_object(Bucket=bucket, Key="o", Body=b"hello", ChecksumAlgorithm="SHA256",
                           StorageClass="REDUCED_REDUNDANCY")
    got = alice.get_object_attributes(Bucket=bucket, Key="o", ObjectAttributes=ALL)
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(b"hello").hexdigest()
    assert got["ObjectSize"] == 5 and got["StorageClass"] == "REDUCED_REDUNDANCY"
    assert got["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    assert got["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert "ObjectParts" not in got and got["LastModified"]
    only = alice.get_object_attributes(Bucket=bucket, Key="o", ObjectAttributes=["ObjectSize"])
    assert "ETag" not in only and only["ObjectSize"] == 5


def test_object_attributes_parts_and_versions(alice: Any, bucket: str) -> None:
    alice.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    sizes = [5 * MiB, 5 * MiB, 7]
    up, parts = _upload(alice, bucket, "big", [bytes([n]) * s for n, s in enumerate(sizes)])
    done = alice.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=up, MultipartUpload={"Parts": parts})
    got = alice.get_object_attributes(Bucket=bucket, Key="big", ObjectAttributes=ALL)
    assert got["ETag"] == done["ETag"].strip('"') and got["ObjectSize"] == sum(sizes)
    assert got["VersionId"] == done["VersionId"]
    op = got["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and op["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB), (3, 7)]
    page = alice.get_object_attributes(Bucket=bucket, Key="big", ObjectAttributes=["ObjectParts"], MaxParts=1,
                                       PartNumberMarker=1)["ObjectParts"]
    assert [p["PartNumber"] for p in page["Parts"]] == [2] and page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2 and page["MaxParts"] == 1
    old = alice.put_object(Bucket=bucket, Key="big", Body=b"small now")
    assert alice.get_object_attributes(Bucket=bucket, Key="big", ObjectAttributes=["ObjectSize"])["ObjectSize"] == 9
    first = alice.get_object_attributes(Bucket=bucket, Key="big", VersionId=done["VersionId"],
                                        ObjectAttributes=["ObjectSize"])
    assert first["ObjectSize"] == sum(sizes) and first["VersionId"] == done["VersionId"] != old["VersionId"]


def test_object_attributes_refusals(endpoint: str, users: dict, alice: Any, bob: Any, anon: Any,
                                    bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="o", Body=b"x")
    assert refused(lambda: bob.get_object_attributes(Bucket=bucket, Key="o", ObjectAttributes=["ETag"]))[:2] \
        == ("AccessDenied", 403)
    assert refused(lambda: anon.get_object_attributes(Bucket=bucket, Key="o", ObjectAttributes=["ETag"]))[:2] \
        == ("AccessDenied", 403)
    assert refused(lambda: alice.get_object_attributes(Bucket=bucket, Key="none", ObjectAttributes=["ETag"]))[:2] \
        == ("NoSuchKey", 404)
    for headers in ({"x-amz-object-attributes": "ETag,Colour"}, {"x-amz-object-attributes": ""}, {},
                    {"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": "-1"},
                    {"x-amz-object-attributes": "ObjectParts", "x-amz-part-number-marker": "x"}):
        r = signed(endpoint, users["alice"], "GET", f"/{bucket}/o?attributes", headers=headers)
        assert r.status_code == 400 and b"<Error><Code>Invalid" in r.content, (headers, r.content)
    r = signed(endpoint, users["alice"], "GET", f"/{bucket}/o?attributes&versionId=..%2F1",
               headers={"x-amz-object-attributes": "ETag"})
    assert r.status_code == 400
    for method, path in (("GET", f"/{bucket}?attributes"), ("PUT", f"/{bucket}/o?attributes"),
                         ("DELETE", f"/{bucket}/o?attributes")):
        r = signed(endpoint, users["alice"], method, path, headers={"x-amz-object-attributes": "ETag"})
        assert r.status_code == 405 and b"<Code>MethodNotAllowed</Code>" in r.content, (method, path)
    assert alice.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"  # the PUT and DELETE did nothing
    alice.put_object_acl(Bucket=bucket, Key="o", ACL="public-read")  # a public object: attributes are a read
    assert anon.get_object_attributes(Bucket=bucket, Key="o", ObjectAttributes=["ObjectSize"])["ObjectSize"] == 1


def test_object_attributes_with_the_aws_cli(endpoint: str, users: dict, alice: Any, bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="cli", Body=b"12345")
    out = aws_cli(endpoint, users["alice"], "s3api", "get-object-attributes", "--bucket", bucket, "--key", "cli",
                  "--object-attributes", "ETag", "ObjectSize", "StorageClass")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["ETag"], got["ObjectSize"], got["StorageClass"]) == (hashlib.md5(b"12345").hexdigest(), 5, "STANDARD")


# -- browser POST uploads ---------------------------------------------------------------------------


def post_form(post: dict, data: bytes, filename: str = "f.bin", extra: dict | None = None,
              after: dict | None = None) -> requests.Response:
    """The form a browser sends: the fields, then the file, (then fields AWS ignores)."""
    fields = [(k, (None, v)) for k, v in {**post["fields"], **(extra or {})}.items()]
    fields.append(("file", (filename, data, "application/octet-stream")))
    fields += [(k, (None, v)) for k, v in (after or {}).items()]
    return requests.post(post["url"], files=fields, allow_redirects=False)


def test_post_upload_with_a_boto3_policy(local_grid: LocalGrid, alice: Any, alice_v4: Any, bucket: str) -> None:
    post = alice_v4.generate_presigned_post(bucket, "uploads/${filename}", Fields={"Content-Type": "text/plain",
                                                                                "x-amz-meta-origin": "form"},
                                         Conditions=[{"Content-Type": "text/plain"}, {"x-amz-meta-origin": "form"},
                                                     ["content-length-range", 1, 2 * MiB]])
    data = os.urandom(MiB + 17)
    r = post_form(post, data, "report.txt", after={"x-amz-meta-late": "ignored"})
    assert r.status_code == 204, r.content
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = alice.get_object(Bucket=bucket, Key="uploads/report.txt")
    assert got["Body"].read() == data and got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"origin": "form"}
    with GridClient(local_grid.config_path) as c:  # the same object through the client library
        assert c.get(bucket, "uploads/report.txt") == data
    v2 = alice.generate_presigned_post(bucket, "v2.bin")  # boto3's default: a Signature Version 2 form
    assert post_form(v2, b"by v2").status_code == 204
    assert alice.get_object(Bucket=bucket, Key="v2.bin")["Body"].read() == b"by v2"
    forged = {**v2, "fields": {**v2["fields"], "signature": base64.b64encode(b"x" * 20).decode()}}
    r = post_form(forged, b"forged")
    assert r.status_code == 403 and b"SignatureDoesNotMatch" in r.content


def test_post_upload_answers(alice: Any, alice_v4: Any, bucket: str) -> None:
    post = alice_v4.generate_presigned_post(bucket, "a.txt", Fields={"success_action_status": "201"},
                                         Conditions=[{"success_action_status": "201"}])
    r = post_form(post, b"abc")
    assert r.status_code == 201 and b"<PostResponse" in r.content and b"<Key>a.txt</Key>" in r.content, r.content
    post = alice_v4.generate_presigned_post(
        bucket, "b.txt", Fields={"success_action_redirect": "https://app.example/done"},
        Conditions=[["starts-with", "$success_action_redirect", "https://app.example/"]])
    r = post_form(post, b"abc")
    assert r.status_code == 303 and r.headers["Location"].startswith("https://app.example/done?bucket=")
    assert "key=b.txt" in r.headers["Location"]
    post = alice_v4.generate_presigned_post(bucket, "c.txt", Fields={"tagging": "<Tagging><TagSet><Tag><Key>k</Key>"
                                                                           "<Value>v</Value></Tag></TagSet></Tagging>"},
                                         Conditions=[["starts-with", "$tagging", ""]])
    assert post_form(post, b"abc").status_code == 204
    assert alice.get_object_tagging(Bucket=bucket, Key="c.txt")["TagSet"] == [{"Key": "k", "Value": "v"}]


def _policy_post(endpoint: str, user: dict, bucket: str, conditions: list, fields: dict,
                 expiration: str = "2099-01-01T00:00:00Z") -> dict:
    """A POST form signed by hand (for policies boto3 would not write)."""
    now = dt.datetime.now(dt.UTC)
    date, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{user['access_key']}/{date}/us-east-1/s3/aws4_request"
    sig_fields = {"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential, "x-amz-date": stamp}
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": [
        *conditions, *({k: v} for k, v in sig_fields.items())]}).encode()).decode()
    key = sigv4.signing_key(user["secret_key"], sigv4.Credential.parse(credential))
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    return {"url": f"{endpoint}/{bucket}", "fields": {**fields, **sig_fields, "policy": policy,
                                                      "x-amz-signature": signature}}


def test_post_upload_refusals(endpoint: str, users: dict, alice: Any, alice_v4: Any, bucket: str) -> None:
    def error(r: requests.Response) -> tuple[int, str]:
        code = r.content.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in r.content else ""
        return r.status_code, code

    good = alice_v4.generate_presigned_post(bucket, "k", Conditions=[["content-length-range", 2, 10]])
    assert error(post_form(good, b"x" * 11)) == (400, "EntityTooLarge")
    assert error(post_form(good, b"x")) == (400, "EntityTooSmall")
    tampered = {**good, "fields": {**good["fields"], "key": "other"}}
    assert error(post_form(tampered, b"xyz")) == (403, "AccessDenied")  # key condition unmet
    wrong_sig = {**good, "fields": {**good["fields"], "x-amz-signature": "0" * 64}}
    assert error(post_form(wrong_sig, b"xyz")) == (403, "SignatureDoesNotMatch")
    assert error(post_form(good, b"xyz", extra={"x-amz-meta-sneaky": "1"})) == (403, "AccessDenied")
    assert error(post_form(good, b"xyz", extra={"x-ignore-this": "1"})) == (204, "")  # x-ignore-* is exempt
    no_key = {**good, "fields": {k: v for k, v in good["fields"].items() if k != "key"}}
    assert error(post_form(no_key, b"xyz")) == (400, "InvalidArgument")
    no_sig = {**good, "fields": {k: v for k, v in good["fields"].items() if k != "x-amz-signature"}}
    assert error(post_form(no_sig, b"xyz")) == (400, "InvalidArgument")
    no_file = requests.post(good["url"], files=[(k, (None, v)) for k, v in good["fields"].items()])
    assert error(no_file) == (400, "InvalidArgument")
    garbage = {**good, "fields": {**good["fields"], "policy": "not base64!"}}
    assert error(post_form(garbage, b"xyz"))[1] in ("InvalidPolicyDocument", "SignatureDoesNotMatch")
    expired = _policy_post(endpoint, users["alice"], bucket, [{"bucket": bucket}, {"key": "e"}], {"key": "e"},
                           expiration="2020-01-01T00:00:00Z")
    assert error(post_form(expired, b"xyz")) == (403, "AccessDenied")
    not_json = _policy_post(endpoint, users["alice"], bucket, [{"bucket": bucket}, {"key": "j"}], {"key": "j"})
    not_json["fields"]["policy"] = base64.b64encode(b"{not json").decode()  # re-signed below
    cred = sigv4.Credential.parse(not_json["fields"]["x-amz-credential"])
    not_json["fields"]["x-amz-signature"] = hmac.new(sigv4.signing_key(users["alice"]["secret_key"], cred),
                                                     not_json["fields"]["policy"].encode(), hashlib.sha256).hexdigest()
    assert error(post_form(not_json, b"xyz")) == (400, "InvalidPolicyDocument")
    other_bucket = _policy_post(endpoint, users["alice"], bucket, [{"bucket": "elsewhere"}, {"key": "b"}], {"key": "b"})
    assert error(post_form(other_bucket, b"xyz")) == (403, "AccessDenied")
    # Bob signs a perfect policy for alice's bucket: he may not write it. Nor may an unsigned form.
    bobs = client(endpoint, users["bob"]).generate_presigned_post(bucket, "bob.txt")
    assert error(post_form(bobs, b"xyz")) == (403, "AccessDenied")
    unsigned = requests.post(f"{endpoint}/{bucket}", files=[("key", (None, "anon.txt")), ("file", ("f", b"xyz"))])
    assert error(unsigned) == (403, "AccessDenied")
    # A form sent with alice's signed headers but no policy: the headers sign no byte of the form.
    form = requests.Request("POST", f"{endpoint}/{bucket}", files=[("key", (None, "hdr.txt")),
                                                                    ("file", ("f", b"xyz"))]).prepare()
    assert error(signed(endpoint, users["alice"], "POST", f"/{bucket}", form.body,
                        {"Content-Type": form.headers["Content-Type"]})) == (403, "AccessDenied")
    alice.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert error(requests.post(f"{endpoint}/{bucket}", files=[("key", (None, "anon.txt")),
                                                               ("file", ("f", b"xyz"))])) == (403, "AccessDenied")
    listed = [o["Key"] for o in alice.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == ["k"]  # only the x-ignore-* upload: nothing refused was stored
    huge = post_form(good, b"xyz", extra={"x-ignore-pad": "p" * 30000})
    assert error(huge) == (400, "MaxPostPreDataLengthExceededError")


def test_post_upload_hostile_forms(endpoint: str, users: dict, alice: Any, alice_v4: Any, bucket: str) -> None:
    def code(r: requests.Response) -> tuple[int, str]:
        return r.status_code, r.content.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in r.content \
            else ""

    url = f"{endpoint}/{bucket}"
    for body, ctype in ((b"garbage", "multipart/form-data"), (b"--x\r\nno headers", "multipart/form-data; boundary=x"),
                        (b"", "multipart/form-data; boundary=x")):
        r = requests.post(url, data=body, headers={"Content-Type": ctype})
        assert r.status_code == 400 and b"<Error><Code>" in r.content, (body, r.content)
    cond = [["starts-with", "$x-amz-meta-note", ""], ["starts-with", "$Content-Type", ""]]
    for extra in ({"x-amz-meta-note": "line\r\nX-Injected: 1"}, {"Content-Type": "text/plain\r\nX-Injected: 1"}):
        post = alice_v4.generate_presigned_post(bucket, "hdr", Fields=extra, Conditions=cond[:1] if
                                                "x-amz-meta-note" in extra else cond[1:])
        assert code(post_form(post, b"x")) == (400, "InvalidArgument"), extra
    bad_name = alice_v4.generate_presigned_post(bucket, "hdr", Fields={"x-amz-meta-a b": "v"},
                                                Conditions=[{"x-amz-meta-a b": "v"}])
    assert code(post_form(bad_name, b"x")) == (400, "InvalidArgument")
    newline_redirect = alice_v4.generate_presigned_post(
        bucket, "hdr", Fields={"success_action_redirect": "https://a.example/\r\nSet-Cookie: x"},
        Conditions=[["starts-with", "$success_action_redirect", ""]])
    assert code(post_form(newline_redirect, b"x")) == (400, "InvalidArgument")
    for conditions in ([["nope", "$key", "x"]], [["content-length-range", -1, 5]], [["eq", "key", "k"]], ["x"],
                       [{"a": "1", "b": "2"}]):
        post = _policy_post(endpoint, users["alice"], bucket, [{"key": "p"}, *conditions], {"key": "p"})
        assert code(post_form(post, b"x")) == (400, "InvalidPolicyDocument"), conditions
    many = [(f"x-ignore-{i}", (None, "")) for i in range(200)] + [("file", ("f", b"x"))]
    assert code(requests.post(url, files=many)) == (400, "MaxPostPreDataLengthExceededError")
    twice = [("key", (None, "a")), ("key", (None, "b")), ("file", ("f", b"x"))]
    assert code(requests.post(url, files=twice)) == (400, "InvalidArgument")
    # The key after the file is not read (AWS ignores what follows the file): no key.
    good = alice_v4.generate_presigned_post(bucket, "late")
    late = {**good, "fields": {k: v for k, v in good["fields"].items() if k != "key"}}
    assert code(post_form(late, b"x", after={"key": "late"})) == (400, "InvalidArgument")
    # Too large, cut while it streams: nothing is stored.
    small = alice_v4.generate_presigned_post(bucket, "big", Conditions=[["content-length-range", 0, MiB]])
    assert code(post_form(small, os.urandom(3 * MiB))) == (400, "EntityTooLarge")
    fn = alice_v4.generate_presigned_post(bucket, "in/${filename}")
    assert post_form(fn, b"named", filename="../x y.txt").status_code == 204
    assert alice.get_object(Bucket=bucket, Key="in/../x y.txt")["Body"].read() == b"named"
    nul = {**fn, "fields": {**fn["fields"], "key": "in/a\x00b"}}  # within the policy's starts-with "in/"
    assert code(post_form(nul, b"x"))[0] == 400  # a key never holds a NUL
    keys = [o["Key"] for o in alice.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["in/../x y.txt"]


def test_copy_object_if_none_match_and_if_match(alice: Any, bob: Any, bucket: str) -> None:
    alice.put_object(Bucket=bucket, Key="src", Body=b"source")
    dst = alice.put_object(Bucket=bucket, Key="dst", Body=b"old")["ETag"]
    source = {"Bucket": bucket, "Key": "src"}
    assert refused(lambda: alice.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfNoneMatch="*"))[:2] \
        == ("PreconditionFailed", 412)
    assert refused(lambda: alice.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfMatch='"x"'))[:2] \
        == ("PreconditionFailed", 412)
    assert refused(lambda: alice.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfMatch=dst,
                                             StorageClass="REDUCED_REDUNDANCY", IfNoneMatch="*"))[1] == 501
    assert alice.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old"
    alice.copy_object(Bucket=bucket, Key="dst", CopySource=source, IfMatch=dst)
    assert alice.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"source"
    alice.copy_object(Bucket=bucket, Key="new", CopySource=source, IfNoneMatch="*", StorageClass="REDUCED_REDUNDANCY")
    assert alice.get_object(Bucket=bucket, Key="new")["Body"].read() == b"source"  # re-encoded, conditionally
    assert refused(lambda: bob.copy_object(Bucket=bucket, Key="other", CopySource=source, IfNoneMatch="*"))[:2] \
        == ("AccessDenied", 403)


def _slow_put(endpoint: str, user: dict, path: str, body: bytes, headers: dict, meanwhile: Callable[[], Any]) -> Any:
    """A signed PUT whose body comes in two pieces, ``meanwhile()`` run between them; the answer as (status,
    body). The first piece is larger than what the sockets and aiohttp buffer, so sending it returns only
    once the gateway takes the data, which it does after checking the request's conditions."""
    req = AWSRequest(method="PUT", url=endpoint + path, data=body,
                     headers={**headers, "Content-Length": str(len(body))})
    S3SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1").add_auth(req)
    url = urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", url.netloc)  # signed as botocore saw it
    for name, value in req.prepare().headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body[:-MiB])
    meanwhile()
    conn.send(body[-MiB:])
    answer = conn.getresponse()
    out = answer.status, answer.read()
    conn.close()
    return out


def test_a_conditional_write_is_checked_again_at_its_commit(endpoint: str, users: dict, alice: Any,
                                                            bucket: str) -> None:
    etag = alice.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]
    body = os.urandom(24 * MiB)
    # Replaced while the data came: the ETag that matched is not current any more.
    status, answer = _slow_put(endpoint, users["alice"], f"/{bucket}/k", body, {"If-Match": etag},
                               lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"replaced"))
    assert status == 412 and b"<Code>PreconditionFailed</Code>" in answer, answer
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"replaced"
    etag = alice.head_object(Bucket=bucket, Key="k")["ETag"]
    # Deleted while the data came: AWS's 409, retry.
    status, answer = _slow_put(endpoint, users["alice"], f"/{bucket}/k", body, {"If-Match": etag},
                               lambda: alice.delete_object(Bucket=bucket, Key="k"))
    assert status == 409 and b"<Code>ConditionalRequestConflict</Code>" in answer
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="k"))[1] == 404
    # Created while the data came: If-None-Match loses.
    status, answer = _slow_put(endpoint, users["alice"], f"/{bucket}/k", body, {"If-None-Match": "*"},
                               lambda: alice.put_object(Bucket=bucket, Key="k", Body=b"first"))
    assert status == 412 and b"<Code>PreconditionFailed</Code>" in answer
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_post_upload_checksums_and_storage_class(alice: Any, alice_v4: Any, bucket: str) -> None:
    data = b"checked data"
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    fields = {"x-amz-checksum-sha256": digest, "x-amz-storage-class": "REDUCED_REDUNDANCY"}
    post = alice_v4.generate_presigned_post(bucket, "sum", Fields=fields,
                                            Conditions=[{k: v} for k, v in fields.items()])
    assert post_form(post, data).status_code == 204
    head = alice.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == digest and head["StorageClass"] == "REDUCED_REDUNDANCY"
    wrong = alice_v4.generate_presigned_post(bucket, "bad-sum", Fields={"x-amz-checksum-sha256": digest},
                                             Conditions=[{"x-amz-checksum-sha256": digest}])
    r = post_form(wrong, b"other data")
    assert r.status_code == 400 and b"<Code>BadDigest</Code>" in r.content
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="bad-sum"))[1] == 404  # nothing stored
    sse = alice_v4.generate_presigned_post(bucket, "sse", Fields={"x-amz-server-side-encryption": "AES256"},
                                           Conditions=[{"x-amz-server-side-encryption": "AES256"}])
    assert post_form(sse, b"x").status_code == 501  # not taken and ignored
    acl = alice_v4.generate_presigned_post(bucket, "acl", Fields={"acl": "public-read"},
                                           Conditions=[{"acl": "public-read"}])
    assert post_form(acl, b"x").status_code == 501
    assert refused(lambda: alice.head_object(Bucket=bucket, Key="acl"))[1] == 404
