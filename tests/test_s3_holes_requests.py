"""Holes of issue 13 in how the S3 gateway takes a request, each shown on live processes on 127.0.0.1 (a grid,
its gateway, boto3, botocore-signed raw requests and raw sockets) to be answered by a clear 4xx S3 XML error
with nothing lost or changed:

- hole 2: a body is bound to the signature on every request, not only PutObject and UploadPart (a captured
  DeleteObjects or PutBucketCors replayed with another body), and carries the digest AWS requires;
- hole 4 (its part here): version ids and the other query parameters that reach the directory;
- hole 5: names that end in a newline, keys that hold one, keys that are not UTF-8;
- hole 6: ``response-*`` overrides on anonymous requests, clients that stop mid-headers or mid-body, and
  requests the HTTP parser refuses (answered in plain text before).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import botocore
import pytest
import requests
import xxhash
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.common import names
from gridfs.common.config import GridConfig
from gridfs.common.errors import InvalidName
from gridfs.common.http import SECRET_HEADER
from gridfs.common.service import spawn_service
from tests import test_s3
from tests.test_s3 import signed_request

# The gateway, users, boto3 client and bucket of test_s3, on this module's own grid; the user here is alice.
endpoint, users, s3, bucket = test_s3.endpoint, test_s3.users, test_s3.s3, test_s3.bucket


@pytest.fixture(scope="module")
def user(users: dict) -> dict[str, str]:
    return users["alice"]


def xml_error(r: requests.Response) -> tuple[int, str]:
    """The status and S3 error Code of an answer that must be an S3 XML error with a Message."""
    assert r.headers.get("Content-Type", "").startswith("application/xml"), (r.status_code, r.content[:300])
    root = ET.fromstring(r.content)
    assert root.tag == "Error" and root.findtext("Message"), r.content[:300]
    return r.status_code, root.findtext("Code") or ""


def md5_of(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def delete_doc(*keys: str) -> bytes:
    return ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>").encode()


def exists(s3: object, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except botocore.exceptions.ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False


def sign(user: dict, endpoint: str, method: str, path: str, payload_hash: str, headers: dict[str, str] | None = None,
         unsigned: dict[str, str] | None = None) -> dict[str, str]:
    """Headers of a request signed by botocore's SigV4 with ``payload_hash`` as ``x-amz-content-sha256``
    whatever the body, plus ``unsigned`` headers added after signing (so outside SignedHeaders)."""
    req = AWSRequest(method=method, url=endpoint + path,
                     headers={**(headers or {}), "X-Amz-Content-SHA256": payload_hash})
    SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1").add_auth(req)
    return {**dict(req.prepare().headers), **(unsigned or {})}


def raw_exchange(endpoint: str, data: bytes, wait: float = 0.0, timeout: float = 15.0) -> tuple[bytes, float]:
    """Send bytes on a socket of its own, optionally wait, then read until the server closes; the bytes read
    and the seconds from the first send to the close."""
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        start = time.monotonic()
        sock.sendall(data)
        time.sleep(wait)
        answer = b""
        try:
            while piece := sock.recv(65536):
                answer += piece
        except ConnectionResetError:
            pass
        return answer, time.monotonic() - start


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def botocore_head(endpoint: str, user: dict, method: str, path: str, body: bytes) -> bytes:
    """The request line and headers of a botocore-signed request for ``body``, to send by hand."""
    req = AWSRequest(method=method, url=endpoint + path, data=body,
                     headers={"Content-MD5": md5_of(body)} if "?delete" in path else {})
    S3SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1").add_auth(req)
    head = f"{method} {path} HTTP/1.1\r\nHost: {endpoint.removeprefix('http://')}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in req.prepare().headers.items() if k.lower() != "content-length")
    return head.encode() + b"\r\n"


# -- hole 2: every body bound to its signature ---------------------------------------------------------------------


def test_delete_objects_replayed_with_another_body_deletes_nothing(endpoint: str, user: dict, s3: object,
                                                                   bucket: str) -> None:
    """Hole 2: a DeleteObjects signed to delete one key, replayed within the skew window with a body naming
    another (same length, same signed headers), deleted the other key: the payload hash was checked on
    PutObject and UploadPart only. Now the replay is XAmzContentSHA256Mismatch and both keys stay."""
    for key in ("replay/a", "replay/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    genuine, forged = delete_doc("replay/a"), delete_doc("replay/b")
    replay = signed_request(endpoint, user, "POST", f"/{bucket}?delete", genuine,
                            headers={"Content-MD5": md5_of(genuine)}, send=forged)
    assert xml_error(replay) == (400, "XAmzContentSHA256Mismatch")
    assert exists(s3, bucket, "replay/a") and exists(s3, bucket, "replay/b")
    ok = signed_request(endpoint, user, "POST", f"/{bucket}?delete", genuine, headers={"Content-MD5": md5_of(genuine)})
    assert ok.status_code == 200 and b"<Key>replay/a</Key>" in ok.content
    assert not exists(s3, bucket, "replay/a") and exists(s3, bucket, "replay/b")


def test_put_bucket_cors_replayed_with_another_body_changes_nothing(endpoint: str, user: dict, s3: object,
                                                                    bucket: str) -> None:
    """Hole 2: PutBucketCors replayed with another body (any origin instead of one) was applied. Now it is
    refused and the rules stay as set; boto3's own calls (which send a checksum) go on working."""
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://one.example"], "AllowedMethods": ["GET"]}]})
    rule = "<CORSConfiguration><CORSRule><AllowedOrigin>{}</AllowedOrigin><AllowedMethod>{}</AllowedMethod>" \
           "</CORSRule></CORSConfiguration>"
    genuine = rule.format("https://two.example", "GET").encode()
    forged = rule.format("*", "PUT").ljust(len(genuine)).encode()
    replay = signed_request(endpoint, user, "PUT", f"/{bucket}?cors", genuine,
                            headers={"Content-MD5": md5_of(genuine)}, send=forged)
    assert xml_error(replay) == (400, "XAmzContentSHA256Mismatch")
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["https://one.example"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"t")
    s3.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.delete_bucket_cors(Bucket=bucket)


