"""Who may do what, decided on every request: its IAM action (``s3:GetObject``...), then the bucket's
policy, PublicAccessBlock, ObjectOwnership and the ACLs of the bucket and the object.

Evaluation, as AWS's: an explicit Deny of the policy refuses; else an Allow of the policy, or an ACL
grant, or an owner's implicit right, permits; else AccessDenied. The bucket owner may always read,
change and delete the policy (so that a policy denying everything can be undone), has every other
bucket right unless a Deny says otherwise, and may write and delete any object in the bucket; an
object's READ and its ACL are its owner's (the user who wrote it) to give, unless the bucket's
ObjectOwnership is BucketOwnerEnforced: then ACLs are off and the bucket owner owns every object. An owner
needs no grant on what it owns (as an AWS account needs none on its own resources): grants are for others.

This module reads ``Ctx`` and ``ContainerInfo`` objects but imports neither ``context`` nor an
operation module: ``context`` calls in here (``authorize``), so data flows one way.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from gridfs.common import errors as grid_errors
from gridfs.gateways.s3 import grants, policy
from gridfs.gateways.s3.errors import S3Error
from gridfs.gateways.s3.policy_conditions import EXISTING_TAG, REQUEST_TAG

if TYPE_CHECKING:
    from gridfs.directory.model import ContainerInfo, ObjectInfo
    from gridfs.gateways.s3.context import Ctx

# The properties context names OWNER_PROP and ACL_PROP (an object's are named as its bucket's); context imports
# this module, so they cannot come from there.
OWNER_PROP, ACL_PROP = "s3.owner", grants.ACL_PROP
TAGS_PROP = "s3.tags"  # objects.TAGS_PROP: an object's tags, JSON (objects imports this module through acl)
OWNERSHIP_PROP, PUBLIC_ACCESS_BLOCK_PROP = "s3.object-ownership", "s3.public-access-block"
ENFORCED, PREFERRED, WRITER = "BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"
OWNERSHIPS = (ENFORCED, PREFERRED, WRITER)
BLOCKS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")

# sub-resource -> IAM action of GET (and HEAD), PUT, DELETE; None: no such operation
BUCKET_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock", "PutBucketPublicAccessBlock"),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls", "PutBucketOwnershipControls"),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
    "object-lock": ("GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", None),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "notification": ("GetBucketNotification", "PutBucketNotification", None),
    "replication": ("GetReplicationConfiguration", "PutReplicationConfiguration", "PutReplicationConfiguration"),
    "requestPayment": ("GetBucketRequestPayment", "PutBucketRequestPayment", None),
    "accelerate": ("GetAccelerateConfiguration", "PutAccelerateConfiguration", None),
    "analytics": ("GetAnalyticsConfiguration", "PutAnalyticsConfiguration", "PutAnalyticsConfiguration"),
    "inventory": ("GetInventoryConfiguration", "PutInventoryConfiguration", "PutInventoryConfiguration"),
    "metrics": ("GetMetricsConfiguration", "PutMetricsConfiguration", "PutMetricsConfiguration"),
    "intelligent-tiering": ("GetIntelligentTieringConfiguration", "PutIntelligentTieringConfiguration",
                            "PutIntelligentTieringConfiguration"),
    "location": ("GetBucketLocation", None, None),
    "versions": ("ListBucketVersions", None, None),
    "uploads": ("ListBucketMultipartUploads", None, None),
}
OBJECT_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "acl": ("GetObjectAcl", "PutObjectAcl", None),
    "tagging": ("GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging"),
    "attributes": ("GetObjectAttributes", None, None),
    "retention": ("GetObjectRetention", "PutObjectRetention", None),
    "legal-hold": ("GetObjectLegalHold", "PutObjectLegalHold", None),
    "torrent": ("GetObjectTorrent", None, None),
    "uploadId": ("ListMultipartUploadParts", "PutObject", "AbortMultipartUpload"),
}
# A POST to a bucket other than DeleteObjects (decided key by key) is a browser upload: s3:PutObject, here on
# the bucket; its handler, which learns the key from the form, decides again on the object (authorize_action).
BUCKET_DEFAULTS = {"GET": "ListBucket", "HEAD": "ListBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket",
                   "POST": "PutObject"}
OBJECT_DEFAULTS = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject",
                   "POST": "PutObject"}
COLUMN = {"GET": 0, "HEAD": 0, "PUT": 1, "DELETE": 2}
# The action a versionId turns an object action into.
VERSIONED = {a: a.replace("Object", "ObjectVersion", 1) for a in (
    "GetObject", "GetObjectAcl", "PutObjectAcl", "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging",
    "DeleteObject", "GetObjectAttributes", "GetObjectTorrent")}

POLICY_ACTIONS = {"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"}
# What a bucket ACL permission gives (AWS's mapping of ACL permissions to actions).
BUCKET_ACL = {"s3:ListBucket": "READ", "s3:ListBucketVersions": "READ", "s3:ListBucketMultipartUploads": "READ",
              "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP", "s3:PutObject": "WRITE",
              "s3:DeleteObject": "WRITE", "s3:AbortMultipartUpload": "WRITE", "s3:ListMultipartUploadParts": "WRITE"}
# What an object ACL permission gives.
OBJECT_ACL = {"s3:GetObject": "READ", "s3:GetObjectVersion": "READ", "s3:GetObjectAttributes": "READ",
              "s3:GetObjectVersionAttributes": "READ", "s3:GetObjectTorrent": "READ",
              "s3:GetObjectVersionTorrent": "READ", "s3:GetObjectAcl": "READ_ACP",
              "s3:GetObjectVersionAcl": "READ_ACP", "s3:PutObjectAcl": "WRITE_ACP",
              "s3:PutObjectVersionAcl": "WRITE_ACP"}
# Object actions decided by the object's owner and ACL (so its record is read first): its owner may do them all
# without a grant, as an AWS account may on what it owns whatever its ACL. The other object actions (writes,
# deletes, uploads) are the bucket's to grant.
BY_OBJECT = set(OBJECT_ACL) | {
    "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", "s3:GetObjectRetention", "s3:GetObjectLegalHold"}
HEADER_KEYS = ("x-amz-acl", "x-amz-content-sha256", "x-amz-copy-source", "x-amz-metadata-directive",
               "x-amz-storage-class", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
               "x-amz-server-side-encryption-customer-algorithm", "x-amz-object-lock-mode",
               "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold", *grants.GRANT_HEADERS)


def denied() -> S3Error:
    return S3Error("AccessDenied", "Access Denied")


def action_of(method: str, query: dict[str, str], key: str) -> str:
    """The IAM action of a request: ``s3:ListBucket`` for GET /bucket, ``s3:PutObjectAcl`` for PUT /b/k?acl..."""
    subresources, defaults = (OBJECT_SUBRESOURCES, OBJECT_DEFAULTS) if key else (BUCKET_SUBRESOURCES,
                                                                                 BUCKET_DEFAULTS)
    column = COLUMN.get(method)
    name = next((names[column] for sub, names in subresources.items()
                 if sub in query and column is not None and names[column]), None)
    if name is None:
        name = "RestoreObject" if key and method == "POST" and "restore" in query else defaults.get(method, "")
    if key and "versionId" in query:
        name = VERSIONED.get(name, name)
    return f"s3:{name}"


@dataclass(frozen=True)
class Settings:
    """A bucket's PublicAccessBlock and ObjectOwnership."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False
    ownership: str = WRITER

    @classmethod
    def of(cls, container: ContainerInfo) -> Settings:
        props = container.properties
        block = json.loads(props.get(PUBLIC_ACCESS_BLOCK_PROP) or "{}")
        return cls(*(bool(block.get(name)) for name in BLOCKS), ownership=props.get(OWNERSHIP_PROP) or WRITER)

    @property
    def acls_off(self) -> bool:
        return self.ownership == ENFORCED


