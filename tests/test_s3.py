"""The S3 gateway against real clients: boto3, botocore-signed raw requests, the aws cli, s3cmd, rclone,
s3fs with pandas, and grid:// on the same objects. All against a live local grid and gateway processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import botocore
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.gateways.s3.users import UserStore
from tests.conftest import held_chunks

BIN = Path(sys.executable).parent
MiB = 1 << 20


@pytest.fixture(scope="module")
def endpoint(local_grid: LocalGrid) -> str:
    return local_grid.config().extra["s3"]["url"]


@pytest.fixture(scope="module")
def users(local_grid: LocalGrid) -> dict[str, dict[str, str]]:
    store = UserStore(local_grid.config_path)
    out = {}
    for name in ("alice", "bob"):
        u = store.create(name)
        out[name] = {"access_key": u.access_key, "secret_key": u.secret_key}
    return out


def make_client(endpoint: str, user: dict[str, str], **config: object) -> object:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=user["access_key"],
                        aws_secret_access_key=user["secret_key"], region_name="us-east-1",
                        config=Config(**config) if config else None)


@pytest.fixture(scope="module")
def s3(endpoint: str, users: dict) -> object:
    return make_client(endpoint, users["alice"])


@pytest.fixture(scope="module")
def bucket(s3: object) -> str:
    s3.create_bucket(Bucket="alpha")
    return "alpha"


def code_of(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def s3_error(call: object) -> tuple[str, int]:
    """The S3 error code and HTTP status a call fails with (it must fail)."""
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()  # type: ignore[operator]
    return code_of(e.value)


def signed_request(endpoint: str, user: dict, method: str, path: str, body: bytes = b"",
                   headers: dict | None = None, send: bytes | None = None,
                   when: dt.datetime | None = None) -> requests.Response:
    """A raw request signed by botocore's own SigV4 signer for ``body`` (at time ``when``), sending ``send``."""
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    auth = S3SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1")
    if when is not None:
        real = dt.datetime

        class Frozen(dt.datetime):
            @classmethod
            def utcnow(cls) -> dt.datetime:  # type: ignore[override]
                return when.replace(tzinfo=None)

            @classmethod
            def now(cls, tz: object = None) -> dt.datetime:  # type: ignore[override]
                return when if tz else when.replace(tzinfo=None)

        botocore.auth.datetime.datetime = Frozen  # type: ignore[attr-defined]
        try:
            auth.add_auth(req)
        finally:
            botocore.auth.datetime.datetime = real  # type: ignore[attr-defined]
    else:
        auth.add_auth(req)
    prepared = req.prepare()
    return requests.request(method, prepared.url, data=body if send is None else send,
                            headers=dict(prepared.headers))


# -- boto3 ------------------------------------------------------------------------------


def test_put_get_list_delete_with_metadata_and_default_checksums(s3: object, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello", Metadata={"team": "data"},
                        ContentType="text/plain")
    assert put["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    assert put["ChecksumCRC32"]  # boto3 >= 1.36 sends a CRC32 by default; the gateway checks and keeps it
    got = s3.get_object(Bucket=bucket, Key="docs/a.txt", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"hello" and got["Metadata"] == {"team": "data"}
    assert got["ContentType"] == "text/plain" and got["ChecksumCRC32"] == put["ChecksumCRC32"]
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"docs/sub{i % 2}/f{i}", Body=b"x" * i)
    page = s3.list_objects_v2(Bucket=bucket, Prefix="docs/", Delimiter="/")
    assert [c["Key"] for c in page["Contents"]] == ["docs/a.txt"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["docs/sub0/", "docs/sub1/"]
    keys = []
    for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="docs/", PaginationConfig={
            "PageSize": 2}):
        keys += [c["Key"] for c in p.get("Contents", [])]
    assert keys == sorted(keys) and len(keys) == 6
    v1 = s3.list_objects(Bucket=bucket, Prefix="docs/", Marker="docs/sub0/f2", MaxKeys=10)
    assert [c["Key"] for c in v1["Contents"]] == ["docs/sub0/f4", "docs/sub1/f1", "docs/sub1/f3"]
    s3.delete_object(Bucket=bucket, Key="docs/a.txt")
    assert s3_error(lambda: s3.head_object(Bucket=bucket, Key="docs/a.txt"))[1] == 404
    gone = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"docs/sub{i % 2}/f{i}"} for i in range(5)],
                                                    "Quiet": True})
    assert not gone.get("Errors") and not gone.get("Deleted")
    assert s3.list_objects_v2(Bucket=bucket, Prefix="docs/")["KeyCount"] == 0