def test_bodies_not_tied_to_the_signature_or_without_the_digest_aws_requires_are_refused(
        endpoint: str, user: dict, s3: object, bucket: str) -> None:
    """Hole 2: a body is checked before anything is applied, whatever the operation: against a signed payload
    hash (an unknown ``x-amz-content-sha256`` value, or upper-case hex, left it unchecked), against
    ``Content-MD5`` and ``x-amz-checksum-*``, which DeleteObjects must carry as in AWS; and a body sent as
    UNSIGNED-PAYLOAD must be tied to the signature by a signed digest header."""
    s3.put_object(Bucket=bucket, Key="bound/x", Body=b"x")
    body = delete_doc("bound/x")
    url = f"{endpoint}/{bucket}?delete"
    sha = hashlib.sha256(body).hexdigest()
    refused = {
        "no digest header": sign(user, endpoint, "POST", f"/{bucket}?delete", sha),
        "malformed Content-MD5": sign(user, endpoint, "POST", f"/{bucket}?delete", sha, {"Content-MD5": "abc"}),
        "wrong Content-MD5": sign(user, endpoint, "POST", f"/{bucket}?delete", sha, {"Content-MD5": md5_of(b"x")}),
        "wrong CRC32": sign(user, endpoint, "POST", f"/{bucket}?delete", sha, {"x-amz-checksum-crc32": "AAAAAA=="}),
        "unknown payload hash": sign(user, endpoint, "POST", f"/{bucket}?delete", "not-a-hash",
                                     {"Content-MD5": md5_of(body)}),
        "upper-case hash of another body": sign(user, endpoint, "POST", f"/{bucket}?delete",
                                                hashlib.sha256(b"other").hexdigest().upper(),
                                                {"Content-MD5": md5_of(body)}),
        "unsigned payload, no digest": sign(user, endpoint, "POST", f"/{bucket}?delete", "UNSIGNED-PAYLOAD"),
        "unsigned payload, digest outside the signature": sign(user, endpoint, "POST", f"/{bucket}?delete",
                                                               "UNSIGNED-PAYLOAD",
                                                               unsigned={"Content-MD5": md5_of(body)}),
    }
    expected = {"no digest header": "InvalidRequest", "malformed Content-MD5": "InvalidDigest",
                "wrong Content-MD5": "BadDigest", "wrong CRC32": "BadDigest",
                "unknown payload hash": "InvalidArgument", "upper-case hash of another body":
                "XAmzContentSHA256Mismatch", "unsigned payload, no digest": "InvalidRequest",
                "unsigned payload, digest outside the signature": "InvalidRequest"}
    for case, headers in refused.items():
        assert xml_error(requests.post(url, data=body, headers=headers)) == (400, expected[case]), case
        assert exists(s3, bucket, "bound/x"), case
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    with_crc = requests.post(url, data=body, headers=sign(user, endpoint, "POST", f"/{bucket}?delete", sha,
                                                          {"x-amz-checksum-crc32": crc}))
    assert with_crc.status_code == 200 and not exists(s3, bucket, "bound/x")
    s3.put_object(Bucket=bucket, Key="bound/x", Body=b"x")
    unsigned_ok = requests.post(url, data=body, headers=sign(user, endpoint, "POST", f"/{bucket}?delete",
                                                             "UNSIGNED-PAYLOAD", {"Content-MD5": md5_of(body)}))
    assert unsigned_ok.status_code == 200 and not exists(s3, bucket, "bound/x")


