"""Conditions of bucket policies: the operators (String, Numeric, Date, Bool, IpAddress, Null, with IfExists and
ForAnyValue/ForAllValues), the condition keys the gateway fills in, policy variables, and the wildcard
matching policies use (``*`` and ``?``), checked when a policy is put and evaluated on every request.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gridfs.gateways.s3.errors import S3Error


def malformed(reason: str) -> S3Error:
    return S3Error("MalformedPolicy", reason)


# Condition keys the gateway fills in (lower case: keys are case-insensitive). Any other key is refused: a
# key never present would make an Allow never apply and, worse, a Deny never apply.
CONDITION_KEYS = frozenset({
    "aws:sourceip", "aws:securetransport", "aws:username", "aws:userid", "aws:principaltype", "aws:referer",
    "aws:useragent", "aws:epochtime", "aws:currenttime", "s3:prefix", "s3:delimiter", "s3:max-keys",
    "s3:x-amz-acl", "s3:versionid", "s3:x-amz-content-sha256", "s3:x-amz-copy-source", "s3:x-amz-metadata-directive",
    "s3:x-amz-storage-class",
    "s3:x-amz-grant-read", "s3:x-amz-grant-write", "s3:x-amz-grant-read-acp", "s3:x-amz-grant-write-acp",
    "s3:x-amz-grant-full-control", "s3:authtype", "s3:signatureversion", "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id", "s3:x-amz-server-side-encryption-customer-algorithm",
    "s3:x-amz-object-lock-mode", "s3:x-amz-object-lock-retain-until-date", "s3:x-amz-object-lock-legal-hold",
    "s3:requestobjecttagkeys",
})
# Keys named after a tag: the tags of the object a request acts on, those it sets (x-amz-tagging).
EXISTING_TAG, REQUEST_TAG = "s3:existingobjecttag/", "s3:requestobjecttag/"
# Policy variables (``${aws:username}``) a 2012-10-17 policy may use in resources and string conditions: those
# whose values hold no wildcard character. A 2008-10-17 policy (the default Version) reads "${" literally.
VARIABLE_RE = re.compile(r"\$\{([^}]*)\}")
VARIABLE_KEYS = ("aws:username", "aws:userid", "aws:principaltype")
# Keys that pin a statement to known callers: an Allow to "*" conditioned on one of them is not public.
PINNING_KEYS = frozenset({"aws:sourceip", "aws:username", "aws:userid"})


def _strings(values: list[str], wanted: list[str], fold: bool) -> bool:
    if fold:
        return any(v.lower() == w.lower() for v in values for w in wanted)
    return any(v == w for v in values for w in wanted)


def _like(values: list[str], wanted: list[str]) -> bool:
    return any(wildcard(w, v) for v in values for w in wanted)


def _timestamp(value: str) -> float:
    """A date of a policy (ISO 8601, UTC unless it says otherwise) or of the request (epoch seconds)."""
    try:
        return float(value)
    except ValueError:
        when = datetime.fromisoformat(value)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _ordered(convert: Callable[[str], float], test: Callable[[float, float], bool]) -> Callable[
        [list[str], list[str]], bool]:
    """A Numeric or Date operator: the request's values and the statement's as numbers, compared by ``test``."""
    def match(values: list[str], wanted: list[str]) -> bool:
        for v in values:
            try:
                number = convert(v)
            except ValueError:
                continue
            if any(test(number, convert(w)) for w in wanted):
                return True
        return False

    return match


def _ip(values: list[str], wanted: list[str]) -> bool:
    for v in values:
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:  # a dual-stack socket's IPv4 client
            address = address.ipv4_mapped
        if any(address.version == (net := ipaddress.ip_network(w, strict=False)).version and address in net
               for w in wanted):
            return True
    return False


def _bool(values: list[str], wanted: list[str]) -> bool:
    return any(v.lower() == w.lower() for v in values for w in wanted)


# operator -> (test of the request's values against the statement's, negated, value checker)
OPERATORS: dict[str, tuple[Callable[[list[str], list[str]], bool], bool, str]] = {
    "StringEquals": (lambda v, w: _strings(v, w, False), False, "string"),
    "StringNotEquals": (lambda v, w: _strings(v, w, False), True, "string"),
    "StringEqualsIgnoreCase": (lambda v, w: _strings(v, w, True), False, "string"),
    "StringNotEqualsIgnoreCase": (lambda v, w: _strings(v, w, True), True, "string"),
    "StringLike": (_like, False, "string"),
    "StringNotLike": (_like, True, "string"),
    **{f"{kind}{name}": (_ordered(convert, test), negated, kind.lower())
       for kind, convert in (("Numeric", float), ("Date", _timestamp))
       for name, test, negated in (("Equals", operator.eq, False), ("NotEquals", operator.eq, True),
                                   ("LessThan", operator.lt, False), ("LessThanEquals", operator.le, False),
                                   ("GreaterThan", operator.gt, False), ("GreaterThanEquals", operator.ge, False))},
    "Bool": (_bool, False, "bool"),
    "IpAddress": (_ip, False, "ip"),
    "NotIpAddress": (_ip, True, "ip"),
    "Null": (lambda v, w: False, False, "bool"),  # evaluated apart: it tests the key's presence
}


@functools.lru_cache(maxsize=4096)
def _pieces(pattern: str, fold: bool) -> tuple[tuple[int, re.Pattern[str]], ...]:
    """The runs between a pattern's ``*``: each its length and a regular expression (``?`` any character)."""
    flags = re.DOTALL | (re.IGNORECASE if fold else 0)
    return tuple((len(run), re.compile("".join("." if c == "?" else re.escape(c) for c in run), flags))
                 for run in pattern.split("*"))


