"""Holes of issue 13 in how the S3 gateway and the internal services take their input: each test sends what
a hostile or careless client sends, to a live grid and gateway on 127.0.0.1, and expects a clear 4xx S3
XML error (Code, Message) and nothing lost or changed.

Covered: hole 3 (XML bodies with a DTD in any encoding), hole 4 (500 answers to client mistakes: max-uploads
of 0 or below, an aws-chunked body shorter than its chunk header, XML bodies over 8 MiB, upload ids that are
paths, a non-ASCII X-Grid-Secret) and hole 7 (DeleteBucket of a bucket holding only incomplete uploads).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import xml.etree.ElementTree as ET

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gridfs.cli.local import LocalGrid
from gridfs.client import GridClient
from gridfs.common.errors import NoSuchUpload
from gridfs.gateways.s3 import sigv4
from gridfs.gateways.s3.users import UserStore
from tests.conftest import held_chunks, wait_for
from tests.test_s3 import make_client, s3_error, signed_request
from tests.test_s3_sigv4 import _sign

MiB = 1 << 20
S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def endpoint(local_grid: LocalGrid) -> str:
    return local_grid.config().extra["s3"]["url"]


@pytest.fixture(scope="module")
def user(local_grid: LocalGrid) -> dict[str, str]:
    u = UserStore(local_grid.config_path).create("holes")
    return {"access_key": u.access_key, "secret_key": u.secret_key}


@pytest.fixture(scope="module")
def s3(endpoint: str, user: dict) -> object:
    return make_client(endpoint, user)


@pytest.fixture(scope="module")
def bucket(s3: object) -> str:
    s3.create_bucket(Bucket="holes")
    return "holes"


def error_of(r: requests.Response) -> tuple[int, str, str]:
    """Status, Code and Message of an S3 XML error answer (it must be one)."""
    assert r.content.startswith(b"<?xml"), (r.status_code, r.content[:500])
    root = ET.fromstring(r.content)
    assert root.tag == "Error", r.content[:500]
    return r.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def _raw(endpoint: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request as bytes on a socket of its own; the status and body of the answer."""
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)  # every head says Connection: close: the answer ends with the connection
        answer = b""
        while piece := sock.recv(65536):
            answer += piece
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# -- hole 4: a non-ASCII X-Grid-Secret ---------------------------------------------------------------------------


SECRET_SERVICES = {"conscience", "meta0", "meta1", "meta2", "rdir", "events", "heal", "rawx"}


@pytest.mark.parametrize("value", ["\u00e9t\u00e9".encode(), b"\xff\xfe", "\u2713".encode() + b"abc"],
                         ids=["utf-8", "invalid utf-8", "symbol"])
def test_non_ascii_grid_secret_is_forbidden_on_every_service(value: bytes, local_grid: LocalGrid) -> None:
    """Hole 4: a non-ASCII ``X-Grid-Secret`` answered 500 on every internal service. The secrets are compared
    as bytes, in constant time, and a wrong one is 403 wherever it is sent."""
    services = [s for s in local_grid.services() if s.type in SECRET_SERVICES]
    assert {s.type for s in services} == SECRET_SERVICES
    for svc in services:
        head = (f"GET /info HTTP/1.1\r\nHost: {svc.addr}\r\nConnection: close\r\n").encode()
        status, _ = _raw(svc.url, head + b"X-Grid-Secret: " + value + b"\r\n\r\n")
        assert status == 403, (svc.name, status)
    rawx = next(s for s in services if s.type == "rawx")
    ok = requests.get(f"{rawx.url}/info", headers={"X-Grid-Secret": local_grid.config().secret}, timeout=10)
    assert ok.status_code == 200


# -- hole 4: upload ids that are paths ---------------------------------------------------------------------------


BAD_UPLOAD_IDS = ["../../x", "..", ".", "a/b", "x%2Fy", "x?y=1", "x#y", "x y", "\u00e9", "0" * 200]