# -- hole 4: version ids and query parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("vid", ["99999999999999999999999", "9223372036854775808", "\u0663", "-1", "1e5", " 7"])
def test_version_ids_the_directory_cannot_hold_are_invalid_argument(vid: str, endpoint: str, user: dict,
                                                                    s3: object, bucket: str) -> None:
    """Hole 4: a ``versionId`` too large for SQLite answered 500 (``str.isdigit`` passed it, and Arabic-Indic
    digits). Now every place a version id comes in answers 400 InvalidArgument, as AWS does, and the object
    is untouched."""
    s3.put_object(Bucket=bucket, Key="versions/obj", Body=b"v")
    q = quote(vid, safe="")
    for method, path in (("GET", f"/{bucket}/versions/obj?versionId={q}"),
                         ("DELETE", f"/{bucket}/versions/obj?versionId={q}"),
                         ("GET", f"/{bucket}/versions/obj?tagging&versionId={q}"),
                         ("GET", f"/{bucket}?versions&key-marker=versions%2Fobj&version-id-marker={q}")):
        assert xml_error(signed_request(endpoint, user, method, path)) == (400, "InvalidArgument"), (method, path)
    head = signed_request(endpoint, user, "HEAD", f"/{bucket}/versions/obj?versionId={q}")
    assert head.status_code == 400
    copy = signed_request(endpoint, user, "PUT", f"/{bucket}/versions/copy",
                          headers={"x-amz-copy-source": f"/{bucket}/versions/obj?versionId={q}"})
    assert xml_error(copy) == (400, "InvalidArgument")
    assert s3.get_object(Bucket=bucket, Key="versions/obj")["Body"].read() == b"v"
    largest = signed_request(endpoint, user, "GET", f"/{bucket}/versions/obj?versionId=9223372036854775807")
    assert xml_error(largest)[0] == 404


def test_query_parameters_with_nul_bad_numbers_or_bad_utf8_are_refused(endpoint: str, user: dict,
                                                                       bucket: str) -> None:
    """Hole 4: every query parameter that reaches the directory is checked first: no NUL (it went into
    listings as markers and came back as XML no parser takes), numbers of ASCII digits in range (``max-keys``
    of Arabic-Indic digits was taken, ``max-uploads=-1`` was not refused), and valid UTF-8 (``%FF`` was
    replaced, then failed the signature as 403)."""
    cases = {
        "marker=%00": "InvalidArgument", "list-type=2&start-after=a%00": "InvalidArgument",
        "list-type=2&continuation-token=%00": "InvalidArgument", "delimiter=%00": "InvalidArgument",
        "versions&key-marker=%00": "InvalidArgument", "uploads&key-marker=%00": "InvalidArgument",
        "max-keys=%D9%A3": "InvalidArgument", "max-keys=99999999999999999999": "InvalidArgument",
        "uploads&max-uploads=-1": "InvalidArgument", "prefix=%FF": "InvalidURI",
        "list-type=2&continuation-token=%C3%28": "InvalidURI",
    }
    for query, code in cases.items():
        assert xml_error(signed_request(endpoint, user, "GET", f"/{bucket}?{query}")) == (400, code), query
    assert signed_request(endpoint, user, "GET", f"/{bucket}?max-keys=2147483647").status_code == 200