def test_managed_multipart_upload_and_download_on_eight_threads(s3: object, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(45 * MiB + 123))
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=8)
    s3.upload_file(str(src), bucket, "big/file.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big/file.bin")
    assert head["ContentLength"] == src.stat().st_size and head["ETag"].endswith('-6"')
    out = tmp_path / "back.bin"
    s3.download_file(bucket, "big/file.bin", str(out), Config=cfg)
    assert out.read_bytes() == src.read_bytes()
    ranged = s3.get_object(Bucket=bucket, Key="big/file.bin", Range="bytes=8388607-8388616")
    assert ranged["Body"].read() == src.read_bytes()[8388607:8388617]
    assert ranged["ContentRange"] == f"bytes 8388607-8388616/{src.stat().st_size}"


def test_presigned_get_and_put_v2_default_and_v4_and_expiry(s3: object, bucket: str, endpoint: str,
                                                            users: dict) -> None:
    s3.put_object(Bucket=bucket, Key="pre/get.txt", Body=b"presigned")
    v4 = make_client(endpoint, users["alice"], signature_version="s3v4")
    for client in (s3, v4):
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/get.txt"},
                                            ExpiresIn=60)
        assert requests.get(url).content == b"presigned"
        put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/put.txt"},
                                                ExpiresIn=60)
        assert requests.put(put_url, data=b"uploaded").status_code == 200
        assert s3.get_object(Bucket=bucket, Key="pre/put.txt")["Body"].read() == b"uploaded"
        expired = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/get.txt"},
                                                ExpiresIn=1)
        time.sleep(2.1)
        r = requests.get(expired)
        assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content and b"expired" in r.content
        tampered = url.replace("pre/get.txt", "pre/put.txt")
        assert requests.get(tampered).status_code == 403


