"""Bucket operations: create, head, delete, location, listings (V1, V2, versions),
versioning, DeleteObjects, canned ACLs and CORS; the dispatch of the other bucket settings.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gridfs.common import errors as grid_errors
from gridfs.common.names import check_bucket
from gridfs.directory.model import ObjectInfo
from gridfs.gateways.s3 import (
    access_settings,
    bucket_encryption,
    lifecycle,
    notification,
    objectlock,
    owners,
    sse,
    xmlio,
)
from gridfs.gateways.s3.acl import get_acl, new_bucket_props, object_owner_xml, put_acl
from gridfs.gateways.s3.context import (
    LOCATION_PROP,
    Ctx,
    authorize_key,
    load_bucket,
    owner_of,
    set_bucket_props,
    translate,
)
from gridfs.gateways.s3.cors import CORS_PROP, check_rule
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.multipart import list_uploads
from gridfs.gateways.s3.objects import etag_of, storage_class_of, version_from, version_id
from gridfs.gateways.s3.tags import bucket_tagging

MAX_DELETE = 1000
POLICY_HEADER = "x-grid-storage-policy"


async def dispatch(ctx: Ctx) -> web.StreamResponse:
    method, q = ctx.request.method, ctx.query
    if method == "PUT" and not q:
        return await create_bucket(ctx)
    await load_bucket(ctx)
    if "object-lock" in q:
        return await objectlock.bucket_dispatch(ctx)
    if "lifecycle" in q:
        return await lifecycle.dispatch(ctx)
    if access_settings.handles(ctx):
        return await access_settings.dispatch(ctx)
    if "tagging" in q:
        return await bucket_tagging(ctx)
    if method == "HEAD":
        return web.Response(headers={"x-amz-bucket-region": _location(ctx) or "us-east-1"})
    if method == "GET":
        for sub, fn in (("location", get_location), ("versioning", get_versioning), ("versions", list_versions),
                        ("cors", get_cors), ("acl", get_acl), ("uploads", list_uploads),
                        ("encryption", bucket_encryption.get_encryption),
                        ("notification", notification.get_notification)):
            if sub in q:
                return await fn(ctx)
        return await (list_v2(ctx) if q.get("list-type") == "2" else list_v1(ctx))
    if method == "PUT":
        if "versioning" in q:
            return await put_versioning(ctx)
        if "cors" in q:
            return await put_cors(ctx)
        if "acl" in q:
            return await put_acl(ctx)
        if "encryption" in q:
            return await bucket_encryption.put_encryption(ctx)
        if "notification" in q:
            return await notification.put_notification(ctx)
        raise S3Error("NotImplemented", "this bucket setting is not implemented by this gateway")
    if method == "DELETE":
        if "cors" in q:
            return await set_bucket_props(ctx, {CORS_PROP: None}, status=204)
        if "encryption" in q:
            return await bucket_encryption.delete_encryption(ctx)
        if q:
            raise S3Error("NotImplemented", "this bucket operation is not implemented by this gateway")
        return await delete_bucket(ctx)
    if method == "POST" and "delete" in q:
        return await delete_objects(ctx)
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")


async def create_bucket(ctx: Ctx) -> web.Response:
    if ctx.user is None:
        raise S3Error("AccessDenied", "Access Denied")
    try:
        check_bucket(ctx.bucket)
    except grid_errors.InvalidName as exc:
        raise S3Error("InvalidBucketName", "The specified bucket is not valid.", BucketName=ctx.bucket) from exc
    body = await xmlio.read(ctx.request)
    location = ""
    if body.strip():
        location = xmlio.text(xmlio.parse(body, "CreateBucketConfiguration"), "LocationConstraint")
    acl_props = await new_bucket_props(ctx)
    lock_props, versioning = objectlock.new_bucket(ctx)
    policy = ctx.headers.get(POLICY_HEADER, "")
    props = {**owners.owner_props(ctx.gw.master_key, ctx.bucket, ctx.user.name), LOCATION_PROP: location,
             **acl_props, **lock_props}
    try:
        await ctx.run(lambda: ctx.gw.client.create_bucket(ctx.bucket, policy=policy, properties=props,
                                                          versioning=versioning))
    except grid_errors.AlreadyExists as exc:
        existing = await ctx.run(lambda: ctx.gw.client.bucket_info(ctx.bucket, stats=False))
        if owner_of(ctx.gw, existing) == ctx.user.name:
            raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                          "succeeded and you already own it.", BucketName=ctx.bucket) from exc
        raise S3Error("BucketAlreadyExists", "The requested bucket name is not available.",
                      BucketName=ctx.bucket) from exc
    except (KeyError, grid_errors.BadRequest) as exc:
        raise S3Error("InvalidArgument", f"unknown storage policy {policy!r}") from exc
    return web.Response(headers={"Location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: Ctx) -> web.Response:
    """DeleteBucket. A bucket that holds no object, version or delete marker but has incomplete multipart
    uploads is deleted as AWS deletes it: the uploads are aborted first, their parts' chunks freed as any
    abort frees them (garbage events for the event agent). One that holds anything else is BucketNotEmpty,
    its uploads left alone."""
    try:
        await ctx.run(ctx.gw.client.delete_bucket, ctx.bucket)
    except grid_errors.ContainerNotEmpty:
        if not await _abort_uploads_of_empty_bucket(ctx):
            raise
        await ctx.run(ctx.gw.client.delete_bucket, ctx.bucket)  # an object written meanwhile: BucketNotEmpty
    return web.Response(status=204)


async def _abort_uploads_of_empty_bucket(ctx: Ctx) -> bool:
    """Abort every upload of a bucket without versions; False (nothing done) when it has versions or no upload."""
    page = await ctx.run(lambda: ctx.gw.client.list_versions(ctx.bucket, max_keys=1))
    if page["versions"]:
        return False
    uploads = await ctx.run(ctx.gw.client.list_multipart, ctx.bucket)

    async def abort(upload_id: str, key: str) -> None:
        with contextlib.suppress(grid_errors.NoSuchUpload):  # completed or aborted meanwhile
            await ctx.run(ctx.gw.client.abort_multipart, ctx.bucket, key, upload_id)

    await asyncio.gather(*(abort(u.upload_id, u.key) for u in uploads))
    return bool(uploads)


def _location(ctx: Ctx) -> str:
    assert ctx.container is not None
    return ctx.container.properties.get(LOCATION_PROP, "")


async def get_location(ctx: Ctx) -> web.Response:
    return web.Response(body=(b'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="'
                              + xmlio.NS.encode() + b'">' + _location(ctx).encode() + b"</LocationConstraint>"),
                        content_type="application/xml")


# -- versioning ---------------------------------------------------------------------


async def get_versioning(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    state = {"enabled": "Enabled", "suspended": "Suspended"}.get(ctx.container.versioning)
    return xmlio.response("VersioningConfiguration", {"Status": state} if state else {})


async def put_versioning(ctx: Ctx) -> web.Response:
    doc = xmlio.parse(await xmlio.read(ctx.request), "VersioningConfiguration")
    status = xmlio.text(doc, "Status")
    if xmlio.text(doc, "MfaDelete") == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not implemented")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML", "Status must be Enabled or Suspended")
    await ctx.run(ctx.gw.client.set_versioning, ctx.bucket, status.lower())
    return web.Response()


# -- listings -----------------------------------------------------------------------


def _max_keys(ctx: Ctx) -> int:
    raw = ctx.query.get("max-keys", "1000")
    if not raw.isdigit():
        raise S3Error("InvalidArgument", "max-keys must be a non-negative integer")
    return min(int(raw), 1000)


def _encoder(ctx: Ctx) -> Any:
    kind = ctx.query.get("encoding-type", "")
    if kind and kind != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
    return (lambda s: quote(s, safe="/")) if kind else (lambda s: s)


def _entry(ctx: Ctx, o: ObjectInfo, enc: Any, owner: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"Key": enc(o.key), "LastModified": xmlio.iso(o.mtime), "ETag": f'"{etag_of(o)}"',
                           "Size": sse.plain_size(o), "StorageClass": storage_class_of(o)}
    if owner:
        out["Owner"] = object_owner_xml(ctx, o)
    return out


async def list_v2(ctx: Ctx) -> web.Response:
    q, enc = ctx.query, _encoder(ctx)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    max_keys = _max_keys(ctx)
    token = q.get("continuation-token", "")
    result = await ctx.run(lambda: ctx.gw.client.list(ctx.bucket, prefix=prefix, delimiter=delimiter,
                                                      start_after=q.get("start-after", ""), token=token,
                                                      max_keys=max_keys))
    content: dict[str, Any] = {
        "Name": ctx.bucket, "Prefix": enc(prefix), "Delimiter": enc(delimiter) if delimiter else None,
        "MaxKeys": max_keys, "EncodingType": q.get("encoding-type") or None,
        "KeyCount": len(result.objects) + len(result.prefixes), "IsTruncated": result.truncated,
        "ContinuationToken": token or None, "NextContinuationToken": result.next_token or None,
        "StartAfter": enc(q["start-after"]) if q.get("start-after") else None,
        "Contents": [_entry(ctx, o, enc, q.get("fetch-owner") == "true") for o in result.objects],
        "CommonPrefixes": [{"Prefix": enc(p)} for p in result.prefixes],
    }
    return xmlio.response("ListBucketResult", content)


async def list_v1(ctx: Ctx) -> web.Response:
    q, enc = ctx.query, _encoder(ctx)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    max_keys = _max_keys(ctx)
    result = await ctx.run(lambda: ctx.gw.client.list(ctx.bucket, prefix=prefix, delimiter=delimiter,
                                                      start_after=marker, max_keys=max_keys))
    last = max([o.key for o in result.objects] + result.prefixes, default="")
    content: dict[str, Any] = {
        "Name": ctx.bucket, "Prefix": enc(prefix), "Marker": enc(marker),
        "NextMarker": enc(last) if result.truncated and delimiter else None,
        "MaxKeys": max_keys, "Delimiter": enc(delimiter) if delimiter else None,
        "EncodingType": q.get("encoding-type") or None, "IsTruncated": result.truncated,
        "Contents": [_entry(ctx, o, enc, True) for o in result.objects],
        "CommonPrefixes": [{"Prefix": enc(p)} for p in result.prefixes],
    }
    return xmlio.response("ListBucketResult", content)


async def list_versions(ctx: Ctx) -> web.Response:
    q, enc = ctx.query, _encoder(ctx)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    max_keys = _max_keys(ctx)
    vm = version_from(version_marker)
    page = await ctx.run(lambda: ctx.gw.client.list_versions(
        ctx.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker, version_marker=vm,
        max_keys=max_keys))
    versions, markers = [], []
    for v in page["versions"]:
        common = {"Key": enc(v.key), "VersionId": version_id(ctx, v.version, force=True), "IsLatest": v.is_latest,
                  "LastModified": xmlio.iso(v.mtime), "Owner": object_owner_xml(ctx, v)}
        if v.delete_marker:
            markers.append(common)
        else:
            versions.append({**common, "ETag": f'"{etag_of(v)}"', "Size": sse.plain_size(v),
                             "StorageClass": storage_class_of(v)})
    content: dict[str, Any] = {
        "Name": ctx.bucket, "Prefix": enc(prefix), "KeyMarker": enc(key_marker), "VersionIdMarker": version_marker,
        "MaxKeys": max_keys, "Delimiter": enc(delimiter) if delimiter else None, "IsTruncated": page["truncated"],
        "EncodingType": q.get("encoding-type") or None,
        "NextKeyMarker": enc(page["next_key_marker"]) if page["truncated"] else None,
        "NextVersionIdMarker": str(page["next_version_marker"]) if page["truncated"] else None,
        "Version": versions, "DeleteMarker": markers,
        "CommonPrefixes": [{"Prefix": enc(p)} for p in page["prefixes"]],
    }
    return xmlio.response("ListVersionsResult", content)


# -- DeleteObjects --------------------------------------------------------------------


async def delete_objects(ctx: Ctx) -> web.Response:
    doc = xmlio.parse(await xmlio.read(ctx.request), "Delete")
    items = doc.findall("Object")
    if len(items) > MAX_DELETE:
        raise S3Error("MalformedXML", f"DeleteObjects takes at most {MAX_DELETE} keys per request")
    quiet = xmlio.text(doc, "Quiet").lower() == "true"
    bypass = objectlock.bypass(ctx)

    def one(el: Any) -> dict[str, Any]:
        # The key as sent (S3 keys may end in spaces: xmlio.text strips); the version id checked as a GET's is.
        key, vid = el.findtext("Key") or "", xmlio.text(el, "VersionId")
        try:
            version = version_from(vid)
            authorize_key(ctx, key, version)
            try:
                result = ctx.gw.client.delete(ctx.bucket, key, version=version, bypass_governance=bypass)
            except grid_errors.NoSuchObject:
                result = {"version": None, "delete_marker": False}  # S3 reports a missing key as deleted
            out: dict[str, Any] = {"Key": key}
            if vid:
                out["VersionId"] = vid
            if result.get("delete_marker"):
                out.update(DeleteMarker=True, DeleteMarkerVersionId=str(result["version"]))
            return {"Deleted": out}
        except (grid_errors.GridError, ValueError, S3Error) as exc:
            err = exc if isinstance(exc, S3Error) else translate(exc)
            return {"Error": {"Key": key, "Code": err.code, "Message": err.message}}

    results = await asyncio.gather(*(ctx.run(one, item) for item in items))
    deleted = [r["Deleted"] for r in results if "Deleted" in r and not quiet]
    errors = [r["Error"] for r in results if "Error" in r]
    return xmlio.response("DeleteResult", {"Deleted": deleted, "Error": errors})


# -- ACL and CORS ---------------------------------------------------------------------


async def get_cors(ctx: Ctx) -> web.Response:
    assert ctx.container is not None
    rules = json.loads(ctx.container.properties.get(CORS_PROP) or "[]")
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist")
    return xmlio.response("CORSConfiguration", {"CORSRule": rules})


async def put_cors(ctx: Ctx) -> web.Response:
    doc = xmlio.parse(await xmlio.read(ctx.request), "CORSConfiguration")
    rules = []
    for rule in doc.findall("CORSRule"):
        parsed: dict[str, Any] = {}
        for name in ("AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader"):
            parsed[name] = [(e.text or "").strip() for e in rule.findall(name)]
        if not parsed["AllowedOrigin"] or not parsed["AllowedMethod"]:
            raise S3Error("MalformedXML", "a CORSRule needs AllowedOrigin and AllowedMethod")
        bad = set(parsed["AllowedMethod"]) - {"GET", "PUT", "POST", "DELETE", "HEAD"}
        if bad:
            raise S3Error("InvalidRequest", f"unsupported CORS method {sorted(bad)[0]}")
        if (age := xmlio.text(rule, "MaxAgeSeconds")):
            parsed["MaxAgeSeconds"] = int(age)
        if (rid := xmlio.text(rule, "ID")):
            parsed["ID"] = rid
        check_rule(parsed)
        rules.append(parsed)
    if not rules:
        raise S3Error("MalformedXML", "a CORS configuration needs at least one CORSRule")
    return await set_bucket_props(ctx, {CORS_PROP: json.dumps(rules)})