def test_delete_objects_version_ids_are_checked_like_every_other(s3: object, bucket: str) -> None:
    """Hole 4: DeleteObjects read each VersionId with ``int()``: one too large for SQLite came back as an
    InternalError entry, and Arabic-Indic digits deleted the version they spell (``\u0663`` is 3)."""
    s3.create_bucket(Bucket="reqholes-versioned")
    s3.put_bucket_versioning(Bucket="reqholes-versioned", VersioningConfiguration={"Status": "Enabled"})
    versions = [s3.put_object(Bucket="reqholes-versioned", Key="v", Body=b"%d" % i)["VersionId"] for i in range(4)]
    for vid in ("99999999999999999999999", "\u0663", "-1"):
        try:  # a per-key error, or the whole request refused: InvalidArgument either way
            out = s3.delete_objects(Bucket="reqholes-versioned", Delete={"Objects": [{"Key": "v", "VersionId": vid}]})
            codes = [e["Code"] for e in out.get("Errors", [])]
        except botocore.exceptions.ClientError as exc:
            codes = [exc.response["Error"]["Code"]]
        assert codes == ["InvalidArgument"], vid
    left = s3.list_object_versions(Bucket="reqholes-versioned")["Versions"]
    assert sorted(v["VersionId"] for v in left) == sorted(versions)


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


def test_keys_with_newlines_and_other_whitespace_are_served(s3: object, bucket: str) -> None:
    """Hole 5: a key holding a newline was unreachable through S3 (aiohttp's route pattern ``.*`` stops at
    one: 404 in plain text). What S3 allows in keys, the gateway serves."""
    for key in ("line\nbreak", "tab\there", "cr\rlf\r\nend", "new\nline/inner/\n/x"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(key.encode())
        s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key.split("\n")[0])  # boto3 asks for URL-encoded keys
        assert key in [c["Key"] for c in listed["Contents"]]
        s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_object(Bucket=bucket, Key=key + ".copy")
        assert not exists(s3, bucket, key)


def test_keys_with_leading_or_trailing_whitespace_are_deleted_by_delete_objects(s3: object, bucket: str) -> None:
    """Hole 5: keys with trailing spaces could not be deleted with DeleteObjects: the XML text was stripped,
    so the answer said ``k`` was deleted while ``k `` stayed."""
    keys = ["spaced  ", "  lead", "nl\n"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"s")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in out["Deleted"]) == sorted(keys)
    assert not [k for k in keys if exists(s3, bucket, k)]


def test_keys_that_are_not_utf8_are_refused_not_merged(endpoint: str, user: dict, s3: object, bucket: str) -> None:
    """Hole 5: invalid UTF-8 in a key was replaced by U+FFFD, so ``%FF`` and ``%FE`` named one object (and
    a signed request failed its signature, 403). They are refused with 400 InvalidURI, as AWS does, and a copy
    source that is not UTF-8 is InvalidArgument rather than the U+FFFD object."""
    s3.put_object(Bucket=bucket, Key="bad\ufffd", Body=b"replacement character")
    for raw in ("bad%FF", "bad%FE", "bad%C3%28", "%80"):
        put = signed_request(endpoint, user, "PUT", f"/{bucket}/{raw}", b"x")
        assert xml_error(put) == (400, "InvalidURI"), raw
        assert xml_error(requests.get(f"{endpoint}/{bucket}/{raw}")) == (400, "InvalidURI"), raw
    copy = signed_request(endpoint, user, "PUT", f"/{bucket}/copied",
                          headers={"x-amz-copy-source": f"/{bucket}/bad%FF"})
    assert xml_error(copy) == (400, "InvalidArgument")
    assert not exists(s3, bucket, "copied")
    assert s3.get_object(Bucket=bucket, Key="bad\ufffd")["Body"].read() == b"replacement character"