def test_versioning_delete_markers_and_version_ids(s3: object) -> None:
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="versioned")["Status"] == "Enabled"
    v1 = s3.put_object(Bucket="versioned", Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket="versioned", Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket="versioned", Key="k", VersionId=v1)["Body"].read() == b"one"
    marker = s3.delete_object(Bucket="versioned", Key="k")
    assert marker["DeleteMarker"] is True
    assert s3_error(lambda: s3.get_object(Bucket="versioned", Key="k")) == ("NoSuchKey", 404)
    listing = s3.list_object_versions(Bucket="versioned")
    assert [v["VersionId"] for v in listing["Versions"]] == [v2, v1]
    assert listing["DeleteMarkers"][0]["IsLatest"] is True
    s3.delete_object(Bucket="versioned", Key="k", VersionId=listing["DeleteMarkers"][0]["VersionId"])
    assert s3.get_object(Bucket="versioned", Key="k")["Body"].read() == b"two"
    # The clean-up common test suites do: every version, then the bucket.
    for v in s3.list_object_versions(Bucket="versioned").get("Versions", []):
        s3.delete_object(Bucket="versioned", Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket="versioned")
    assert "versioned" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_copy_conditions_ranges_overrides_and_tagging(s3: object, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c/src", Body=b"0123456789", Metadata={"a": "1"}, Tagging="t=1")
    etag = put["ETag"]
    s3.copy_object(Bucket=bucket, Key="c/same", CopySource={"Bucket": bucket, "Key": "c/src"})
    same = s3.head_object(Bucket=bucket, Key="c/same")
    assert same["Metadata"] == {"a": "1"} and same["ETag"] == etag
    s3.copy_object(Bucket=bucket, Key="c/new", CopySource=f"{bucket}/c/src", MetadataDirective="REPLACE",
                   Metadata={"b": "2"}, ContentType="text/csv")
    new = s3.head_object(Bucket=bucket, Key="c/new")
    assert new["Metadata"] == {"b": "2"} and new["ContentType"] == "text/csv"
    assert s3_error(lambda: s3.copy_object(Bucket=bucket, Key="c/x", CopySource=f"{bucket}/c/src",
                                           CopySourceIfMatch='"nope"')) == ("PreconditionFailed", 412)
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="c/src", IfNoneMatch=etag))[1] == 304
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="c/src", IfMatch='"other"')) == ("PreconditionFailed", 412)
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="c/src", Range="bytes=20-30")) == ("InvalidRange", 416)
    assert s3.get_object(Bucket=bucket, Key="c/src", Range="bytes=-3")["Body"].read() == b"789"
    s3.put_object(Bucket=bucket, Key="c/empty", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="c/empty")["Body"].read() == b""
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="c/empty", Range="bytes=0-5")) == ("InvalidRange", 416)
    s3.put_object(Bucket=bucket, Key="c/folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key="c/ünï çødé/文件.txt", Body=b"unicode")
    assert s3.get_object(Bucket=bucket, Key="c/ünï çødé/文件.txt")["Body"].read() == b"unicode"
    over = s3.get_object(Bucket=bucket, Key="c/src", ResponseContentType="application/x-test",
                         ResponseContentDisposition="attachment")
    assert over["ContentType"] == "application/x-test" and over["ContentDisposition"] == "attachment"
    assert s3.get_object_tagging(Bucket=bucket, Key="c/src")["TagSet"] == [{"Key": "t", "Value": "1"}]
    s3.put_object_tagging(Bucket=bucket, Key="c/src", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="c/src")["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.delete_object_tagging(Bucket=bucket, Key="c/src")
    assert s3.get_object_tagging(Bucket=bucket, Key="c/src")["TagSet"] == []


def test_multipart_errors_listing_abort_and_part_copy(s3: object, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp/obj")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="mp/obj", UploadId=up, PartNumber=1, Body=b"a" * 1000)["ETag"]
    p2 = s3.upload_part(Bucket=bucket, Key="mp/obj", UploadId=up, PartNumber=2, Body=b"b" * 1000)["ETag"]
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up)["Parts"]] == [1, 2]
    assert up in [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]]
    for parts, code in (([{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}], "EntityTooSmall"),
                        ([{"PartNumber": 2, "ETag": p2}, {"PartNumber": 1, "ETag": p1}], "InvalidPartOrder"),
                        ([{"PartNumber": 1, "ETag": '"0000"'}], "InvalidPart")):
        assert s3_error(lambda parts=parts: s3.complete_multipart_upload(
            Bucket=bucket, Key="mp/obj", UploadId=up, MultipartUpload={"Parts": parts})) == (code, 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="mp/obj", UploadId=up)
    assert s3_error(lambda: s3.list_parts(Bucket=bucket, Key="mp/obj", UploadId=up)) == ("NoSuchUpload", 404)

    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="mp/source", Body=source)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp/copied")["UploadId"]
    c1 = s3.upload_part_copy(Bucket=bucket, Key="mp/copied", UploadId=up, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "mp/source"},
                             CopySourceRange=f"bytes=0-{5 * MiB - 1}")["CopyPartResult"]["ETag"]
    c2 = s3.upload_part(Bucket=bucket, Key="mp/copied", UploadId=up, PartNumber=2, Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp/copied", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": c1}, {"PartNumber": 2, "ETag": c2}]})
    assert s3.get_object(Bucket=bucket, Key="mp/copied")["Body"].read() == source[: 5 * MiB] + b"tail"


# -- security -----------------------------------------------------------------------------


