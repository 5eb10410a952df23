"""A bucket's default encryption: PUT, GET and DELETE ``?encryption`` (ServerSideEncryptionConfiguration).

With ``AES256`` as the default, every object written without encryption headers is stored SSE-S3
(``sse``); only AES256 is taken (no KMS here). A bucket without one answers GET with
ServerSideEncryptionConfigurationNotFoundError, as AWS did before it encrypted every bucket by default:
objects written through S3 stay readable through ``grid://`` unless someone asks for encryption.
Reading and changing the setting are the bucket owner's.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from aiohttp import web

from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, owner_of, set_bucket_props
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.sse import AES256, BUCKET_PROP, KMS

MAX_RULES = 1
BUCKET_KEY_PROP = "s3.encryption-bucket-key"  # BucketKeyEnabled as set: kept and answered (KMS would use it)


def _owner_only(ctx: Ctx) -> None:
    assert ctx.container is not None
    if ctx.user is None or owner_of(ctx.gw, ctx.container) != ctx.user.name:
        raise S3Error("AccessDenied", "Access Denied")


async def get_encryption(ctx: Ctx) -> web.Response:
    _owner_only(ctx)
    assert ctx.container is not None
    algorithm = ctx.container.properties.get(BUCKET_PROP, "")
    if not algorithm:
        error = S3Error("ServerSideEncryptionConfigurationNotFoundError",
                        "The server side encryption configuration was not found", BucketName=ctx.bucket)
        error.status = 404
        raise error
    bucket_key = ctx.container.properties.get(BUCKET_KEY_PROP) == "true"
    return xmlio.response("ServerSideEncryptionConfiguration", {"Rule": {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}, "BucketKeyEnabled": bucket_key}})


def parse_configuration(body: bytes) -> tuple[str, bool]:
    """The default algorithm a ServerSideEncryptionConfiguration sets (AES256) and its BucketKeyEnabled, or an
    S3 error."""
    doc = xmlio.parse(body, "ServerSideEncryptionConfiguration")
    rules = doc.findall("Rule")
    if len(rules) != MAX_RULES:
        raise S3Error("MalformedXML", "A ServerSideEncryptionConfiguration has exactly one Rule.")
    default = rules[0].find("ApplyServerSideEncryptionByDefault")
    if default is None:
        raise S3Error("MalformedXML", "The Rule needs an ApplyServerSideEncryptionByDefault element.")
    algorithm = xmlio.text(default, "SSEAlgorithm")
    if algorithm in KMS:
        raise S3Error("NotImplemented", "SSE-KMS is not implemented by this gateway: use AES256")
    if algorithm != AES256:
        raise S3Error("MalformedXML", "SSEAlgorithm must be AES256 (or aws:kms, not implemented here).")
    if xmlio.text(default, "KMSMasterKeyID"):
        raise S3Error("InvalidArgument", "a KMSMasterKeyID is only for aws:kms", ArgumentName="KMSMasterKeyID")
    bucket_key = xmlio.text(rules[0], "BucketKeyEnabled", "false").lower()
    if bucket_key not in ("true", "false"):
        raise S3Error("MalformedXML", "BucketKeyEnabled must be true or false.")
    return algorithm, bucket_key == "true"


async def put_encryption(ctx: Ctx) -> web.Response:
    _owner_only(ctx)
    algorithm, bucket_key = parse_configuration(await xmlio.read(ctx.request))
    return await set_bucket_props(ctx, {BUCKET_PROP: algorithm, BUCKET_KEY_PROP: "true" if bucket_key else None})


async def delete_encryption(ctx: Ctx) -> web.Response:
    _owner_only(ctx)
    return await set_bucket_props(ctx, {BUCKET_PROP: None, BUCKET_KEY_PROP: None}, status=204)
