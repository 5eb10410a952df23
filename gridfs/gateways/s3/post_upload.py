"""Browser POST uploads: ``POST /bucket`` with a ``multipart/form-data`` body, as HTML forms send it.

The form carries ``key`` (``${filename}`` stands for the file's name), a ``policy`` (base64 of a JSON
document with an ``expiration`` and ``conditions``), the SigV4 fields ``x-amz-algorithm``,
``x-amz-credential``, ``x-amz-date`` and ``x-amz-signature`` (HMAC-SHA256 of the policy text under the
signing key ``sigv4.signing_key`` derives; or Signature Version 2's ``AWSAccessKeyId`` and ``signature``,
what boto3's ``generate_presigned_post`` writes by default), optional ``Content-Type``, ``x-amz-meta-*``,
content headers, ``tagging``, ``x-amz-storage-class``, ``x-amz-checksum-*``, ``success_action_status`` or
``success_action_redirect``, and the ``file`` last (fields after it are ignored, as AWS does).

Checked before a byte of the file is stored, as AWS checks them: the signature (SignatureDoesNotMatch), the
policy's expiration and every condition (``{"field": value}``, ``["eq", ...]``, ``["starts-with", ...]``,
``bucket``; AccessDenied "Invalid according to Policy"), that every field but the exempt ones is named by a
condition, and the signer's right to write the bucket. ``content-length-range`` is checked as the file
streams into the grid (EntityTooLarge stops it; EntityTooSmall at its end): nothing is stored unless all
pass. The fields before the file are read whole, at most ``MAX_FIELDS_SIZE`` bytes; the file never is.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import http_exceptions, web
from aiohttp.multipart import BodyPartReader
from multidict import CIMultiDict

from gridfs.gateways.s3 import sigv4, sse, xmlio
from gridfs.gateways.s3.acl import new_object_props
from gridfs.gateways.s3.checksums import ALGORITHMS, BodyDigests
from gridfs.gateways.s3.context import Ctx, load_bucket
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.objects import (
    CHECKSUM_PROP,
    ETAG_PROP,
    TAGS_PROP,
    policy_for_class,
    properties_from_headers,
    version_id,
)
from gridfs.gateways.s3.streams import sync_pieces
from gridfs.gateways.s3.tags import MAX_OBJECT_TAGS, parse_tag_document
from gridfs.gateways.s3.users import User

MAX_FIELDS_SIZE = 20 * 1024  # the form fields before the file, together (AWS's limit)
MAX_FIELDS = 100
MAX_FILE = 5 * 1024**3  # AWS's largest POST upload
PIECE = 1 << 20
# Fields no policy condition has to name (AWS): the signature, the policy itself, the file, x-ignore-*.
EXEMPT = {"x-amz-signature", "policy", "file", "awsaccesskeyid", "signature"}
SIGNATURE_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # an HTTP token, lower case (names are lowered)
# Fields answered as headers: of the object on every GET, or of this answer (the redirect).
HEADER_FIELDS = {"content-type", "cache-control", "content-disposition", "content-encoding", "content-language",
                 "expires", "success_action_redirect", "redirect"}
V2_FIELDS = ("awsaccesskeyid", "signature")  # Signature Version 2 forms: boto3's generate_presigned_post default
# Form fields that set what this gateway does not implement: refused, never accepted and ignored.
UNSUPPORTED_PREFIXES = ("x-amz-server-side-encryption", "x-amz-object-lock", "x-amz-website-redirect-location",
                        "x-amz-grant-")


def is_form_post(ctx: Ctx) -> bool:
    """A browser upload: POST to a bucket, no key, no sub-resource, a multipart/form-data body."""
    return (ctx.request.method == "POST" and bool(ctx.bucket) and not ctx.key and not ctx.query
            and ctx.request.content_type == "multipart/form-data")


@dataclass
class Form:
    """The fields before the file (names lower-cased: AWS matches them without regard to case)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: BodyPartReader | None = None
    filename: str = ""


