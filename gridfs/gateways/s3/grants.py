"""Access control lists: grants of READ, WRITE, READ_ACP, WRITE_ACP and FULL_CONTROL to S3 users
(canonical id = user name) and to the groups AllUsers and AuthenticatedUsers, from a canned ACL, the
``x-amz-grant-*`` headers or an AccessControlPolicy document; kept as JSON in the ``s3.acl`` property of
a bucket or an object. Pure: no I/O, no request objects.

A bucket's ``s3.acl`` may still hold a bare canned name (``private``, ``public-read``), as buckets made
before grants existed do: it is read as that canned ACL of the bucket's owner.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from gridfs.gateways.s3.errors import S3Error

ACL_PROP = "s3.acl"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"  # no one belongs to it here
GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
PUBLIC_GROUPS = (ALL_USERS, AUTHENTICATED_USERS)
PERMISSIONS = ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_GRANTS = 100  # AWS's limit on an ACL
USER_ID_RE = re.compile(r"[A-Za-z0-9_.@+=-]{1,64}\Z")  # S3 user names (users.NAME_RE)
GRANT_HEADERS = {f"x-amz-grant-{p.lower().replace('_', '-')}": p for p in PERMISSIONS}
GRANT_ITEM_RE = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,"\s]+))\s*(?:,|\Z)')
# Canned ACLs: what each adds to the owner's FULL_CONTROL. "bucket-owner-*" name the bucket owner and mean
# something on objects only; aws-exec-read is private here (it grants EC2, which there is none of).
CANNED = {
    "private": (),
    "public-read": (("uri", ALL_USERS, "READ"),),
    "public-read-write": (("uri", ALL_USERS, "READ"), ("uri", ALL_USERS, "WRITE")),
    "authenticated-read": (("uri", AUTHENTICATED_USERS, "READ"),),
    "log-delivery-write": (("uri", LOG_DELIVERY, "WRITE"), ("uri", LOG_DELIVERY, "READ_ACP")),
    "bucket-owner-read": (("bucket-owner", "", "READ"),),
    "bucket-owner-full-control": (("bucket-owner", "", "FULL_CONTROL"),),
    "aws-exec-read": (),
}

Grant = tuple[str, str, str]  # ("id", user name, permission) or ("uri", group URI, permission)


def canned(name: str, owner: str, bucket_owner: str = "", on_object: bool = False) -> list[Grant]:
    """The grants of a canned ACL for an ``owner`` (and, for objects, a ``bucket_owner``)."""
    if name not in CANNED:
        raise S3Error("InvalidArgument", f"unknown canned ACL {name!r}: one of {', '.join(CANNED)}",
                      ArgumentName="x-amz-acl", ArgumentValue=name)
    grants: list[Grant] = [("id", owner, "FULL_CONTROL")] if owner else []
    for kind, who, permission in CANNED[name]:
        if kind != "bucket-owner":
            grants.append((kind, who, permission))
        elif on_object and bucket_owner and bucket_owner != owner:
            grants.append(("id", bucket_owner, permission))
    return grants


def _grantee(kind: str, value: str) -> tuple[str, str]:
    if kind == "id":
        if not USER_ID_RE.match(value):
            raise S3Error("InvalidArgument", f"Invalid id: {value!r} is no user's canonical id", ArgumentName="id",
                          ArgumentValue=value)
        return "id", value
    if kind == "uri":
        if value not in GROUPS:
            raise S3Error("InvalidArgument", f"Invalid group uri {value!r}: one of {', '.join(GROUPS)}",
                          ArgumentName="uri", ArgumentValue=value)
        return "uri", value
    if kind.lower() == "emailaddress":
        raise S3Error("UnresolvableGrantByEmailAddress", "Grants by e-mail address are not supported: name the "
                      "user by its canonical id (id=NAME)")
    raise S3Error("InvalidArgument", f"unknown grantee type {kind!r}: id, uri or emailAddress",
                  ArgumentName="grantee", ArgumentValue=kind)


def from_headers(headers: Mapping[str, str]) -> list[Grant] | None:
    """The grants of ``x-amz-grant-*`` headers (``id="bob", uri="http://..."``), None when there are none."""
    grants: list[Grant] = []
    found = False
    for name, value in headers.items():
        permission = GRANT_HEADERS.get(name.lower())
        if permission is None:
            continue
        found = True
        pos = 0
        while pos < len(value):
            m = GRANT_ITEM_RE.match(value, pos)
            if m is None or m.end() == pos:
                raise S3Error("InvalidArgument", f"malformed grant header {name}: {value!r}", ArgumentName=name)
            grants.append((*_grantee(m.group(1), m.group(2) if m.group(2) is not None else m.group(3)), permission))
            pos = m.end()
        if not value.strip():
            raise S3Error("InvalidArgument", f"empty grant header {name}", ArgumentName=name)
    if len(grants) > MAX_GRANTS:
        raise S3Error("InvalidArgument", f"an ACL holds at most {MAX_GRANTS} grants")
    return _unique(grants) if found else None


def from_document(doc: ET.Element, owner: str) -> list[Grant]:
    """The grants of an AccessControlPolicy element (namespaces stripped); its Owner, if named, must be ``owner``."""
    named = (doc.findtext("Owner/ID") or "").strip()
    if named and named != owner:
        raise S3Error("AccessDenied", "The owner of a bucket or object cannot be changed by its ACL")
    acl = doc.find("AccessControlList")
    if acl is None:
        raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate against "
                      "our published schema: an AccessControlList is required")
    grants: list[Grant] = []
    for grant in acl.findall("Grant"):
        grantee, permission = grant.find("Grantee"), (grant.findtext("Permission") or "").strip()
        if grantee is None or permission not in PERMISSIONS:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          f"against our published schema: a Grant needs a Grantee and one of {', '.join(PERMISSIONS)}")
        kind = next((v for k, v in grantee.attrib.items() if k.rsplit("}", 1)[-1] == "type"), "")
        if grantee.find("EmailAddress") is not None or kind == "AmazonCustomerByEmail":
            _grantee("emailAddress", "")
        if (uri := grantee.findtext("URI")) is not None:
            grants.append((*_grantee("uri", uri.strip()), permission))
        elif (ident := grantee.findtext("ID")) is not None:
            grants.append((*_grantee("id", ident.strip()), permission))
        else:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          "against our published schema: a Grantee needs an ID or a URI")
    if len(grants) > MAX_GRANTS:
        raise S3Error("InvalidArgument", f"an ACL holds at most {MAX_GRANTS} grants")
    return _unique(grants)


def _unique(grants: list[Grant]) -> list[Grant]:
    return list(dict.fromkeys(grants))


def dump(grants: list[Grant]) -> str:
    return json.dumps([list(g) for g in grants])


def load(value: str | None, owner: str) -> list[Grant]:
    """The grants kept in an ``s3.acl`` property: JSON, a canned name of old, or nothing (private)."""
    if value and value.startswith("["):
        return [(str(k), str(w), str(p)) for k, w, p in json.loads(value)]
    return canned(value if value in CANNED else "private", owner)


def permissions(grants: list[Grant], user: str | None, ignore_public: bool = False) -> set[str]:
    """What ``user`` (None: anonymous) is granted; FULL_CONTROL stands for every permission."""
    out = set()
    for kind, who, permission in grants:
        if kind == "id":
            hit = user is not None and who == user
        else:
            hit = not ignore_public and (who == ALL_USERS or (who == AUTHENTICATED_USERS and user is not None))
        if hit:
            out.update(PERMISSIONS if permission == "FULL_CONTROL" else (permission,))
    return out


def public(grants: list[Grant]) -> bool:
    return any(kind == "uri" and who in PUBLIC_GROUPS for kind, who, _ in grants)


def only_owner(grants: list[Grant], owner: str) -> bool:
    """True for the owner's FULL_CONTROL alone: the one ACL a bucket whose owner owns every object takes."""
    return set(grants) <= {("id", owner, "FULL_CONTROL")}


def owner_element(name: str) -> dict[str, str]:
    return {"ID": name, "DisplayName": name}


def document(owner: str, grants: list[Grant]) -> dict[str, Any]:
    """An AccessControlPolicy for ``xmlio.response``, the grantee types as ``xsi:type`` attributes."""
    def grantee(kind: str, who: str) -> dict[str, Any]:
        if kind == "uri":
            return {"@xmlns:xsi": XSI, "@xsi:type": "Group", "URI": who}
        return {"@xmlns:xsi": XSI, "@xsi:type": "CanonicalUser", **owner_element(who)}

    return {"Owner": owner_element(owner),
            "AccessControlList": {"Grant": [{"Grantee": grantee(k, w), "Permission": p} for k, w, p in grants]}}
