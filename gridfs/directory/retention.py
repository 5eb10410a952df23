"""Object lock in the directory: which object versions may not be removed or have their retention
weakened, and a bucket's default retention stamped on every new version.

The rules are S3's (object lock), kept here rather than in the S3 gateway so that every path that removes
a version obeys them: a delete of a version, an overwrite that replaces one, a rename, a lifecycle
expiration, the ``grid`` command and the client library. A version is locked while it has a legal hold,
or a retention date in the future. COMPLIANCE retention can be neither shortened nor removed by anyone;
GOVERNANCE retention can, by a caller that says it bypasses governance (the S3 gateway lets only those
with the right say so; holders of the namespace secret have every right). A legal hold blocks removal
until it is taken off.

The lock lives in properties, under the names S3 clients see it by: an object version's ``s3.lock.mode``
(GOVERNANCE | COMPLIANCE), ``s3.lock.until`` (ISO 8601 UTC) and ``s3.lock.hold`` (ON | OFF); a bucket's
``s3.lock.enabled`` ("Enabled", never taken back, and versioning can then not be suspended) and
``s3.lock.default`` (JSON ``{"mode": ..., "days": N}`` or ``{"mode": ..., "years": N}``).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from gridfs.common.errors import BadRequest, InvalidState, ObjectLocked
from gridfs.directory.model import LOCK_PROPS

OBJECT_PROPS = LOCK_PROPS
MODE_PROP, UNTIL_PROP, HOLD_PROP = LOCK_PROPS
ENABLED_PROP, DEFAULT_PROP = "s3.lock.enabled", "s3.lock.default"
MODES = ("GOVERNANCE", "COMPLIANCE")
MAX_YEARS = 100  # S3's limit on a default retention


def parse_until(value: str) -> datetime:
    """An ISO 8601 date-time with a time zone, as UTC; BadRequest otherwise."""
    try:
        when = datetime.fromisoformat(value.strip())
        if when.tzinfo is None:
            raise BadRequest(f"retain-until date {value!r} has no time zone")
        return when.astimezone(UTC)
    except (ValueError, AttributeError, OverflowError):  # year 1 at +01:00 is out of range in UTC
        raise BadRequest(f"retain-until date {value!r} is not an ISO 8601 date-time in range") from None


def format_until(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lock_enabled(container_props: dict[str, Any]) -> bool:
    return container_props.get(ENABLED_PROP) == "Enabled"


def retention_of(props: dict[str, Any], now: float | None = None) -> tuple[str, datetime] | None:
    """(mode, until) of a retention still running at ``now``; None when there is none or it has passed."""
    mode, until = props.get(MODE_PROP), props.get(UNTIL_PROP)
    if mode not in MODES or not until:
        return None
    when = parse_until(until)
    return (mode, when) if when.timestamp() > (time.time() if now is None else now) else None


def why_locked(props: dict[str, Any], bypass_governance: bool = False, now: float | None = None) -> str:
    """Why a version with ``props`` may not be removed ("" when it may)."""
    if props.get(HOLD_PROP) == "ON":
        return "it has a legal hold"
    running = retention_of(props, now)
    if running is None or (running[0] == "GOVERNANCE" and bypass_governance):
        return ""
    return f"it is under {running[0]} retention until {format_until(running[1])}"


def check_removable(key: str, version: int, props: dict[str, Any], bypass_governance: bool = False) -> None:
    """Refuse (ObjectLocked) the removal of a locked version."""
    why = why_locked(props, bypass_governance)
    if why:
        raise ObjectLocked(f"version {version} of {key!r} is protected by object lock: {why}")


def check_object_props(container_props: dict[str, Any], props: dict[str, Any]) -> None:
    """Lock properties well formed, and only in a bucket with object lock enabled."""
    if not any(name in props for name in OBJECT_PROPS):
        return
    if not lock_enabled(container_props):
        raise InvalidState("object lock settings need a bucket with object lock enabled")
    mode, until, hold = props.get(MODE_PROP), props.get(UNTIL_PROP), props.get(HOLD_PROP)
    if (mode is None) != (until is None):
        raise BadRequest("a retention needs both a mode and a retain-until date")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"retention mode {mode!r} is not GOVERNANCE or COMPLIANCE")
    if until is not None:
        parse_until(until)
    if hold is not None and hold not in ("ON", "OFF"):
        raise BadRequest(f"legal hold {hold!r} is not ON or OFF")


def check_change(key: str, old: dict[str, Any], new: dict[str, Any], bypass_governance: bool = False) -> None:
    """Refuse a change of a version's properties that shortens or removes a running retention.

    Extending one, or turning GOVERNANCE into COMPLIANCE, is allowed to anyone; a COMPLIANCE retention
    is never weakened, a GOVERNANCE one only with ``bypass_governance``. A legal hold may be put on and
    taken off (S3 asks for a right to do so, not for a bypass).
    """
    running = retention_of(old)
    if running is None:
        return
    mode, until = running
    new_mode, new_until = new.get(MODE_PROP), new.get(UNTIL_PROP)
    weakened = (new_mode not in MODES or not new_until or parse_until(new_until) < until
                or (mode == "COMPLIANCE" and new_mode != "COMPLIANCE"))
    if weakened and (mode == "COMPLIANCE" or not bypass_governance):
        raise ObjectLocked(f"{key!r} is under {mode} retention until {format_until(until)}: it cannot be "
                           "shortened or removed" + ("" if mode == "COMPLIANCE" else " without bypassing governance"))


def with_default(container_props: dict[str, Any], props: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A new version's properties with the bucket's default retention, when it names none of its own."""
    raw = container_props.get(DEFAULT_PROP)
    if not raw or MODE_PROP in props:
        return props
    rule = parse_default(raw)
    start = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    until = start + timedelta(days=rule["days"]) if "days" in rule else _add_years(start, rule["years"])
    return {**props, MODE_PROP: rule["mode"], UNTIL_PROP: format_until(until)}


def _add_years(when: datetime, years: int) -> datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February in a year that has none
        return when.replace(year=when.year + years, day=28)


def parse_default(raw: str) -> dict[str, Any]:
    """A default retention rule (``s3.lock.default``), checked."""
    try:
        rule = json.loads(raw)
    except ValueError:
        raise BadRequest("default retention must be JSON") from None
    if not isinstance(rule, dict) or rule.get("mode") not in MODES or len(rule) != 2:
        raise BadRequest("default retention is {mode: GOVERNANCE|COMPLIANCE, days|years: N}")
    unit = "days" if "days" in rule else "years"
    count = rule.get(unit)
    limit = MAX_YEARS * (366 if unit == "days" else 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        raise BadRequest(f"default retention {unit} must be a whole number from 1 to {limit}")
    return rule


def check_container(old_props: dict[str, Any], new_props: dict[str, Any], versioning: str) -> None:
    """A bucket's lock settings: enabled only with versioning, never taken back, a default rule well formed."""
    if lock_enabled(old_props) and not lock_enabled(new_props):
        raise InvalidState("object lock cannot be disabled on a bucket once enabled")
    if lock_enabled(new_props) and versioning != "enabled":
        raise InvalidState("a bucket with object lock keeps versioning enabled: it cannot be suspended")
    if new_props.get(DEFAULT_PROP):
        if not lock_enabled(new_props):
            raise InvalidState("a default retention needs a bucket with object lock enabled")
        parse_default(new_props[DEFAULT_PROP])