def _denied(why: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {why}")


def _invalid_policy(why: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {why}")


# What aiohttp's multipart reader raises on a body that is not multipart/form-data (a missing boundary, a part
# without headers, a header line it cannot parse).
MALFORMED = (ValueError, AssertionError, http_exceptions.HttpProcessingError)


@asynccontextmanager
async def _well_formed() -> AsyncIterator[None]:
    try:
        yield
    except MALFORMED as exc:
        raise S3Error("MalformedPOSTRequest", "The body of your POST request is not well-formed "
                      "multipart/form-data.") from exc


async def _read_chunk(part: BodyPartReader, size: int) -> bytes:
    async with _well_formed():
        return await part.read_chunk(size)


async def read_form(request: web.Request) -> Form:
    """The fields up to the file part, which is left unread for the caller to stream."""
    async with _well_formed():
        reader = await request.multipart()
    form, total = Form(), 0
    too_large = S3Error("MaxPostPreDataLengthExceededError", "Your POST request fields preceding the upload file "
                        "were too large.")
    while True:
        async with _well_formed():
            part = await reader.next()
        if part is None:
            return form
        if not isinstance(part, BodyPartReader) or not part.name:
            raise S3Error("MalformedPOSTRequest", "every part of a POST form must be a named field")
        name = part.name.lower()
        if name == "file":
            form.file, form.filename = part, part.filename or ""
            return form
        if name in form.fields:  # which of two values would the policy have been checked against?
            raise S3Error("InvalidArgument", f"the form field {name!r} is given more than once", ArgumentName=name)
        total += len(name)
        if len(form.fields) >= MAX_FIELDS or total > MAX_FIELDS_SIZE:
            raise too_large
        value = bytearray()
        while chunk := await _read_chunk(part, 4096):
            value += chunk
            total += len(chunk)
            if total > MAX_FIELDS_SIZE:
                raise too_large
        try:
            form.fields[name] = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise S3Error("InvalidArgument", f"the form field {name!r} is not UTF-8", ArgumentName=name) from exc


# -- the policy -------------------------------------------------------------------------------------


@dataclass
class Policy:
    expiration: float
    conditions: list[Any]


def parse_policy(text: str) -> Policy:
    try:
        doc = json.loads(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise _invalid_policy("Invalid JSON.") from exc
    if not isinstance(doc, dict):
        raise _invalid_policy("Invalid JSON.")
    if not isinstance(doc.get("expiration"), str):
        raise _invalid_policy("Policy missing expiration.")
    try:
        expiration = datetime.fromisoformat(doc["expiration"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid_policy(f"Invalid 'expiration' value: '{doc['expiration']}'") from exc
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    conditions = doc.get("conditions")
    if not isinstance(conditions, list):
        raise _invalid_policy("Policy missing conditions.")
    return Policy(expiration.timestamp(), conditions)


def _require_fields(fields: dict[str, str], names: tuple[str, ...]) -> None:
    missing = [f for f in names if f not in fields]
    if missing:
        raise S3Error("InvalidArgument", f"Bucket POST must contain a field named '{missing[0]}'.  If it is "
                      "specified, please check the order of the fields.", ArgumentName=missing[0])


async def signer_of(ctx: Ctx, fields: dict[str, str]) -> User:
    """The user whose key signed the form's policy: SigV4 (``x-amz-*`` fields) or Signature Version 2
    (``AWSAccessKeyId`` and ``signature``: base64 of the policy's HMAC-SHA1 under the secret key)."""
    v4 = any(name in fields for name in SIGNATURE_FIELDS)
    _require_fields(fields, SIGNATURE_FIELDS if v4 else V2_FIELDS)
    access_key = sigv4.Credential.parse(fields["x-amz-credential"]).access_key if v4 else fields["awsaccesskeyid"]
    user = await ctx.run(ctx.gw.users.lookup, access_key)
    if user is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    if v4:
        verify_signature(fields, user.secret_key)
        return user
    expected = base64.b64encode(hmac.new(user.secret_key.encode(), fields["policy"].encode(), hashlib.sha1).digest())
    if not hmac.compare_digest(expected, fields["signature"].encode()):
        raise S3Error("SignatureDoesNotMatch", sigv4.MISMATCH)
    return user


def verify_signature(fields: dict[str, str], secret: str) -> None:
    """``x-amz-signature`` is the HMAC of the policy text under the credential's SigV4 signing key."""
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
        raise S3Error("InvalidArgument", "x-amz-algorithm must be AWS4-HMAC-SHA256", ArgumentName="x-amz-algorithm")
    credential = sigv4.Credential.parse(fields["x-amz-credential"])
    if fields["x-amz-date"][:8] != credential.date:
        raise S3Error("InvalidArgument", "x-amz-date does not match the date of x-amz-credential",
                      ArgumentName="x-amz-date")
    key = sigv4.signing_key(secret, credential)
    expected = hmac.new(key, fields["policy"].encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["x-amz-signature"].lower()):
        raise S3Error("SignatureDoesNotMatch", sigv4.MISMATCH)


@dataclass
class SizeRange:
    low: int = 0
    high: int = MAX_FILE


def check_conditions(policy: Policy, fields: dict[str, str], bucket: str) -> SizeRange:
    """Every condition holds and every field is named by one; the content-length-range to apply."""
    values = {**fields, "bucket": bucket}
    named: set[str] = set()
    sizes = SizeRange()

    def field_of(ref: Any) -> str:
        if not isinstance(ref, str) or not ref.startswith("$"):
            raise _invalid_policy(f"Invalid condition field: {ref!r}")
        return ref[1:].lower()

    for cond in policy.conditions:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise _invalid_policy("Invalid Simple-Condition: Simple-Conditions must have exactly one property "
                                      "specified.")
            (name, expected), = cond.items()
            cond = ["eq", "$" + name, expected]
        if not isinstance(cond, list) or not cond or not isinstance(cond[0], str):
            raise _invalid_policy(f"Invalid condition: {cond!r}")
        op = cond[0].lower()
        if op == "content-length-range":
            if len(cond) != 3 or not all(_is_count(v) for v in cond[1:]):
                raise _invalid_policy("Invalid content-length-range: it takes two non-negative integers.")
            sizes = SizeRange(int(cond[1]), min(int(cond[2]), MAX_FILE))
            continue
        if op not in ("eq", "starts-with") or len(cond) != 3 or not isinstance(cond[2], str):
            raise _invalid_policy(f"Invalid condition: {json.dumps(cond)}")
        name = field_of(cond[1])
        named.add(name)
        value = values.get(name)
        held = value is not None and (value == cond[2] if op == "eq" else value.startswith(cond[2]))
        if not held:
            raise _denied(f"Policy Condition failed: {json.dumps(cond)}")
    extra = sorted(n for n in fields if n not in named and n not in EXEMPT and not n.startswith("x-ignore-"))
    if extra:
        raise _denied(f"Extra input fields: {extra[0]}")
    return sizes


def _is_count(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isascii() and value.isdigit()


# -- the upload -------------------------------------------------------------------------------------


async def _file_pieces(part: BodyPartReader, sizes: SizeRange) -> AsyncIterator[bytes]:
    """The file part, a piece at a time; EntityTooLarge as soon as it passes the policy's range."""
    seen = 0
    while True:
        piece = bytearray()
        while len(piece) < PIECE and (chunk := await _read_chunk(part, PIECE - len(piece))):
            piece += chunk
        if not piece:
            break
        seen += len(piece)
        if seen > sizes.high:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          MaxSizeAllowed=str(sizes.high))
        yield bytes(piece)
    if seen < sizes.low:
        raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size",
                      ProposedSize=str(seen), MinSizeAllowed=str(sizes.low))


def _checksum_field(fields: dict[str, str]) -> tuple[str, str]:
    """The one ``x-amz-checksum-ALG`` field sent, as (algorithm, base64 value), or ("", "")."""
    sent = [(alg, fields[f"x-amz-checksum-{alg}"]) for alg in ALGORITHMS if f"x-amz-checksum-{alg}" in fields]
    if len(sent) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not "
                      "allowed.")
    return sent[0] if sent else ("", "")


def _check_header_fields(fields: dict[str, str]) -> None:
    """The fields that become answer headers must be fit for one: a form, unlike a request's head, may carry
    any name and any character (a line break would break every later GET of the object)."""
    for name, value in fields.items():
        if not (name.startswith("x-amz-meta-") or name in HEADER_FIELDS):
            continue
        if not HEADER_NAME_RE.fullmatch(name) or any(c < " " or c == "\x7f" for c in value):
            raise S3Error("InvalidArgument", f"the form field {name!r} cannot be an HTTP header (name or value)",
                          ArgumentName=name)


def _object_properties(ctx: Ctx, fields: dict[str, str]) -> dict[str, str]:
    for name in fields:
        if name.startswith(UNSUPPORTED_PREFIXES):
            raise S3Error("NotImplemented", f"the form field {name} is not implemented by this gateway")
    _check_header_fields(fields)
    acl = fields.get("acl", "private")
    if acl != "private":
        raise S3Error("NotImplemented", f"object ACLs are not implemented (acl {acl!r}); only private")
    props = properties_from_headers(ctx, CIMultiDict(fields))
    if fields.get("tagging"):  # AWS's form field: an XML document (x-amz-tagging, the header's form, works too)
        props[TAGS_PROP] = json.dumps(parse_tag_document(fields["tagging"].encode(), MAX_OBJECT_TAGS))
    return props


def _success(ctx: Ctx, fields: dict[str, str], key: str, etag: str, vid: str | None) -> web.Response:
    location = f"{ctx.request.scheme}://{ctx.request.host}/{quote(ctx.bucket)}/{quote(key)}"
    headers = {"ETag": f'"{etag}"', "Location": location}
    if vid:
        headers["x-amz-version-id"] = vid
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https"):
        query = urlencode({"bucket": ctx.bucket, "key": key, "etag": f'"{etag}"'})
        headers["Location"] = f"{redirect}{'&' if urlsplit(redirect).query else '?'}{query}"
        return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status", "")
    if status == "201":
        answer = xmlio.response("PostResponse", {"Location": location, "Bucket": ctx.bucket, "Key": key,
                                                 "ETag": f'"{etag}"'}, headers)
        answer.set_status(201)
        return answer
    return web.Response(status=200 if status == "200" else 204, headers=headers)


async def post_object(ctx: Ctx) -> web.Response:
    # The form's signed policy alone says who writes: an Authorization header (or presigned query) signs no
    # byte of a form, which is not checked against any payload hash, so it must not be taken as the writer.
    ctx.user = None
    form = await read_form(ctx.request)
    fields = form.fields
    if "key" not in fields:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please "
                      "check the order of the fields.", ArgumentName="key", ArgumentValue="")
    if form.file is None:
        raise S3Error("InvalidArgument", "POST requires exactly one file upload per request.",
                      ArgumentName="file", ArgumentValue="0")
    if "policy" in fields:
        user = await signer_of(ctx, fields)
        policy = parse_policy(fields["policy"])
        if policy.expiration < datetime.now(UTC).timestamp():
            raise _denied("Policy expired.")
        sizes = check_conditions(policy, fields, ctx.bucket)
        ctx.user = user
    else:  # an unsigned form: anonymous, which may write no bucket here
        sizes = SizeRange()
    await load_bucket(ctx)
    if ctx.user is None:
        raise S3Error("AccessDenied", "Access Denied")
    key = fields["key"].replace("${filename}", form.filename)
    if not key:
        raise S3Error("InvalidArgument", "User key must have a length greater than 0.", ArgumentName="key")
    ctx.key = key
    # The uploader's object with a private ACL, as a PutObject without ACL headers; encrypted if its
    # bucket's default says so.
    props = {**_object_properties(ctx, fields), **await new_object_props(ctx)}
    sealing = sse.requested(ctx)
    props.update(sse.stored_props(ctx, sealing))
    policy_name, class_props = policy_for_class(ctx, CIMultiDict(fields))
    algorithm, expected = _checksum_field(fields)
    digests = BodyDigests("", algorithm)
    mime = fields.get("content-type") or "binary/octet-stream"
    pieces = sync_pieces(asyncio.get_running_loop(), _file_pieces(form.file, sizes), digests, None)

    def before_commit() -> dict[str, str]:
        value = digests.check(expected)
        extra = {ETAG_PROP: sse.etag(sealing, digests.etag())}
        if sealing:
            extra[sse.SIZE_PROP] = str(digests.size)
        return {**extra, **({CHECKSUM_PROP + algorithm: value} if value else {})}

    info = await ctx.run(lambda: ctx.gw.client.put(ctx.bucket, key, sse.encrypt(sealing, pieces), policy=policy_name,
                                                   properties={**props, **class_props}, mime_type=mime,
                                                   before_commit=before_commit, origin="post"))
    response = _success(ctx, fields, key, sse.etag(sealing, digests.etag()), version_id(ctx, info.version))
    response.headers.update(sealing.headers() if sealing else {})
    return response
