"""Lifecycle rules as the grid keeps them: a bucket's ``s3.lifecycle`` property, a JSON list of rules.

The S3 gateway turns S3's LifecycleConfiguration XML into these rules and back; the worker
(``gridfs.lifecycle.worker``) reads them. A rule has an id, a status, a filter (prefix, tags, object
size bounds: all must hold) and one or more actions: expire current versions after some days or at a
date, remove delete markers left alone, expire noncurrent versions after some days beyond the newest
few, abort multipart uploads older than some days.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridfs.common.errors import BadRequest

LIFECYCLE_PROP = "s3.lifecycle"
TAGS_PROP = "s3.tags"  # an object's tags, JSON {key: value}, as the S3 gateway stores them
MAX_RULES = 1000


@dataclass
class Rule:
    id: str
    enabled: bool = True
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    size_gt: int | None = None  # only objects larger than this many bytes
    size_lt: int | None = None  # only objects smaller than this
    expire_days: int | None = None  # current versions, this many days after they were written
    expire_date: str | None = None  # current versions, from this date (ISO 8601, midnight UTC)
    expired_markers: bool = False  # delete markers with no version left behind them
    noncurrent_days: int | None = None  # noncurrent versions, this many days after they became noncurrent
    newer_noncurrent: int | None = None  # ... but the newest this many of them are kept
    abort_days: int | None = None  # multipart uploads this many days after they were started
    # How the S3 filter was written, so that it is answered as it was sent: "filter" or the legacy "prefix".
    form: str = "filter"

    def matches(self, key: str, size: int | None = None, tags: dict[str, str] | None = None) -> bool:
        """Whether an object (or, with no size nor tags, an upload) falls under the rule's filter."""
        if not key.startswith(self.prefix):
            return False
        if self.tags and not all((tags or {}).get(k) == v for k, v in self.tags.items()):
            return False
        if size is not None and self.size_gt is not None and size <= self.size_gt:
            return False
        return not (size is not None and self.size_lt is not None and size >= self.size_lt)

    def expire_at(self) -> float | None:
        return None if self.expire_date is None else datetime.fromisoformat(self.expire_date).timestamp()

    def to_dict(self) -> dict[str, Any]:
        """The fields that say something (a size bound of 0 does: ``is``, not ``==``, compares with False)."""
        return {k: v for k, v in self.__dict__.items()
                if k == "enabled" or not (v is None or v is False or v == "" or v == {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        known = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or set(data) - known:
            raise BadRequest(f"not a lifecycle rule: {data!r}")
        return cls(**data)


def load(raw: str | None) -> list[Rule]:
    """A bucket's rules from its property ("" or None: none)."""
    if not raw:
        return []
    try:
        return [Rule.from_dict(r) for r in json.loads(raw)]
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"malformed lifecycle rules: {exc}") from None


def dump(rules: list[Rule]) -> str:
    return json.dumps([r.to_dict() for r in rules], sort_keys=True)
