"""Bucket policies: the JSON policy language, checked when it is put and evaluated on every request.

A policy is a ``Version`` and ``Statement`` list; each statement has an ``Effect`` (Allow, Deny), a
``Principal`` or ``NotPrincipal`` (``"*"``, or S3 user names: ``{"AWS": ["bob", "arn:aws:iam::bob:root"]}``),
an ``Action`` or ``NotAction`` (``s3:GetObject``, ``s3:Get*``, ``s3:*``), a ``Resource`` or ``NotResource``
(``arn:aws:s3:::bucket``, ``arn:aws:s3:::bucket/home/${aws:username}/*``) and an optional ``Condition``. Everything is
checked when the policy is put, so that a statement never silently fails to apply: an unknown action,
operator or condition key, a resource of another bucket or an action that applies to none of the
statement's resources is MalformedPolicy, with the reason.

``evaluate`` answers "Deny" when a Deny statement matches, else "Allow" when an Allow one does, else
None (the ACLs decide). Pure: no I/O, no request objects.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from gridfs.gateways.s3.policy_conditions import (
    EXISTING_TAG,
    PINNING_KEYS,
    Condition,
    check_variables,
    expand,
    malformed,
    parse_conditions,
    wildcard,
)

POLICY_PROP = "s3.policy"
MAX_POLICY_BYTES = 20 * 1024  # AWS's limit on a bucket policy
VERSIONS = ("2012-10-17", "2008-10-17")
ARN_PREFIX = "arn:aws:s3:::"
USER_RE = re.compile(r"[A-Za-z0-9_.@+=-]{1,64}\Z")  # S3 user names (users.NAME_RE)
IAM_ARN_RE = re.compile(r"arn:aws:iam::([A-Za-z0-9_.@+=-]{1,64}):(?:root|user/([A-Za-z0-9_.@+=-]{1,64}))\Z")

# IAM action names of S3, without the "s3:" prefix: those whose resource is a bucket, those whose resource is an
# object. Actions of features this gateway has not (yet) are listed too: a policy may name them.
BUCKET_ACTIONS = frozenset({
    "CreateBucket", "DeleteBucket", "ListBucket", "ListBucketVersions", "ListBucketMultipartUploads",
    "GetBucketLocation", "GetBucketVersioning", "PutBucketVersioning", "GetBucketAcl", "PutBucketAcl",
    "GetBucketCORS", "PutBucketCORS", "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy",
    "GetBucketPolicyStatus", "GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
    "GetBucketOwnershipControls", "PutBucketOwnershipControls", "GetBucketTagging", "PutBucketTagging",
    "GetLifecycleConfiguration", "PutLifecycleConfiguration", "GetEncryptionConfiguration",
    "PutEncryptionConfiguration", "GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration",
    "GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite", "GetBucketLogging", "PutBucketLogging",
    "GetBucketNotification", "PutBucketNotification", "GetReplicationConfiguration", "PutReplicationConfiguration",
    "GetBucketRequestPayment", "PutBucketRequestPayment", "GetAccelerateConfiguration", "PutAccelerateConfiguration",
    "GetAnalyticsConfiguration", "PutAnalyticsConfiguration", "GetInventoryConfiguration",
    "PutInventoryConfiguration", "GetMetricsConfiguration", "PutMetricsConfiguration",
    "GetIntelligentTieringConfiguration", "PutIntelligentTieringConfiguration",
})
OBJECT_ACTIONS = frozenset({
    "GetObject", "GetObjectVersion", "PutObject", "DeleteObject", "DeleteObjectVersion", "GetObjectAcl",
    "GetObjectVersionAcl", "PutObjectAcl", "PutObjectVersionAcl", "GetObjectTagging", "GetObjectVersionTagging",
    "PutObjectTagging", "PutObjectVersionTagging", "DeleteObjectTagging", "DeleteObjectVersionTagging",
    "GetObjectAttributes", "GetObjectVersionAttributes", "AbortMultipartUpload", "ListMultipartUploadParts",
    "GetObjectRetention", "PutObjectRetention", "GetObjectLegalHold", "PutObjectLegalHold",
    "BypassGovernanceRetention", "RestoreObject", "GetObjectTorrent", "GetObjectVersionTorrent",
    "ReplicateObject", "ReplicateDelete", "ReplicateTags", "ObjectOwnerOverrideToBucketOwner",
})
ALL_ACTIONS = tuple(f"s3:{a}" for a in sorted(BUCKET_ACTIONS | OBJECT_ACTIONS))


@dataclass(frozen=True)
class Statement:
    allow: bool
    principals: frozenset[str] | None  # user names, or "*"; None: NotPrincipal is used
    not_principals: frozenset[str] | None
    actions: tuple[str, ...] | None  # patterns; None: NotAction is used
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None  # patterns without the "arn:aws:s3:::" prefix
    not_resources: tuple[str, ...] | None
    conditions: tuple[Condition, ...] = field(default=())
    variables: bool = False  # resources may hold policy variables

    def applies(self, principal: str | None, action: str, resource: str, context: dict[str, list[str]]) -> bool:
        if self.principals is not None:
            if "*" not in self.principals and (principal is None or principal not in self.principals):
                return False
        elif self.not_principals is not None and ("*" in self.not_principals or principal in self.not_principals):
            return False
        if not (_any_action(self.actions, action) if self.actions is not None
                else not _any_action(self.not_actions or (), action)):
            return False
        variables = context if self.variables else None
        if not (_any_resource(self.resources, resource, variables) if self.resources is not None
                else not _any_resource(self.not_resources or (), resource, variables)):
            return False
        return all(c.holds(context) for c in self.conditions)

    @property
    def public(self) -> bool:
        """An Allow to anyone at all, not pinned by a condition on who or where the caller is."""
        everyone = self.not_principals is not None or (self.principals is not None and "*" in self.principals)
        pinned = any(c.key in PINNING_KEYS and c.operator in ("IpAddress", "StringEquals") and not c.if_exists
                     and not any(v in ("*", "0.0.0.0/0", "::/0") for v in c.values) for c in self.conditions)
        return self.allow and everyone and not pinned


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    def evaluate(self, principal: str | None, action: str, resource: str,
                 context: dict[str, list[str]], deny_only: bool = False) -> str | None:
        """"Deny", "Allow" or None for ``principal`` (a user name, None when anonymous) doing ``action``
        (``s3:GetObject``) on ``resource`` (``bucket`` or ``bucket/key``). ``deny_only``: Allow statements
        count for nothing (RestrictPublicBuckets, for a public policy and a caller other than the owner)."""
        verdict = None
        for s in self.statements:
            if s.applies(principal, action, resource, context):
                if not s.allow:
                    return "Deny"
                if not deny_only:
                    verdict = "Allow"
        return verdict

    @property
    def public(self) -> bool:
        return any(s.public for s in self.statements)

    @property
    def uses_object_tags(self) -> bool:
        """Whether a condition tests the tags of the object acted on (which are then read to evaluate it)."""
        return any(c.key.startswith(EXISTING_TAG) for s in self.statements for c in s.conditions)

    @property
    def users(self) -> set[str]:
        """The user names its principals name ("*" aside)."""
        return {name for s in self.statements for names in (s.principals, s.not_principals) if names
                for name in names if name != "*"}


def _any_action(patterns: tuple[str, ...], action: str) -> bool:
    return any(wildcard(p, action, fold=True) for p in patterns)


def _any_resource(patterns: tuple[str, ...], resource: str, variables: dict[str, list[str]] | None) -> bool:
    expanded = (expand(p, variables) for p in patterns)
    return any(e is not None and wildcard(e, resource) for e in expanded)


# -- parsing and checking ---------------------------------------------------------------------------------------


def _list(value: Any, what: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise malformed(f"{what} must be a non-empty string or a list of non-empty strings")
    return items


def _principals(value: Any) -> frozenset[str]:
    if value == "*":
        return frozenset({"*"})
    if not isinstance(value, dict) or not value:
        raise malformed('Invalid principal in policy: "*" or {"AWS": [...]} expected')
    names = set()
    for kind, ids in value.items():
        if kind not in ("AWS", "CanonicalUser"):
            raise malformed(f"Invalid principal in policy: {kind!r} principals are not known here")
        for ident in _list(ids, "a principal"):
            if ident == "*" or USER_RE.match(ident):
                names.add(ident)
            elif (m := IAM_ARN_RE.match(ident)) and kind == "AWS":
                names.add(m.group(2) or m.group(1))
            else:
                raise malformed(f"Invalid principal in policy: {ident!r}")
    return frozenset(names)


def _actions(value: Any) -> tuple[str, ...]:
    patterns = tuple(_list(value, "Action"))
    for p in patterns:
        if p != "*" and not (p.lower().startswith("s3:") and any(_any_action((p,), a) for a in ALL_ACTIONS)):
            raise malformed(f"Policy has invalid action: {p!r}")
    return patterns


def _resources(value: Any, bucket: str, variables: bool) -> tuple[str, ...]:
    out = []
    for arn in _list(value, "Resource"):
        if variables:
            check_variables(arn)
        if arn == "*":
            out.append("*")
            continue
        name = arn[len(ARN_PREFIX):] if arn.startswith(ARN_PREFIX) else ""
        if not name or not wildcard(name.split("/", 1)[0], bucket):
            raise malformed(f"Policy has an invalid resource: {arn!r} is not this bucket or its objects")
        out.append(name)
    return tuple(out)


STATEMENT_FIELDS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                    "NotResource", "Condition"}


def _one_of(raw: dict[str, Any], name: str) -> tuple[Any, Any]:
    if (name in raw) == (f"Not{name}" in raw):
        raise malformed(f"a statement needs exactly one of {name} and Not{name}")
    return raw.get(name), raw.get(f"Not{name}")


def _statement(raw: Any, bucket: str, variables: bool) -> Statement:
    if not isinstance(raw, dict):
        raise malformed("each Statement must be an object")
    if unknown := set(raw) - STATEMENT_FIELDS:
        raise malformed(f"Unknown field {sorted(unknown)[0]} in a statement")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise malformed("Invalid effect: Effect must be Allow or Deny")
    if "Sid" in raw and not (isinstance(raw["Sid"], str) and re.fullmatch(r"[A-Za-z0-9 _.-]*", raw["Sid"])):
        raise malformed("Sid must be a string of letters, digits, spaces, '_', '.' and '-'")
    principal, not_principal = _one_of(raw, "Principal")
    action, not_action = _one_of(raw, "Action")
    resource, not_resource = _one_of(raw, "Resource")
    statement = Statement(
        allow=raw["Effect"] == "Allow",
        principals=_principals(principal) if principal is not None else None,
        not_principals=_principals(not_principal) if not_principal is not None else None,
        actions=_actions(action) if action is not None else None,
        not_actions=_actions(not_action) if not_action is not None else None,
        resources=_resources(resource, bucket, variables) if resource is not None else None,
        not_resources=_resources(not_resource, bucket, variables) if not_resource is not None else None,
        conditions=parse_conditions(raw.get("Condition", {}), variables),
        variables=variables,
    )
    if statement.actions is not None and statement.resources is not None:
        _check_applies(statement.actions, statement.resources)
    return statement


def _check_applies(actions: tuple[str, ...], resources: tuple[str, ...]) -> None:
    """Every action must apply to one of the resources: s3:GetObject on ``arn:aws:s3:::b`` alone never would."""
    on_objects = any("/" in r or r == "*" or r.endswith("*") for r in resources)
    on_bucket = any("/" not in r for r in resources)
    for pattern in actions:
        named = [a[3:] for a in ALL_ACTIONS if _any_action((pattern,), a)]
        if not any((a in OBJECT_ACTIONS and on_objects) or (a in BUCKET_ACTIONS and on_bucket) for a in named):
            raise malformed(f"Action does not apply to any resource(s) in statement: {pattern!r}")


def parse(text: str, bucket: str) -> Policy:
    """A policy document as sent to PutBucketPolicy, checked throughout; MalformedPolicy with a reason."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise malformed(f"Policies must be at most 20 KB ({MAX_POLICY_BYTES} bytes)")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise malformed(f"Policies must be valid JSON: {exc}") from exc
    except RecursionError as exc:  # "[[[[...": the parser's recursion, not the gateway, gives up
        raise malformed("Policies must be valid JSON: too deeply nested") from exc
    if not isinstance(doc, dict):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    if unknown := set(doc) - {"Version", "Id", "Statement"}:
        raise malformed(f"Unknown field {sorted(unknown)[0]} in the policy")
    version = doc.get("Version", VERSIONS[1])
    if version not in VERSIONS:
        raise malformed(f"The policy Version must be one of {', '.join(VERSIONS)}")
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise malformed("Missing required field Statement: a list of at least one statement")
    return Policy(tuple(_statement(s, bucket, version == VERSIONS[0]) for s in statements))


@functools.lru_cache(maxsize=256)
def stored(text: str, bucket: str) -> Policy:
    """A bucket's policy as kept in its properties (checked when put), parsed once per gateway process."""
    return parse(text, bucket)