# -- hole 6: anonymous overrides, slow clients, parser errors -------------------------------------------------------


def test_anonymous_requests_cannot_override_response_headers(endpoint: str, user: dict, s3: object) -> None:
    """Hole 6: anonymous readers of a public-read object could rewrite its answer's headers with
    ``response-content-type`` and the like (AWS refuses: InvalidRequest). Signed and presigned reads still can."""
    s3.create_bucket(Bucket="reqholes-public", ACL="public-read")
    s3.put_object(Bucket="reqholes-public", Key="page", Body=b"<p>hi</p>", ContentType="text/plain", ACL="public-read")
    assert requests.get(f"{endpoint}/reqholes-public/page").headers["Content-Type"] == "text/plain"
    for param in ("response-content-type=text/html", "response-content-disposition=attachment",
                  "response-cache-control=no-store", "response-expires=0", "response-content-language=fr",
                  "response-content-encoding=gzip"):
        for call in (requests.get, requests.head):
            r = call(f"{endpoint}/reqholes-public/page?{param}")
            assert r.status_code == 400, (param, call)
        assert xml_error(requests.get(f"{endpoint}/reqholes-public/page?{param}")) == (400, "InvalidRequest")
    signed = signed_request(endpoint, user, "GET", "/reqholes-public/page?response-content-type=text%2Fhtml")
    assert signed.status_code == 200 and signed.headers["Content-Type"] == "text/html"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "reqholes-public", "Key": "page",
                                                          "ResponseContentType": "text/html"}, ExpiresIn=60)
    assert requests.get(url).headers["Content-Type"] == "text/html"