def test_wrong_secret_unknown_key_and_clock_skew(endpoint: str, users: dict, bucket: str) -> None:
    bad = make_client(endpoint, {**users["alice"], "secret_key": "wrong" + users["alice"]["secret_key"]})
    assert s3_error(lambda: bad.list_objects_v2(Bucket=bucket)) == ("SignatureDoesNotMatch", 403)
    unknown = make_client(endpoint, {"access_key": "GKNOSUCHKEY000000000", "secret_key": "x"})
    assert s3_error(lambda: unknown.list_buckets()) == ("InvalidAccessKeyId", 403)
    skewed = signed_request(endpoint, users["alice"], "GET", f"/{bucket}",
                            when=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert skewed.status_code == 403 and b"RequestTimeTooSkewed" in skewed.content


def test_anonymous_private_public_read_and_other_users_bucket(endpoint: str, users: dict, s3: object,
                                                              bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"secret")
    anon = requests.get(f"{endpoint}/{bucket}/private.txt")
    assert anon.status_code == 403 and b"AccessDenied" in anon.content
    bob = make_client(endpoint, users["bob"])
    for call in (lambda: bob.get_object(Bucket=bucket, Key="private.txt"), lambda: bob.list_objects_v2(Bucket=bucket),
                 lambda: bob.put_object(Bucket=bucket, Key="intruder", Body=b"x"),
                 lambda: bob.delete_bucket(Bucket=bucket)):
        assert s3_error(call) == ("AccessDenied", 403)
    assert bucket not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    assert s3_error(lambda: bob.create_bucket(Bucket=bucket)) == ("BucketAlreadyExists", 409)
    assert s3_error(lambda: s3.create_bucket(Bucket=bucket)) == ("BucketAlreadyOwnedByYou", 409)

    s3.create_bucket(Bucket="public-data", ACL="public-read")
    s3.put_object(Bucket="public-data", Key="open.txt", Body=b"for all", ACL="public-read")  # objects: their own ACL
    assert requests.get(f"{endpoint}/public-data/open.txt").content == b"for all"
    assert requests.put(f"{endpoint}/public-data/evil.txt", data=b"x").status_code == 403
    assert bob.get_object(Bucket="public-data", Key="open.txt")["Body"].read() == b"for all"


def test_tampered_payload_is_rejected_and_nothing_is_stored(endpoint: str, users: dict, s3: object,
                                                            bucket: str) -> None:
    body = b"the real body"
    r = signed_request(endpoint, users["alice"], "PUT", f"/{bucket}/tampered", body, send=b"the evil body")
    assert r.status_code == 400 and b"XAmzContentSHA256Mismatch" in r.content
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="tampered")
    wrong_crc = signed_request(endpoint, users["alice"], "PUT", f"/{bucket}/badcrc", body,
                               headers={"x-amz-checksum-crc32": "AAAAAA=="})
    assert wrong_crc.status_code == 400 and b"BadDigest" in wrong_crc.content
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="badcrc")