def test_upload_ids_that_are_paths_never_reach_internal_urls(endpoint: str, user: dict, s3: object, bucket: str,
                                                             local_grid: LocalGrid) -> None:
    """Hole 4: an ``uploadId`` of ``../../x`` answered 500, and went unescaped into the directory's URLs
    (``ID/abort?`` as the id of a ListParts or UploadPart aimed at another route). Ids are checked by the
    gateway (404 NoSuchUpload, as for any unknown id) and quoted by the directory client; the real
    upload they point at is untouched."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="ids/obj")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="ids/obj", UploadId=up, PartNumber=1, Body=b"p" * 1000)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    for bad in [*BAD_UPLOAD_IDS, f"{up}/abort?", f"{up}/../{up}", f"{up}/parts#"]:
        calls = {
            "ListParts": lambda bad=bad: s3.list_parts(Bucket=bucket, Key="ids/obj", UploadId=bad),
            "UploadPart": lambda bad=bad: s3.upload_part(Bucket=bucket, Key="ids/obj", UploadId=bad, PartNumber=2,
                                                         Body=b"q"),
            "Complete": lambda bad=bad: s3.complete_multipart_upload(Bucket=bucket, Key="ids/obj", UploadId=bad,
                                                                     MultipartUpload=parts),
            "Abort": lambda bad=bad: s3.abort_multipart_upload(Bucket=bucket, Key="ids/obj", UploadId=bad),
        }
        for op, call in calls.items():
            assert s3_error(call) == ("NoSuchUpload", 404), (op, bad)
    assert [p["ETag"] for p in s3.list_parts(Bucket=bucket, Key="ids/obj", UploadId=up)["Parts"]] == [etag]
    # The directory client itself quotes the id: no path, dot segment or query reaches another route.
    client = GridClient(local_grid.config_path)
    for bad in [*BAD_UPLOAD_IDS, f"{up}/abort?", f"{up}/../{up}", f"../{up}"]:
        with pytest.raises(NoSuchUpload):
            client.list_parts(bucket, bad)
        with pytest.raises(NoSuchUpload):
            client.abort_multipart(bucket, "ids/obj", bad)
    s3.complete_multipart_upload(Bucket=bucket, Key="ids/obj", UploadId=up, MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="ids/obj")["Body"].read() == b"p" * 1000


# -- hole 4: max-uploads of 0 or below ---------------------------------------------------------------------------


def test_max_uploads_zero_or_negative_with_an_upload_open(endpoint: str, user: dict, s3: object,
                                                          bucket: str) -> None:
    """Hole 4: ``max-uploads=0`` (or below) with an upload open answered 500. 0 is an empty page, as AWS
    answers max-keys=0; a negative or non-numeric value is 400 InvalidArgument. The same for ListParts."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="mu/open")["UploadId"]
    try:
        r = signed_request(endpoint, user, "GET", f"/{bucket}?uploads&max-uploads=0")
        assert r.status_code == 200, r.content
        root = ET.fromstring(r.content)
        assert root.findall(f"{S3}Upload") == [] and root.findtext(f"{S3}IsTruncated") == "false"
        assert root.findtext(f"{S3}MaxUploads") == "0"
        for bad in ("-1", "-1000", "x", "1e3"):
            r = signed_request(endpoint, user, "GET", f"/{bucket}?uploads&max-uploads={bad}")
            status, code, message = error_of(r)
            assert (status, code) == (400, "InvalidArgument") and "max-uploads" in message, bad
        one = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1)
        assert [u["UploadId"] for u in one["Uploads"]] == [up]
        s3.upload_part(Bucket=bucket, Key="mu/open", UploadId=up, PartNumber=1, Body=b"x")
        r = signed_request(endpoint, user, "GET", f"/{bucket}/mu/open?uploadId={up}&max-parts=0")
        root = ET.fromstring(r.content)
        assert root.findall(f"{S3}Part") == [] and root.findtext(f"{S3}IsTruncated") == "false"
        for arg in ("max-parts", "part-number-marker"):
            r = signed_request(endpoint, user, "GET", f"/{bucket}/mu/open?uploadId={up}&{arg}=-1")
            assert error_of(r)[:2] == (400, "InvalidArgument"), arg
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="mu/open", UploadId=up)