def object_owner(container: ContainerInfo, bucket_owner: str, properties: dict[str, str]) -> str:
    """Who owns an object: its writer (``s3.owner``), the bucket owner for objects written outside S3, and the
    bucket owner for every object while the bucket's ACLs are off."""
    if Settings.of(container).acls_off:
        return bucket_owner
    return properties.get(OWNER_PROP) or bucket_owner


def condition_context(ctx: Ctx) -> dict[str, list[str]]:
    """The values of the condition keys (policy.CONDITION_KEYS) a request has."""
    request, headers, query = ctx.request, ctx.headers, ctx.query
    values = {"aws:sourceip": [request.remote or ""], "aws:securetransport": ["true" if request.secure else "false"],
              "aws:principaltype": ["User" if ctx.user else "Anonymous"], "aws:epochtime": [str(int(time.time()))],
              "aws:currenttime": [str(time.time())]}
    if ctx.user is not None:
        values["aws:username"] = values["aws:userid"] = [ctx.user.name]
    if ctx.signed is not None:
        values["s3:authtype"] = ["REST-QUERY-STRING" if ctx.signed.presigned else "REST-HEADER"]
        values["s3:signatureversion"] = ["AWS" if ctx.signed.legacy_v2 else "AWS4-HMAC-SHA256"]
    for header, key in (("Referer", "aws:referer"), ("User-Agent", "aws:useragent")):
        if header in headers:
            values[key] = [headers[header]]
    for name in ("prefix", "delimiter", "max-keys"):
        if name in query:
            values[f"s3:{name}"] = [query[name]]
    if "versionId" in query:
        values["s3:versionid"] = [query["versionId"]]
    for header in HEADER_KEYS:
        if header in headers:
            values[f"s3:{header}"] = [headers[header]]
    for name, value in acl_fields(ctx).items():  # those a presigned URL carries in its query too
        values[f"s3:{name}"] = [value]
    if "x-amz-tagging" in headers:  # the tags a PutObject sets
        tags = parse_qsl(headers["x-amz-tagging"], keep_blank_values=True)
        values["s3:requestobjecttagkeys"] = [k for k, _ in tags]
        values.update({f"{REQUEST_TAG}{k.lower()}": [v] for k, v in tags})
    return values


