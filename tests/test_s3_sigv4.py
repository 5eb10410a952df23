"""SigV4 and aws-chunked bodies against AWS's published examples (so a pass means "matches AWS", not
"matches itself"), then an aws-chunked upload with a checksum trailer to a live gateway."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import io
import zlib

import pytest
import requests

from gridfs.cli.local import LocalGrid
from gridfs.gateways.s3 import sigv4
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.users import UserStore

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CRED = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
WHEN = dt.datetime(2013, 5, 24, 0, 0, 30, tzinfo=dt.UTC).timestamp()
EMPTY = hashlib.sha256(b"").hexdigest()


def test_get_object_example_signature() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9", "x-amz-content-sha256": EMPTY,
               "x-amz-date": "20130524T000000Z",
               "authorization": f"AWS4-HMAC-SHA256 Credential={CRED},SignedHeaders=host;range;x-amz-content-sha256;"
                                "x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"}
    req = sigv4.parse_request(headers, {})
    assert req is not None
    sigv4.verify(req, SECRET, "GET", "/test.txt", "", headers, now=WHEN)
    with pytest.raises(S3Error) as e:
        sigv4.verify(req, SECRET, "GET", "/test.txt", "", {**headers, "range": "bytes=0-10"}, now=WHEN)
    assert e.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as e:
        sigv4.verify(req, SECRET, "GET", "/test.txt", "", headers, now=WHEN + 3600)
    assert e.value.code == "RequestTimeTooSkewed"


def _streaming_example(corrupt: bool = False) -> tuple[dict[str, str], bytes]:
    headers = {"host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
               "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": sigv4.STREAMING_SIGNED, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": "66560", "content-length": "66824",
               "authorization": f"AWS4-HMAC-SHA256 Credential={CRED},SignedHeaders=content-encoding;content-length;"
                                "host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
                                "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"}
    body = b""
    for size, sig in ((65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
                      (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
                      (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")):
        data = bytearray(b"a" * size)
        if corrupt and size == 1024:
            data[10] = ord("b")
        body += f"{size:x};chunk-signature={sig}\r\n".encode() + bytes(data) + b"\r\n"
    assert len(body) == 66824
    return headers, body


def _decode(body: bytes, mode: str, req: sigv4.SignedRequest | None, key: bytes | None) -> tuple[bytes, dict]:
    stream = io.BytesIO(body)

    async def read_line() -> bytes:
        return stream.readline()

    async def read_exactly(n: int) -> bytes:
        data = stream.read(n)
        if len(data) != n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    decoder = sigv4.ChunkedBody(read_line, read_exactly, mode, req, key, piece=1000)

    async def collect() -> bytes:
        return b"".join([piece async for piece in decoder])

    return asyncio.run(collect()), decoder.trailers


def test_streaming_signed_chunks_example() -> None:
    headers, body = _streaming_example()
    req = sigv4.parse_request(headers, {})
    assert req is not None
    key = sigv4.verify(req, SECRET, "PUT", "/examplebucket/chunkObject.txt", "", headers, now=WHEN)
    data, _ = _decode(body, sigv4.STREAMING_SIGNED, req, key)
    assert data == b"a" * 66560
    _, corrupt = _streaming_example(corrupt=True)
    with pytest.raises(S3Error) as e:
        _decode(corrupt, sigv4.STREAMING_SIGNED, req, key)
    assert e.value.code == "SignatureDoesNotMatch"


def _trailer_body(data: bytes, checksum: str, chunk: int = 8192) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n" + f"x-amz-checksum-crc32:{checksum}\r\n\r\n".encode()


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_unsigned_payload_with_checksum_trailer_decodes() -> None:
    data = bytes(range(256)) * 100
    decoded, trailers = _decode(_trailer_body(data, _crc32(data)), sigv4.STREAMING_UNSIGNED_TRAILER, None, None)
    assert decoded == data and trailers == {"x-amz-checksum-crc32": _crc32(data)}


def _sign(user: dict, method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    """Header SigV4 with the gateway's primitives (checked against AWS's examples above)."""
    now = dt.datetime.now(dt.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    host = url.split("/")[2]
    path = "/" + url.split("/", 3)[3]
    headers = {**{k.lower(): v for k, v in headers.items()}, "host": host, "x-amz-date": amz_date}
    signed = sorted(headers)
    cred = sigv4.Credential(user["access_key"], amz_date[:8], "us-east-1", "s3")
    canonical = sigv4.canonical_request(method, path, "", headers, signed, headers["x-amz-content-sha256"])
    key = sigv4.signing_key(user["secret_key"], cred)
    sig = hmac.new(key, sigv4.string_to_sign(amz_date, cred.scope, canonical).encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cred.access_key}/{cred.scope},"
                                f"SignedHeaders={';'.join(signed)},Signature={sig}")
    del headers["host"]
    return headers


def test_aws_chunked_upload_with_crc32_trailer_to_a_live_gateway(local_grid: LocalGrid) -> None:
    endpoint = local_grid.config().extra["s3"]["url"]
    u = UserStore(local_grid.config_path).create("chunky")
    user = {"access_key": u.access_key, "secret_key": u.secret_key}
    create = _sign(user, "PUT", f"{endpoint}/chunked", {"x-amz-content-sha256": EMPTY})
    assert requests.put(f"{endpoint}/chunked", headers=create).status_code == 200
    data = bytes(range(256)) * 4096 + b"tail"

    def put(key: str, checksum: str) -> requests.Response:
        body = _trailer_body(data, checksum, chunk=65536)
        headers = _sign(user, "PUT", f"{endpoint}/chunked/{key}", {
            "x-amz-content-sha256": sigv4.STREAMING_UNSIGNED_TRAILER, "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32",
            "content-length": str(len(body))})
        return requests.put(f"{endpoint}/chunked/{key}", data=body, headers=headers)

    ok = put("good", _crc32(data))
    assert ok.status_code == 200 and ok.headers["x-amz-checksum-crc32"] == _crc32(data)
    get = requests.get(f"{endpoint}/chunked/good", headers=_sign(user, "GET", f"{endpoint}/chunked/good",
                                                                 {"x-amz-content-sha256": EMPTY}))
    assert get.content == data
    bad = put("bad", _crc32(data + b"x"))
    assert bad.status_code == 400 and b"BadDigest" in bad.content
    missing = requests.head(f"{endpoint}/chunked/bad", headers=_sign(user, "HEAD", f"{endpoint}/chunked/bad",
                                                                      {"x-amz-content-sha256": EMPTY}))
    assert missing.status_code == 404