# -- hole 3: DTDs and entities, in any encoding ------------------------------------------------------------------


def _doc(encoding: str, dtd: str, inner: str) -> bytes:
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n{dtd}<Delete><Object><Key>{inner}</Key></Object>'
            "</Delete>").encode(encoding)


HOSTILE = {
    "utf-16 internal entity": _doc("UTF-16", '<!DOCTYPE Delete [<!ENTITY a "' + "A" * 1000 + '">]>', "&a;" * 100),
    "utf-16 nested entities": _doc("UTF-16", '<!DOCTYPE Delete [<!ENTITY a "AAAAAAAAAA"><!ENTITY b "&a;&a;&a;&a;'
                                   '&a;&a;&a;&a;&a;&a;">]>', "&b;" * 50),
    "utf-16 external entity": _doc("UTF-16", '<!DOCTYPE Delete [<!ENTITY e SYSTEM "file:///etc/passwd">]>', "&e;"),
    "utf-16 DTD alone": _doc("UTF-16", "<!DOCTYPE Delete>", "keep/me"),
    "utf-8 entity": _doc("UTF-8", '<!DOCTYPE Delete [<!ENTITY a "keep/me">]>', "&a;"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_xml_with_a_dtd_is_refused_in_any_encoding(name: str, endpoint: str, user: dict, s3: object,
                                                   bucket: str) -> None:
    """Hole 3: the DTD filter looked for ASCII ``<!DOCTYPE`` only, so a UTF-16 DeleteObjects body had its
    entities expanded (100 kB in, 10 MB out). Every XML body is parsed refusing DTDs, whatever its
    encoding: 400 MalformedXML, a short answer, and the key the entity names is still there."""
    s3.put_object(Bucket=bucket, Key="keep/me", Body=b"kept")
    body = HOSTILE[name]
    r = signed_request(endpoint, user, "POST", f"/{bucket}?delete", body, headers=md5_header(body))
    assert len(r.content) < 2000, f"{len(r.content)} bytes answered"
    status, code, message = error_of(r)
    assert (status, code) == (400, "MalformedXML") and message
    assert s3.get_object(Bucket=bucket, Key="keep/me")["Body"].read() == b"kept"
    cors = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE CORSConfiguration [<!ENTITY o "https://a.example">]>'
            "<CORSConfiguration><CORSRule><AllowedOrigin>&o;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            "</CORSRule></CORSConfiguration>").encode("utf-16")
    r = signed_request(endpoint, user, "PUT", f"/{bucket}?cors", cors, headers=md5_header(cors))
    assert error_of(r)[:2] == (400, "MalformedXML")
    assert s3_error(lambda: s3.get_bucket_cors(Bucket=bucket)) == ("NoSuchCORSConfiguration", 404)


def test_xml_in_utf16_without_a_dtd_is_read(endpoint: str, user: dict, s3: object, bucket: str) -> None:
    """Hole 3, the other side: refusing DTDs must not refuse encodings. A UTF-16 DeleteObjects body
    (no DTD) deletes the key it names."""
    s3.put_object(Bucket=bucket, Key="utf16/gone", Body=b"x")
    body = _doc("UTF-16", "", "utf16/gone")
    r = signed_request(endpoint, user, "POST", f"/{bucket}?delete", body, headers=md5_header(body))
    assert r.status_code == 200, r.content
    assert [e.findtext(f"{S3}Key") for e in ET.fromstring(r.content).iter(f"{S3}Deleted")] == ["utf16/gone"]
    assert s3_error(lambda: s3.head_object(Bucket=bucket, Key="utf16/gone"))[1] == 404


# -- hole 4: XML bodies over the limit ---------------------------------------------------------------------------


def chunked_request(endpoint: str, user: dict, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> requests.Response:
    """A request signed by botocore for ``body``, sent with Transfer-Encoding: chunked (no Content-Length)."""
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
    S3SigV4Auth(Credentials(user["access_key"], user["secret_key"]), "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    sent = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    return requests.request(method, prepared.url, data=(body[i:i + MiB] for i in range(0, len(body), MiB)),
                            headers=sent)


def _big_delete(size: int) -> bytes:
    head, tail = b"<Delete><Object><Key>", b"</Key></Object></Delete>"
    return head + b"k" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("size", [3 * MiB, 9 * MiB])
def test_xml_bodies_over_the_limit(size: int, endpoint: str, user: dict, s3: object, bucket: str) -> None:
    """Hole 4: an XML body over 8 MiB (the server's request limit) answered 500. Any XML body over the
    XML limit (2 MiB) is 400 MaxMessageLengthExceeded, with a Content-Length or sent chunked, for every
    operation that reads one; nothing is changed."""
    s3.put_object(Bucket=bucket, Key="big/keep", Body=b"kept")
    body = _big_delete(size)
    r = signed_request(endpoint, user, "POST", f"/{bucket}?delete", body, headers=md5_header(body))
    status, code, message = error_of(r)
    assert (status, code) == (400, "MaxMessageLengthExceeded") and message

    r = chunked_request(endpoint, user, "POST", f"/{bucket}?delete", body, headers=md5_header(body))
    assert error_of(r)[:2] == (400, "MaxMessageLengthExceeded")
    up = s3.create_multipart_upload(Bucket=bucket, Key="big/mp")["UploadId"]
    try:
        complete = b"<CompleteMultipartUpload>" + b" " * size + b"</CompleteMultipartUpload>"
        r = signed_request(endpoint, user, "POST", f"/{bucket}/big/mp?uploadId={up}", complete)
        assert error_of(r)[:2] == (400, "MaxMessageLengthExceeded")
        for sub, root in (("cors", "CORSConfiguration"), ("versioning", "VersioningConfiguration")):
            doc = f"<{root}>".encode() + b" " * size + f"</{root}>".encode()
            r = signed_request(endpoint, user, "PUT", f"/{bucket}?{sub}", doc, headers=md5_header(doc))
            assert error_of(r)[:2] == (400, "MaxMessageLengthExceeded"), sub
        r = signed_request(endpoint, user, "PUT", "/holes-big-create", b"<CreateBucketConfiguration>"
                           + b" " * size + b"</CreateBucketConfiguration>")
        assert error_of(r)[:2] == (400, "MaxMessageLengthExceeded")
        assert s3_error(lambda: s3.head_bucket(Bucket="holes-big-create"))[1] == 404
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="big/mp", UploadId=up)
    assert s3.get_object(Bucket=bucket, Key="big/keep")["Body"].read() == b"kept"


# -- hole 4: aws-chunked bodies shorter than their chunk header --------------------------------------------------


@pytest.mark.parametrize(("body", "code"), [(b"10000\r\n" + b"a" * 100, "IncompleteBody"),
                                            (b"400;chunk-signature=", "IncompleteBody"),
                                            (b"ff", "IncompleteBody"), (b"-5\r\nabc", "IncompleteBody"),
                                            (b"fffffffffff\r\n" + b"a" * 100, "InvalidRequest")],
                         ids=["data short", "header cut", "no line end", "negative", "huge size"])
def test_aws_chunked_body_shorter_than_its_chunk_header(body: bytes, code: str, endpoint: str, user: dict,
                                                        s3: object, bucket: str, local_grid: LocalGrid) -> None:
    """Hole 4: an aws-chunked body that ends before the chunk its header announced answered 500. It is 400
    IncompleteBody (InvalidRequest for a chunk larger than the decoded length, refused before it is read),
    and neither an object nor a chunk is left behind."""
    chunks_before = set(held_chunks(local_grid.data))
    headers = _sign(user, "PUT", f"{endpoint}/{bucket}/chunked-short", {
        "x-amz-content-sha256": sigv4.STREAMING_UNSIGNED_TRAILER, "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "65536", "x-amz-trailer": "x-amz-checksum-crc32",
        "content-length": str(len(body))})
    head = f"PUT /{bucket}/chunked-short HTTP/1.1\r\nHost: {endpoint.removeprefix('http://')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
    status, answer = _raw(endpoint, head.encode(), body)
    root = ET.fromstring(answer)
    assert (status, root.findtext("Code")) == (400, code), answer
    assert s3_error(lambda: s3.head_object(Bucket=bucket, Key="chunked-short"))[1] == 404
    assert not set(held_chunks(local_grid.data)) - chunks_before


# -- hole 7: DeleteBucket with incomplete multipart uploads ------------------------------------------------------


def test_delete_bucket_with_only_incomplete_uploads_aborts_them(s3: object, local_grid: LocalGrid) -> None:
    """Hole 7: DeleteBucket refused a bucket that held only incomplete multipart uploads; AWS deletes it.
    The uploads are aborted, so their parts' chunks are freed as an abort frees them. A bucket that also
    holds an object is still BucketNotEmpty, and its uploads are left alone."""
    s3.create_bucket(Bucket="holes-uploads")
    before = set(held_chunks(local_grid.data))
    ups = [s3.create_multipart_upload(Bucket="holes-uploads", Key=f"u/{i}")["UploadId"] for i in range(3)]
    for up in ups[:2]:
        s3.upload_part(Bucket="holes-uploads", Key=f"u/{ups.index(up)}", UploadId=up, PartNumber=1,
                       Body=b"z" * MiB)
    parts = set(held_chunks(local_grid.data)) - before
    assert parts
    s3.delete_bucket(Bucket="holes-uploads")
    assert s3_error(lambda: s3.head_bucket(Bucket="holes-uploads"))[1] == 404
    wait_for("the aborted parts' chunks to be freed", lambda: not parts & set(held_chunks(local_grid.data)))

    s3.create_bucket(Bucket="holes-full")
    s3.put_object(Bucket="holes-full", Key="obj", Body=b"x")
    up = s3.create_multipart_upload(Bucket="holes-full", Key="u")["UploadId"]
    assert s3_error(lambda: s3.delete_bucket(Bucket="holes-full")) == ("BucketNotEmpty", 409)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="holes-full")["Uploads"]] == [up]
    s3.delete_object(Bucket="holes-full", Key="obj")
    s3.delete_bucket(Bucket="holes-full")
    assert s3_error(lambda: s3.head_bucket(Bucket="holes-full"))[1] == 404


def test_delete_bucket_with_delete_markers_and_uploads_is_not_empty(s3: object) -> None:
    """Hole 7, the boundary: a versioned bucket whose only entries are delete markers still holds versions
    (AWS: BucketNotEmpty); its uploads are not aborted."""
    s3.create_bucket(Bucket="holes-markers")
    s3.put_bucket_versioning(Bucket="holes-markers", VersioningConfiguration={"Status": "Enabled"})
    s3.delete_object(Bucket="holes-markers", Key="gone")  # a delete marker alone
    up = s3.create_multipart_upload(Bucket="holes-markers", Key="u")["UploadId"]
    assert s3_error(lambda: s3.delete_bucket(Bucket="holes-markers")) == ("BucketNotEmpty", 409)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="holes-markers")["Uploads"]] == [up]
    for v in s3.list_object_versions(Bucket="holes-markers").get("DeleteMarkers", []):
        s3.delete_object(Bucket="holes-markers", Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket="holes-markers")