def object_tags(ctx: Ctx, container: ContainerInfo, key: str, version: int | None) -> dict[str, list[str]]:
    """The s3:ExistingObjectTag/KEY values of an object (a blocking read: on a client thread), none when it does
    not exist; {} at once when the bucket's policy tests no object tag."""
    parsed = _stored_policy(container)
    if not key or parsed is None or not parsed.uses_object_tags:
        return {}
    try:
        info = ctx.gw.client.head(container.bucket, key, version=version)
    except (grid_errors.NoSuchObject, grid_errors.NoSuchContainer):
        return {}
    tags = json.loads(info.properties.get(TAGS_PROP) or "{}")
    return {f"{EXISTING_TAG}{k.lower()}": [v] for k, v in tags.items()}


def _stored_policy(container: ContainerInfo) -> policy.Policy | None:
    text = container.properties.get(policy.POLICY_PROP)
    return policy.stored(text, container.bucket) if text else None


def _policy_verdict(ctx: Ctx, container: ContainerInfo, owner: str, action: str, resource: str,
                    tags: dict[str, list[str]]) -> str | None:
    """The policy's verdict; ``tags``: the object's (``object_tags``), for the conditions on them."""
    parsed = _stored_policy(container)
    if parsed is None:
        return None
    user = ctx.user.name if ctx.user else None
    # RestrictPublicBuckets: while the policy is public, it opens the bucket to its owner only (AWS: to the
    # owner's account), even by its statements that name other users.
    restricted = Settings.of(container).restrict_public_buckets and parsed.public and user != owner
    return parsed.evaluate(user, action, resource, {**condition_context(ctx), **tags}, deny_only=restricted)


def _bucket_acl_allows(ctx: Ctx, container: ContainerInfo, owner: str, action: str) -> bool:
    user = ctx.user.name if ctx.user else None
    if user is not None and user == owner:
        return True
    settings = Settings.of(container)
    needed = BUCKET_ACL.get(action)
    if settings.acls_off or needed is None:
        return False
    acl = grants.load(container.properties.get(ACL_PROP), owner)
    return needed in grants.permissions(acl, user, settings.ignore_public_acls)


async def _object_acl_allows(ctx: Ctx, container: ContainerInfo, owner: str, action: str, key: str,
                             version: int | None, chunks: bool) -> tuple[bool, ObjectInfo | None]:
    """Whether the object's owner and ACL allow ``action``, and the object record read to know (None if none)."""
    user = ctx.user.name if ctx.user else None
    settings = Settings.of(container)
    if settings.acls_off:
        return user is not None and user == owner, None
    try:
        info = await ctx.run(lambda: ctx.gw.client.head(container.bucket, key, version=version, chunks=chunks))
    except (grid_errors.NoSuchObject, grid_errors.NoSuchContainer):
        # Whoever may list the bucket learns that the key is missing (the operation answers 404); the others not.
        return _bucket_acl_allows(ctx, container, owner, "s3:ListBucket"), None
    owned_by = object_owner(container, owner, info.properties)
    needed = OBJECT_ACL.get(action)
    acl = grants.load(info.properties.get(ACL_PROP), owned_by)
    allowed = (user is not None and user == owned_by) or (
        needed is not None and needed in grants.permissions(acl, user, settings.ignore_public_acls))
    return allowed, info