def wildcard(pattern: str, text: str, fold: bool = False) -> bool:
    """Whether ``text`` matches ``pattern``: ``*`` any run of characters, ``?`` one, the rest literal.

    Not a regular expression ``.*a.*a...``, whose backtracking on a pattern of many ``*`` (a policy may hold
    20 KB of them) and a long key would hold the gateway for hours: the first run must start the text, the
    last end it, and each run between is found leftmost after the one before (which leaves the most room to
    the rest), so the cost is that of a few searches."""
    pieces = _pieces(pattern, fold)
    if len(pieces) == 1:
        return pieces[0][1].fullmatch(text) is not None
    (head, head_re), (tail, tail_re) = pieces[0], pieces[-1]
    end = len(text) - tail
    if end < head or not head_re.fullmatch(text, 0, head) or not tail_re.fullmatch(text, end):
        return False
    pos = head
    for _, piece in pieces[1:-1]:
        found = piece.search(text, pos, end)
        if found is None:
            return False
        pos = found.end()
    return True


def expand(pattern: str, context: dict[str, list[str]] | None) -> str | None:
    """A pattern with its policy variables replaced by the request's values (``context`` None: no variables);
    None when one has no value (anonymous: no aws:username), so that it matches nothing."""
    if context is None or "${" not in pattern:
        return pattern
    missing = False

    def value(m: re.Match[str]) -> str:
        nonlocal missing
        found = context.get(m.group(1).strip().lower())
        missing = missing or not found
        return found[0] if found else ""

    expanded = VARIABLE_RE.sub(value, pattern)
    return None if missing else expanded


def check_variables(text: str) -> None:
    for m in VARIABLE_RE.finditer(text):
        if m.group(1).strip().lower() not in VARIABLE_KEYS:
            raise malformed(f"Policy has an invalid policy variable {m.group(0)!r}: {', '.join(VARIABLE_KEYS)} only")


@dataclass(frozen=True)
class Condition:
    operator: str  # the base operator (OPERATORS), without IfExists or a set prefix
    key: str  # lower case
    values: tuple[str, ...]
    if_exists: bool = False
    for_all: bool = False  # ForAllValues: (a missing key matches)
    variables: bool = False  # values may hold policy variables

    def holds(self, context: dict[str, list[str]]) -> bool:
        present = context.get(self.key)
        if self.operator == "Null":
            return (present is None) == (self.values[0].lower() == "true")
        if present is None:
            negated = OPERATORS[self.operator][1]
            return negated or self.if_exists or self.for_all
        test, negated, kind = OPERATORS[self.operator]
        variables = context if self.variables and kind == "string" else None
        wanted = [e for v in self.values if (e := expand(v, variables)) is not None]
        return test(present, wanted) is not negated


def parse_conditions(value: Any, variables: bool) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise malformed("Condition must be an object of operators")
    out = []
    for raw_operator, tests in value.items():
        name, for_all = raw_operator, False
        for prefix in ("ForAnyValue:", "ForAllValues:"):
            if name.startswith(prefix):
                name, for_all = name[len(prefix):], prefix == "ForAllValues:"
        if_exists = name.endswith("IfExists") and name != "Null"
        name = name.removesuffix("IfExists") if if_exists else name
        if name not in OPERATORS:
            raise malformed(f"Invalid Condition operator: {raw_operator!r}")
        if not isinstance(tests, dict) or not tests:
            raise malformed(f"Condition operator {raw_operator} needs an object of keys and values")
        for key, raw_values in tests.items():
            known = key.lower() in CONDITION_KEYS or any(
                key.lower().startswith(p) and len(key) > len(p) for p in (EXISTING_TAG, REQUEST_TAG))
            if not known:
                raise malformed(f"Policy has an invalid condition key: {key!r}")
            items = raw_values if isinstance(raw_values, list) else [raw_values]
            if not items or not all(isinstance(v, str | int | float | bool) for v in items):
                raise malformed(f"Condition values of {key} must be strings, numbers or booleans")
            values = tuple(("true" if v else "false") if isinstance(v, bool) else str(v) for v in items)
            _check_values(OPERATORS[name][2], key, values)
            if variables and OPERATORS[name][2] == "string":
                for v in values:
                    check_variables(v)
            out.append(Condition(name, key.lower(), values, if_exists, for_all, variables))
    return tuple(out)


def _check_values(kind: str, key: str, values: tuple[str, ...]) -> None:
    for v in values:
        try:
            if kind == "numeric":
                float(v)
            elif kind == "date":
                _timestamp(v)
            elif kind == "ip":
                ipaddress.ip_network(v, strict=False)
            elif kind == "bool" and v.lower() not in ("true", "false"):
                raise ValueError(v)
        except ValueError as exc:
            what = {"numeric": "a number", "date": "a date (ISO 8601 or epoch seconds)",
                    "ip": "an IP address or CIDR range", "bool": "true or false"}[kind]
            raise malformed(f"Invalid value for {key}: {v!r} is not {what}") from exc
