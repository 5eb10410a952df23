"""AWS Signature Version 4: header and presigned-URL authentication, aws-chunked bodies.

Every comparison of secrets is constant-time. The region is whatever the client
signed with (there is one region here); the service must be ``s3``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from gridfs.gateways.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = {STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
MAX_SKEW = 15 * 60
HEX_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_PRESIGN = 7 * 24 * 3600
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})"
)


@dataclass
class Credential:
    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @classmethod
    def parse(cls, text: str) -> Credential:
        parts = text.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
            raise S3Error("AuthorizationHeaderMalformed", f"malformed credential {text!r}")
        if parts[3] != "s3":
            raise S3Error("AuthorizationHeaderMalformed", f"credential scope names service {parts[3]!r}, not s3")
        return cls(*parts[:4])


@dataclass
class SignedRequest:
    """What a request claims: who, when, which headers, the signature, the payload hash."""

    credential: Credential
    amz_date: str
    signed_headers: list[str]
    signature: str
    payload_hash: str
    presigned: bool = False
    expires: int = 0
    legacy_v2: bool = False  # a Signature Version 2 presigned URL (boto3's default for generate_presigned_url)
    extra: dict[str, str] = field(default_factory=dict)


def uri_encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def canonical_query(raw_query: str, drop: str = "") -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        if not item:
            continue
        k, _, v = item.partition("=")
        k, v = unquote(k), unquote(v)
        if k != drop:
            pairs.append((uri_encode(k), uri_encode(v)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(method: str, raw_path: str, raw_query: str, headers: dict[str, str],
                      signed: list[str], payload_hash: str, drop_query: str = "") -> str:
    path = uri_encode(unquote(raw_path), safe="-_.~/")
    canon_headers = "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed)
    return "\n".join([method, path, canonical_query(raw_query, drop_query), canon_headers, ";".join(signed),
                      payload_hash])


MISMATCH = ("The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.")


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _require(expected: str, given: str, message: str = MISMATCH) -> None:
    """Constant-time comparison of a signature; SignatureDoesNotMatch otherwise."""
    if not hmac.compare_digest(expected, given):
        raise S3Error("SignatureDoesNotMatch", message)


def signing_key(secret: str, cred: Credential) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (cred.date, cred.region, cred.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def _parse_amz_date(value: str) -> float:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise S3Error("AccessDenied", f"malformed X-Amz-Date {value!r}") from exc


def parse_request(headers: dict[str, str], query: dict[str, str]) -> SignedRequest | None:
    """The signature a request carries, or None for an anonymous request."""
    auth = headers.get("authorization")
    if auth:
        if not auth.startswith(ALGORITHM):
            raise S3Error("AccessDenied" if auth.startswith("AWS ") else "AuthorizationHeaderMalformed",
                          "only AWS Signature Version 4 is supported")
        m = _AUTH_RE.fullmatch(auth.strip())
        if not m:
            raise S3Error("AuthorizationHeaderMalformed", "malformed Authorization header")
        amz_date = headers.get("x-amz-date") or ""
        if not amz_date:
            raise S3Error("AccessDenied", "X-Amz-Date is required")
        payload = headers.get("x-amz-content-sha256") or ""
        if not payload:
            raise S3Error("InvalidRequest", "x-amz-content-sha256 is required with Signature Version 4")
        if payload not in STREAMING and payload != UNSIGNED and not HEX_SHA256_RE.fullmatch(payload):
            # Anything else would leave the body unchecked while the request looks signed.
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          f"{', '.join(sorted(STREAMING))} or a valid sha256 value.")
        return SignedRequest(Credential.parse(m["cred"]), amz_date, m["headers"].split(";"), m["sig"], payload)
    if "X-Amz-Signature" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error("AccessDenied", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        try:
            expires = int(query.get("X-Amz-Expires", "0"))
        except ValueError as exc:
            raise S3Error("AccessDenied", "X-Amz-Expires must be a number") from exc
        if not 0 < expires <= MAX_PRESIGN:
            raise S3Error("AccessDenied", "X-Amz-Expires must be between 1 second and 7 days")
        return SignedRequest(Credential.parse(query.get("X-Amz-Credential", "")), query.get("X-Amz-Date", ""),
                             query.get("X-Amz-SignedHeaders", "host").split(";"), query["X-Amz-Signature"],
                             UNSIGNED, presigned=True, expires=expires)
    if "Signature" in query and "AWSAccessKeyId" in query:
        expires_at = query.get("Expires", "")
        if not expires_at.isdigit():
            raise S3Error("AccessDenied", "a presigned URL needs Expires")
        cred = Credential(query["AWSAccessKeyId"], "", "", "s3")
        return SignedRequest(cred, "", [], query["Signature"], UNSIGNED, presigned=True, expires=int(expires_at),
                             legacy_v2=True)
    return None


# Sub-resources that take part in a Signature Version 2 string to sign.
V2_SUBRESOURCES = {
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website", "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
}


def verify_v2_presigned(req: SignedRequest, secret: str, method: str, raw_path: str, raw_query: str,
                        headers: dict[str, str], now: float | None = None) -> None:
    """A Signature Version 2 presigned URL: HMAC-SHA1 over the method, Expires and resource."""
    import base64

    now = time.time() if now is None else now
    if now > req.expires:
        raise S3Error("AccessDenied", "Request has expired")
    subs = []
    for item in raw_query.split("&") if raw_query else []:
        k, sep, v = item.partition("=")
        k = unquote(k)
        if k in V2_SUBRESOURCES:
            subs.append(f"{k}={unquote(v)}" if sep else k)
    resource = raw_path + ("?" + "&".join(sorted(subs)) if subs else "")
    amz = "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(h for h in headers if h.startswith("x-amz-")))
    sts = "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""), str(req.expires)])
    sts += "\n" + amz + resource
    _require(base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest()).decode(), req.signature)


def verify(req: SignedRequest, secret: str, method: str, raw_path: str, raw_query: str,
           headers: dict[str, str], now: float | None = None) -> bytes:
    """Check time and signature; returns the signing key (aws-chunked bodies need it)."""
    now = time.time() if now is None else now
    signed_at = _parse_amz_date(req.amz_date)
    if req.presigned:
        if now > signed_at + req.expires:
            raise S3Error("AccessDenied", "Request has expired")
        if signed_at - now > MAX_SKEW:
            raise S3Error("AccessDenied", "Request is not valid yet")
    elif abs(now - signed_at) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", "The difference between the request time and the server's time "
                      "is too large.")
    if req.amz_date[:8] != req.credential.date:
        raise S3Error("SignatureDoesNotMatch", "the credential date does not match X-Amz-Date")
    if "host" not in req.signed_headers:
        raise S3Error("AccessDenied", "the Host header must be signed")
    canonical = canonical_request(method, raw_path, raw_query, headers, req.signed_headers, req.payload_hash,
                                  drop_query="X-Amz-Signature" if req.presigned else "")
    key = signing_key(secret, req.credential)
    _require(_hmac_hex(key, string_to_sign(req.amz_date, req.credential.scope, canonical)), req.signature)
    return key


# -- aws-chunked bodies -------------------------------------------------------------


class ChunkedBody:
    """Decodes an aws-chunked body, checking chunk signatures, and collects its trailers.

    Yields the payload in pieces of at least ``piece`` bytes (but the last), so that
    whoever consumes it on another thread makes few hops.
    """

    def __init__(self, read_line: Callable, read_exactly: Callable, mode: str, req: SignedRequest | None,
                 key: bytes | None, piece: int = 4 << 20) -> None:
        self.read_line = read_line
        self.read_exactly = read_exactly
        self.mode = mode
        self.req = req
        self.key = key
        self.piece = piece
        self.previous = req.signature if req else ""
        self.trailers: dict[str, str] = {}
        self.decoded = 0

    def _check_chunk(self, signature: str, data: bytes | bytearray) -> None:
        if self.mode == STREAMING_UNSIGNED_TRAILER:
            return
        assert self.req is not None and self.key is not None
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.req.amz_date, self.req.credential.scope, self.previous,
                         EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
        _require(_hmac_hex(self.key, sts), signature, "a chunk signature does not match")
        self.previous = signature

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = bytearray()
        while True:
            line = (await self.read_line()).decode("latin-1").strip()
            if not line:
                raise S3Error("IncompleteBody", "the aws-chunked body ended early")
            size_text, _, ext = line.partition(";")
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise S3Error("IncompleteBody", "malformed aws-chunked chunk header") from exc
            signature = ext.partition("chunk-signature=")[2]
            if self.mode != STREAMING_UNSIGNED_TRAILER and not signature:
                raise S3Error("SignatureDoesNotMatch", "a chunk carries no signature")
            data = await self.read_exactly(size) if size else b""
            if size and await self.read_exactly(2) != b"\r\n":
                raise S3Error("IncompleteBody", "malformed aws-chunked chunk")
            self._check_chunk(signature, data)
            if not size:
                break
            self.decoded += size
            pending += data
            if len(pending) >= self.piece:
                yield bytes(pending)
                pending.clear()
        if pending:
            yield bytes(pending)
        await self._read_trailers()

    async def _read_trailers(self) -> None:
        if self.mode == STREAMING_SIGNED:
            await self.read_line()  # the blank line that ends the body
            return
        lines = []
        while True:
            line = (await self.read_line()).decode("latin-1")
            if line.strip() == "":
                break
            lines.append(line.strip())
        for line in lines:
            name, _, value = line.partition(":")
            self.trailers[name.strip().lower()] = value.strip()
        if self.mode == STREAMING_SIGNED_TRAILER:
            assert self.req is not None and self.key is not None
            signature = self.trailers.pop("x-amz-trailer-signature", "")
            canon = "".join(f"{k}:{v}\n" for k, v in self.trailers.items())
            sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.req.amz_date, self.req.credential.scope,
                             self.previous, hashlib.sha256(canon.encode()).hexdigest()])
            _require(_hmac_hex(self.key, sts), signature, "the trailer signature does not match")