def _check_expected_owner(ctx: Ctx, header: str, owner: str) -> None:
    """``x-amz-expected-bucket-owner`` (and its copy source twin): the request is meant for a bucket of that
    owner only, so that a bucket deleted and made again by someone else never receives its data."""
    expected = ctx.headers.get(header)
    if expected is not None and expected != owner:
        raise denied()


def version_named(query: dict[str, str]) -> int | None:
    """The version an object request names, for reading its ACL; a malformed one is the operation's to refuse
    (objects.version_from), before anything is read."""
    vid = query.get("versionId", "")
    return int(vid) if vid.isascii() and vid.isdigit() and len(vid) <= 19 and int(vid) < 2**63 else None


async def authorize(ctx: Ctx, container: ContainerInfo, owner: str) -> None:
    """Let the request through or raise AccessDenied. ``owner``: the bucket's owner ("" for nobody)."""
    _check_expected_owner(ctx, "x-amz-expected-bucket-owner", owner)
    if not ctx.key and ctx.request.method == "POST" and "delete" in ctx.query:
        return  # DeleteObjects: each key is decided apart (authorize_key)
    action = action_of(ctx.request.method, ctx.query, ctx.key)
    # A GetObject keeps the record read to decide, chunks and all, for the operation to serve: the version whose
    # ACL was checked, not one written since (and one directory lookup, not two).
    reads = action in ("s3:GetObject", "s3:GetObjectVersion")
    checked = await authorize_action(ctx, container, owner, action, ctx.key, version_named(ctx.query), chunks=reads)
    if reads:
        ctx.object_info = checked


async def authorize_action(ctx: Ctx, container: ContainerInfo, owner: str, action: str, key: str = "",
                           version: int | None = None, chunks: bool = False) -> ObjectInfo | None:
    """Raise AccessDenied unless ``action`` on ``container`` (and its object ``key``) is allowed to the request's
    user: a copy's source is read with s3:GetObject this way. Answers the object record its ACL was read from
    (with its chunks if asked), None when the decision needed none."""
    user = ctx.user.name if ctx.user else None
    if action in POLICY_ACTIONS and user is not None and user == owner:
        return None
    resource = f"{container.bucket}/{key}" if key else container.bucket
    parsed = _stored_policy(container)
    tags = await ctx.run(object_tags, ctx, container, key, version) if parsed and parsed.uses_object_tags else {}
    verdict = _policy_verdict(ctx, container, owner, action, resource, tags)
    if verdict == "Deny":
        raise denied()
    if verdict == "Allow":
        return None
    if key and action in BY_OBJECT:
        allowed, info = await _object_acl_allows(ctx, container, owner, action, key, version, chunks)
    else:
        allowed, info = _bucket_acl_allows(ctx, container, owner, action), None
    if not allowed:
        raise denied()
    return info


async def authorize_source(ctx: Ctx, container: ContainerInfo, owner: str, key: str,
                           version: int | None) -> ObjectInfo | None:
    """A copy's source (CopyObject, UploadPartCopy): s3:GetObject on it, as ``authorize_action``."""
    _check_expected_owner(ctx, "x-amz-source-expected-bucket-owner", owner)
    action = "s3:GetObjectVersion" if version is not None else "s3:GetObject"
    return await authorize_action(ctx, container, owner, action, key, version)


def authorize_key(ctx: Ctx, container: ContainerInfo, owner: str, key: str, version: int | None) -> None:
    """DeleteObjects, one key: s3:DeleteObject (s3:DeleteObjectVersion with a version), as DeleteObject is."""
    action = "s3:DeleteObjectVersion" if version is not None else "s3:DeleteObject"
    tags = object_tags(ctx, container, key, version)  # DeleteObjects runs its keys on client threads
    verdict = _policy_verdict(ctx, container, owner, action, f"{container.bucket}/{key}", tags)
    if verdict == "Deny" or (verdict is None and not _bucket_acl_allows(ctx, container, owner, action)):
        raise denied()


# -- users named by ACLs and policies ---------------------------------------------------------------------------

_known_users: set[str] = set()  # the S3 user names seen in the user store, refreshed when a name is not among them