@pytest.fixture(scope="module")
def impatient(local_grid: LocalGrid, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway of its own on the same grid, with 1-second timeouts: the header timeout from its grid.toml
    (``[s3] header_timeout``), the body timeout from its command line (``--body-timeout``)."""
    folder = tmp_path_factory.mktemp("impatient")
    cfg = GridConfig.load(local_grid.config_path)
    cfg.extra["s3"] = {**cfg.extra.get("s3", {}), "header_timeout": 1}
    cfg.save(folder / "grid.toml")
    svc = spawn_service("gridfs.gateways.s3", ["--config", str(folder / "grid.toml"), "--workers", "1",
                                               "--body-timeout", "1"], folder, "s3-impatient")
    try:
        yield svc.url
    finally:
        svc.stop()


def test_clients_that_stop_sending_headers_are_dropped(impatient: str) -> None:
    """Hole 6: a client that stopped mid-headers (or never sent any) held its connection forever. With
    ``--header-timeout 1`` the connection is closed after about a second."""
    for start in (b"", b"PUT /reqholes/slow HTTP/1.1\r\nHost: x\r\nContent-Le"):
        answer, took = raw_exchange(impatient, start)
        assert answer == b"" and 0.8 < took < 6, (start, took)
    answer, _ = raw_exchange(impatient, b"GET /_grid/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert parse_answer(answer)[0] == 401  # a whole head in time is answered (metrics need the secret)


def test_bodies_that_stop_arriving_time_out_and_store_nothing(impatient: str, user: dict, s3: object,
                                                              bucket: str) -> None:
    """Hole 6: a body shorter than its Content-Length held the worker's connection forever. With
    ``--body-timeout 1`` it fails with 400 RequestTimeout (XML), the connection is closed and nothing is
    stored or applied; a body that keeps coming, however slowly, is not cut off."""
    body = b"0123456789" * 10
    answer, took = raw_exchange(impatient, botocore_head(impatient, user, "PUT", f"/{bucket}/stalled", body)
                                + body[:10])
    status, headers, content = parse_answer(answer)
    assert (status, headers["content-type"]) == (400, "application/xml") and 0.8 < took < 8
    assert b"<Code>RequestTimeout</Code>" in content and not exists(s3, bucket, "stalled")

    s3.put_object(Bucket=bucket, Key="survivor", Body=b"s")
    doc = delete_doc("survivor")
    answer, _ = raw_exchange(impatient, botocore_head(impatient, user, "POST", f"/{bucket}?delete", doc) + doc[:20])
    assert parse_answer(answer)[0] == 400 and b"<Code>RequestTimeout</Code>" in answer
    assert exists(s3, bucket, "survivor")

    host, port = impatient.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(botocore_head(impatient, user, "PUT", f"/{bucket}/trickled", body))
        for i in range(0, len(body), 20):  # 5 pieces, 0.5 s apart: 2.5 s in all, never 1 s without a byte
            sock.sendall(body[i:i + 20])
            time.sleep(0.5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert s3.get_object(Bucket=bucket, Key="trickled")["Body"].read() == body


@pytest.mark.parametrize("request_bytes", [
    b"NOT A REQUEST\r\n\r\n",
    b"GET /reqholes HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /reqholes HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
    b"PUT /reqholes/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /reqholes?delete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
], ids=["garbage", "long header", "bad header name", "bad content-length", "long url", "bad chunk"])
def test_requests_the_http_parser_refuses_get_s3_xml_errors(request_bytes: bytes, endpoint: str) -> None:
    """Hole 6: what aiohttp's parser refused came back as ``400 Bad Request`` in plain text (and a malformed
    chunked body as a 500); every one is now an S3 XML error with a Code and a Message."""
    answer, _ = raw_exchange(endpoint, request_bytes)
    status, headers, content = parse_answer(answer)
    assert status == 400 and headers["content-type"] == "application/xml", answer[:400]
    root = ET.fromstring(content)
    assert root.tag == "Error" and root.findtext("Code") and root.findtext("Message"), content


def test_a_stalled_client_does_not_keep_a_stopping_gateway_alive(local_grid: LocalGrid, tmp_path: Path) -> None:
    """Hole 6: a client stalled mid-body kept a stopping gateway's worker waiting on it (aiohttp gives requests
    in flight 60 s, and reads nothing more once it stops), so ``grid down`` killed the gateway after its 10 s
    and the gateway's metrics folder stayed in the temporary directory. A worker now gives them 3 s, then
    exits cleanly and the folder goes."""
    svc = spawn_service("gridfs.gateways.s3", ["--config", str(local_grid.config_path), "--workers", "1"],
                        tmp_path, "s3-stopping", env={"TMPDIR": str(tmp_path)})
    try:
        assert len(list(tmp_path.glob("grid-s3-metrics-*"))) == 1
        host, port = svc.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            sock.sendall(b"PUT /no-such-bucket/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            assert sock.recv(65536).startswith(b"HTTP/1.1 404")  # answered: aiohttp now waits for the rest
            start = time.monotonic()
            svc.process.terminate()
            assert svc.process.wait(timeout=9) == 0 and time.monotonic() - start < 8
        assert not list(tmp_path.glob("grid-s3-metrics-*"))
    finally:
        svc.stop()


def test_other_identifiers_followed_by_a_newline_are_refused(local_grid: LocalGrid) -> None:
    """Hole 5, beyond gridfs.common.names: the other patterns that vet identifiers ended in ``$`` too, which
    matches before a final newline: a user name, an op id, a chunk hash, a service type went through with one."""
    from gridfs.common.errors import BadRequest, GridError
    from gridfs.conscience.client import ConscienceClient
    from gridfs.directory.ops import check_op_id
    from gridfs.gateways.s3.users import UserStore

    with pytest.raises(BadRequest):
        check_op_id("A" * 16 + "\n")
    with pytest.raises((GridError, ValueError)):
        UserStore(local_grid.config_path).create("mallory\n")
    cfg = local_grid.config()
    beat = {"type": "rawx\n", "id": "rawx-0123456789abcdef", "addr": "127.0.0.1:1", "location": "a.b.c.d",
            "tags": {}, "stats": {}}
    r = requests.post(f"{cfg.conscience_url}/v1/heartbeat", json=beat, headers={"X-Grid-Secret": cfg.secret},
                      timeout=10)
    assert r.status_code == 400, r.text
    assert "rawx\n" not in {s["type"] for s in ConscienceClient(cfg.conscience_url, cfg.secret).services()}