def test_path_tricks_in_keys_stay_keys(s3: object, bucket: str, local_grid: LocalGrid) -> None:
    before = {p for p in local_grid.data.rglob("*")}
    passwd = Path("/etc/passwd").stat()
    for key in ("../../etc/passwd", "a/../../b", "./x/./y"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "../../etc/passwd" in keys and "a/../../b" in keys
    created = {p for p in local_grid.data.rglob("*")} - before
    assert not [p for p in created if "passwd" in p.name or ".." in p.parts]  # chunks are named by id only
    after = Path("/etc/passwd").stat()
    assert (after.st_mtime_ns, after.st_size) == (passwd.st_mtime_ns, passwd.st_size)
    with pytest.raises((botocore.exceptions.ClientError, ValueError)) as e:
        s3.put_object(Bucket=bucket, Key="nul\x00key", Body=b"x")
    if isinstance(e.value, botocore.exceptions.ClientError):
        assert code_of(e.value)[1] == 400
    assert s3_error(lambda: s3.put_object(Bucket=bucket, Key="k" * 1100, Body=b"x"))[1] == 400


def test_delete_objects_limit_malformed_xml_and_not_implemented(endpoint: str, users: dict, s3: object,
                                                                bucket: str) -> None:
    too_many = {"Objects": [{"Key": f"k{i}"} for i in range(10000)]}
    assert s3_error(lambda: s3.delete_objects(Bucket=bucket, Delete=too_many)) == ("MalformedXML", 400)
    r = signed_request(endpoint, users["alice"], "POST", f"/{bucket}?delete", b"<Delete><Object><Key>x</Key>",
                       headers={"Content-MD5": ""})
    assert r.status_code == 400 and b"MalformedXML" in r.content
    for sub in ("replication", "website", "logging"):
        r = signed_request(endpoint, users["alice"], "GET", f"/{bucket}?{sub}")
        assert r.status_code == 501 and b"<Code>NotImplemented</Code>" in r.content, sub
    r = signed_request(endpoint, users["alice"], "PUT", f"/{bucket}?policy", b'{"Version": "2012-10-17"}')
    assert r.status_code == 400  # policies are implemented (test_s3_access); this one lacks Content-MD5


def test_bucket_location_cors_and_non_empty_delete(s3: object, bucket: str, endpoint: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET"], "MaxAgeSeconds": 60}]})
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["https://app.example"]
    pre = requests.options(f"{endpoint}/{bucket}/x", headers={"Origin": "https://app.example",
                                                               "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    denied = requests.options(f"{endpoint}/{bucket}/x", headers={"Origin": "https://evil.example",
                                                                  "Access-Control-Request-Method": "GET"})
    assert denied.status_code == 403
    s3.delete_bucket_cors(Bucket=bucket)
    assert s3_error(lambda: s3.get_bucket_cors(Bucket=bucket)) == ("NoSuchCORSConfiguration", 404)
    assert s3_error(lambda: s3.delete_bucket(Bucket=bucket)) == ("BucketNotEmpty", 409)
    assert s3_error(lambda: s3.head_bucket(Bucket="no-such-bucket"))[1] == 404


# -- grid:// on the same objects ------------------------------------------------------------


def test_s3_objects_read_through_grid_and_the_reverse(s3: object, bucket: str, local_grid: LocalGrid) -> None:
    import fsspec

    fs = fsspec.filesystem("grid", config=str(local_grid.config_path))
    data = os.urandom(3 * MiB + 7)
    s3.put_object(Bucket=bucket, Key="x/from-s3.bin", Body=data, Metadata={"origin": "s3"})
    assert fs.cat_file(f"{bucket}/x/from-s3.bin") == data
    assert fs.getxattr(f"{bucket}/x/from-s3.bin", "origin") == "s3"
    with GridClient(local_grid.config_path) as client:
        client.put(bucket, "x/from-grid.bin", data[::-1], properties={"origin": "grid"}, mime_type="text/plain")
    got = s3.get_object(Bucket=bucket, Key="x/from-grid.bin")
    assert got["Body"].read() == data[::-1] and got["Metadata"] == {"origin": "grid"}
    assert got["ContentType"] == "text/plain"


# -- other clients ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(endpoint: str, users: dict, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AWS_ACCESS_KEY_ID": users["alice"]["access_key"],
            "AWS_SECRET_ACCESS_KEY": users["alice"]["secret_key"], "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}


def aws(env: dict, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "aws"), "--endpoint-url", endpoint, *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_aws_cli_gigabyte_multipart_sync_ls_and_s3api(cli_env: dict, endpoint: str, tmp_path: Path) -> None:
    aws(cli_env, endpoint, "s3", "mb", "s3://awscli")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        block = os.urandom(16 * MiB)
        for i in range(64):
            f.write(block[i:] + block[:i])
    aws(cli_env, endpoint, "s3", "cp", str(big), "s3://awscli/big.bin")
    back = tmp_path / "back.bin"
    aws(cli_env, endpoint, "s3", "cp", "s3://awscli/big.bin", str(back))
    assert big.stat().st_size == back.stat().st_size == 1024 * MiB
    assert hashlib.md5(big.read_bytes()).digest() == hashlib.md5(back.read_bytes()).digest()
    head = json.loads(aws(cli_env, endpoint, "s3api", "head-object", "--bucket", "awscli", "--key", "big.bin").stdout)
    assert head["ETag"].endswith('-128"')  # the aws cli's 8 MiB parts, assembled without copying

    tree = tmp_path / "tree"
    for i in range(30):
        (tree / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 3}" / f"f{i}.txt").write_bytes(os.urandom(1000 + i))
    first = aws(cli_env, endpoint, "s3", "sync", str(tree), "s3://awscli/tree")
    assert first.stdout.count("upload:") == 30
    second = aws(cli_env, endpoint, "s3", "sync", str(tree), "s3://awscli/tree")
    assert "upload:" not in second.stdout
    listed = aws(cli_env, endpoint, "s3", "ls", "--recursive", "s3://awscli/tree/")
    assert len(listed.stdout.splitlines()) == 30
    aws(cli_env, endpoint, "s3api", "put-bucket-versioning", "--bucket", "awscli",
        "--versioning-configuration", "Status=Enabled")
    status = json.loads(aws(cli_env, endpoint, "s3api", "get-bucket-versioning", "--bucket", "awscli").stdout)
    assert status["Status"] == "Enabled"


def test_s3cmd_put_get_ls(endpoint: str, users: dict, tmp_path: Path) -> None:
    host = endpoint.removeprefix("http://")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(f"[default]\naccess_key = {users['alice']['access_key']}\n"
                   f"secret_key = {users['alice']['secret_key']}\nhost_base = {host}\nhost_bucket = {host}\n"
                   "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n")
    src = tmp_path / "s3cmd.bin"
    src.write_bytes(os.urandom(2 * MiB + 3))

    def run(*args: str) -> str:
        proc = subprocess.run([str(BIN / "s3cmd"), "-c", str(cfg), *args], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run("mb", "s3://s3cmd-bucket")
    run("put", str(src), "s3://s3cmd-bucket/dir/file.bin")
    assert "dir/file.bin" in run("ls", "-r", "s3://s3cmd-bucket")
    out = tmp_path / "s3cmd.back"
    run("get", "s3://s3cmd-bucket/dir/file.bin", str(out))
    assert out.read_bytes() == src.read_bytes()


def test_rclone_copy_and_check(endpoint: str, users: dict, tmp_path: Path) -> None:
    tree = tmp_path / "rc"
    for i in range(12):
        (tree / f"p{i % 2}").mkdir(parents=True, exist_ok=True)
        (tree / f"p{i % 2}" / f"{i}.dat").write_bytes(os.urandom(5000 * (i + 1)))
    env = {**os.environ, "RCLONE_CONFIG_GRID_TYPE": "s3", "RCLONE_CONFIG_GRID_PROVIDER": "Other",
           "RCLONE_CONFIG_GRID_ACCESS_KEY_ID": users["alice"]["access_key"],
           "RCLONE_CONFIG_GRID_SECRET_ACCESS_KEY": users["alice"]["secret_key"],
           "RCLONE_CONFIG_GRID_ENDPOINT": endpoint, "RCLONE_CONFIG_GRID_REGION": "us-east-1",
           "RCLONE_CONFIG": str(tmp_path / "rclone.conf")}
    env.pop("AWS_CA_BUNDLE", None)  # rclone's SDK refuses a CA bundle on its plain-HTTP transport

    def rclone(*args: str) -> str:
        proc = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    rclone("mkdir", "grid:rclone-bucket")
    rclone("copy", str(tree), "grid:rclone-bucket/tree")
    rclone("check", str(tree), "grid:rclone-bucket/tree")
    assert len(rclone("lsf", "-R", "--files-only", "grid:rclone-bucket/tree").split()) == 12
    back = tmp_path / "back"
    rclone("copy", "grid:rclone-bucket/tree", str(back))
    assert sorted(p.read_bytes() for p in back.rglob("*.dat")) == sorted(p.read_bytes() for p in tree.rglob("*.dat"))


def test_s3fs_with_pandas(endpoint: str, users: dict, s3: object) -> None:
    import pandas as pd

    s3.create_bucket(Bucket="frames")
    opts = {"key": users["alice"]["access_key"], "secret": users["alice"]["secret_key"],
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    df = pd.DataFrame({"a": range(1000), "b": [f"row{i}" for i in range(1000)]})
    df.to_parquet("s3://frames/t/data.parquet", storage_options=opts)
    df.to_csv("s3://frames/t/data.csv", index=False, storage_options=opts)
    pd.testing.assert_frame_equal(pd.read_parquet("s3://frames/t/data.parquet", storage_options=opts), df)
    pd.testing.assert_frame_equal(pd.read_csv("s3://frames/t/data.csv", storage_options=opts), df)


def test_user_commands(local_grid: LocalGrid) -> None:
    grid = [sys.executable, "-m", "gridfs.cli.main", "--config", str(local_grid.config_path)]
    made = json.loads(subprocess.run([*grid, "user", "create", "carol", "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    assert made["access_key"].startswith("GK") and len(made["secret_key"]) >= 30
    listed = subprocess.run([*grid, "user", "list"], capture_output=True, text=True, check=True).stdout
    assert "carol" in listed and made["secret_key"] not in listed
    dup = subprocess.run([*grid, "user", "create", "carol"], capture_output=True, text=True)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    subprocess.run([*grid, "user", "delete", "carol"], check=True, capture_output=True)
    assert "carol" not in subprocess.run([*grid, "user", "list"], capture_output=True, text=True).stdout


def test_checksum_algorithms_storage_classes_url_encoding_and_dates(s3: object, bucket: str, endpoint: str,
                                                                     users: dict) -> None:
    for alg in ("SHA1", "SHA256"):
        put = s3.put_object(Bucket=bucket, Key=f"sum/{alg}", Body=b"checksummed", ChecksumAlgorithm=alg)
        got = s3.get_object(Bucket=bucket, Key=f"sum/{alg}", ChecksumMode="ENABLED")
        assert got["Body"].read() == b"checksummed" and got[f"Checksum{alg}"] == put[f"Checksum{alg}"]
    # boto3 needs awscrt for CRC32C: a raw signed request carries it instead.
    import base64

    import crc32c

    value = base64.b64encode(crc32c.crc32c(b"checksummed").to_bytes(4, "big")).decode()
    assert signed_request(endpoint, users["alice"], "PUT", f"/{bucket}/sum/CRC32C", b"checksummed",
                          headers={"x-amz-checksum-crc32c": value}).status_code == 200
    got = signed_request(endpoint, users["alice"], "GET", f"/{bucket}/sum/CRC32C",
                         headers={"x-amz-checksum-mode": "ENABLED"})
    assert got.content == b"checksummed" and got.headers["x-amz-checksum-crc32c"] == value
    s3.put_object(Bucket=bucket, Key="cls/rr", Body=b"x" * 2000000, StorageClass="REDUCED_REDUNDANCY")
    head = s3.head_object(Bucket=bucket, Key="cls/rr")
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    assert s3_error(lambda: s3.put_object(Bucket=bucket, Key="cls/bad", Body=b"x", StorageClass="GLACIER")) == (
        "InvalidStorageClass", 400)
    s3.put_object(Bucket=bucket, Key="enc/a b+c%d", Body=b"x")
    raw = signed_request(endpoint, users["alice"], "GET", f"/{bucket}?list-type=2&prefix=enc%2F&encoding-type=url")
    assert b"<Key>enc/a%20b%2Bc%25d</Key>" in raw.content
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="enc/")  # boto3 asks for url encoding and decodes it
    assert [c["Key"] for c in listed["Contents"]] == ["enc/a b+c%d"]
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="enc/a b+c%d", IfModifiedSince=future))[1] == 304
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert s3_error(lambda: s3.get_object(Bucket=bucket, Key="enc/a b+c%d", IfUnmodifiedSince=long_ago)) == (
        "PreconditionFailed", 412)
    nul = signed_request(endpoint, users["alice"], "PUT", f"/{bucket}/bad%00key", b"x")
    assert nul.status_code == 400 and b"InvalidArgument" in nul.content


def test_s3_serve_alone_and_its_workers_die_with_it(local_grid: LocalGrid, users: dict, bucket: str) -> None:
    import signal
    import socket

    import psutil

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gridfs.cli.main", "--config", str(local_grid.config_path),
                             "s3", "serve", "--port", str(port), "--workers", "2", "--domain", "s3.grid.test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.time() < deadline and proc.poll() is None, "grid s3 serve did not start"
            time.sleep(0.1)
        alone = make_client(f"http://127.0.0.1:{port}", users["alice"])
        assert bucket in [b["Name"] for b in alone.list_buckets()["Buckets"]]
        # Virtual-hosted addressing: the bucket in the Host header (no DNS here, so the Host is set by hand).
        alone.put_object(Bucket=bucket, Key="vh/obj.txt", Body=b"virtual host")
        virtual_host = f"{bucket}.s3.grid.test:{port}"
        req = AWSRequest(method="GET", url=f"http://{virtual_host}/vh/obj.txt")
        req.headers["x-amz-content-sha256"] = hashlib.sha256(b"").hexdigest()
        S3SigV4Auth(Credentials(users["alice"]["access_key"], users["alice"]["secret_key"]), "s3",
                    "us-east-1").add_auth(req)
        headers = {**dict(req.prepare().headers), "Host": virtual_host}
        assert requests.get(f"http://127.0.0.1:{port}/vh/obj.txt", headers=headers).content == b"virtual host"
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: the workers must still go
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    finally:
        proc.kill()


def test_upload_cut_off_mid_body_stores_nothing(endpoint: str, users: dict, s3: object, bucket: str,
                                                local_grid: LocalGrid) -> None:
    import socket

    body = os.urandom(3 * MiB)
    req = AWSRequest(method="PUT", url=f"{endpoint}/{bucket}/cut-off", data=body)
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(users["alice"]["access_key"], users["alice"]["secret_key"]), "s3",
                "us-east-1").add_auth(req)
    host, port = endpoint.removeprefix("http://").split(":")
    head = f"PUT /{bucket}/cut-off HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.prepare().headers.items() if k.lower() != "content-length")
    chunks_before = len(held_chunks(local_grid.data))
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b"\r\n" + body[: 2 * MiB])  # then the client goes away
    time.sleep(1.0)
    assert s3_error(lambda: s3.head_object(Bucket=bucket, Key="cut-off"))[1] == 404
    # No chunk was added (the event agent may still be removing garbage of earlier tests, hence <=).
    assert len(held_chunks(local_grid.data)) <= chunks_before
    s3.put_object(Bucket=bucket, Key="cut-off", Body=body)  # the same upload, whole, then works
    assert s3.get_object(Bucket=bucket, Key="cut-off")["Body"].read() == body


def test_prometheus_metrics_sum_over_the_workers(endpoint: str, s3: object, bucket: str,
                                                 local_grid: LocalGrid) -> None:
    for i in range(6):  # requests land on either worker
        s3.put_object(Bucket=bucket, Key=f"metrics/{i}", Body=b"x" * 1000)
    # Behind the namespace secret, as every service's /metrics is (unless grid.toml's [metrics] public).
    assert requests.get(f"{endpoint}/_grid/metrics", timeout=10).status_code == 401
    wrong = {"X-Grid-Secret": "wrong"}
    assert requests.get(f"{endpoint}/_grid/metrics", headers=wrong, timeout=10).status_code == 403
    text = requests.get(f"{endpoint}/_grid/metrics", headers={"X-Grid-Secret": local_grid.config().secret},
                        timeout=10).text
    puts = [line for line in text.splitlines()
            if line.startswith("grid_s3_requests_total{") and 'method="PUT"' in line and 'status="200"' in line]
    assert puts and float(puts[0].rsplit(" ", 1)[1]) >= 6
    received = [line for line in text.splitlines() if line.startswith("grid_s3_bytes_in_total")]
    assert received and float(received[0].rsplit(" ", 1)[1]) >= 6000