async def unknown_users(ctx: Ctx, names: set[str]) -> set[str]:
    """Which of ``names`` are no S3 user: an ACL or policy naming one is refused (AWS: Invalid id, Invalid
    principal), so that a typo never leaves a grant or a Deny that applies to no one. The store is read again
    only when a name is missing from what was seen, so a user created meanwhile is found."""
    missing = names - _known_users
    if missing:
        users = await ctx.run(ctx.gw.users.list)
        _known_users.update(u.name for u in users)
        missing -= _known_users
    return missing


# -- ACLs being set ---------------------------------------------------------------------------------------------


def acl_fields(ctx: Ctx) -> dict[str, str]:
    """``x-amz-acl`` and ``x-amz-grant-*`` as the request sends them (lower-case names): in headers, or in the
    query of a presigned URL, where SigV4 presigners put them (signed like the rest of the query)."""
    fields = {k.lower(): v for k, v in ctx.headers.items() if k.lower() == "x-amz-acl" or k.lower() in
              grants.GRANT_HEADERS}
    if ctx.signed is not None and ctx.signed.presigned:
        for k, v in ctx.query.items():
            if k.lower() == "x-amz-acl" or k.lower() in grants.GRANT_HEADERS:
                fields.setdefault(k.lower(), v)
    return fields


def requested_acl(ctx: Ctx, owner: str, bucket_owner: str, on_object: bool) -> list[grants.Grant] | None:
    """The ACL a request sets by ``x-amz-acl`` or ``x-amz-grant-*`` (None with neither)."""
    fields = acl_fields(ctx)
    canned = fields.get("x-amz-acl")
    explicit = grants.from_headers(fields)
    if canned is not None and explicit is not None:
        raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        return grants.canned(canned.strip(), owner, bucket_owner, on_object)
    return explicit


def check_new_acl(container: ContainerInfo, owner: str, acl: list[grants.Grant]) -> None:
    """An ACL about to be set on ``container`` or one of its objects (owned by ``owner``): refused when the
    bucket's ACLs are off (unless it gives the owner, then the bucket owner, alone full control) or when the
    bucket blocks public ACLs and it is public."""
    settings = Settings.of(container)
    if settings.acls_off and not grants.only_owner(acl, owner):
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")
    if settings.block_public_acls and grants.public(acl):
        raise denied()


def new_object_acl(ctx: Ctx, container: ContainerInfo, owner: str) -> dict[str, str]:
    """The owner and ACL properties of an object being written (PutObject, CopyObject, CreateMultipartUpload).

    Its owner is its writer, but the bucket owner when ACLs are off, or when the bucket prefers it and the
    writer gives it full control (bucket-owner-full-control); an anonymous writer's object is the bucket
    owner's. Its ACL is the one the request sets, else private."""
    writer = ctx.user.name if ctx.user else owner
    settings = Settings.of(container)
    given = acl_fields(ctx).get("x-amz-acl", "").strip() == "bucket-owner-full-control"
    owned_by = owner if settings.acls_off or (settings.ownership == PREFERRED and given) else writer
    acl = requested_acl(ctx, owned_by, owner, on_object=True) or grants.canned("private", owned_by)
    check_new_acl(container, owned_by, acl)
    return {OWNER_PROP: owned_by, ACL_PROP: grants.dump(acl)}


def check_enforceable(acl: list[grants.Grant], owner: str) -> None:
    """A bucket's ACL must give its owner alone full control before its ACLs may be turned off."""
    if not grants.only_owner(acl, owner):
        raise S3Error("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with ObjectOwnership's "
                      "BucketOwnerEnforced setting")


def new_bucket_acl(ctx: Ctx, owner: str) -> dict[str, str]:
    """The ACL and ObjectOwnership properties of a bucket being created by ``owner``."""
    ownership = ctx.headers.get("x-amz-object-ownership", "").strip()
    if ownership and ownership not in OWNERSHIPS:
        raise S3Error("InvalidArgument", f"Invalid x-amz-object-ownership header: one of {', '.join(OWNERSHIPS)}",
                      ArgumentName="x-amz-object-ownership", ArgumentValue=ownership)
    acl = requested_acl(ctx, owner, owner, on_object=False) or grants.canned("private", owner)
    if ownership == ENFORCED:
        check_enforceable(acl, owner)
    props = {ACL_PROP: grants.dump(acl)}
    if ownership:
        props[OWNERSHIP_PROP] = ownership
    return props
