"""The error vocabulary of the grid.

Every internal HTTP API answers errors as ``{"error": {"code": ..., "message": ...}}``
with the status below; clients turn the code back into the same exception class, so
an error raised in a server reaches the caller with its type intact.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations


class GridError(Exception):
    """Base of every gridfs error."""

    code = "InternalError"
    status = 500


class InvalidName(GridError, ValueError):
    code = "InvalidName"
    status = 400


class BadRequest(GridError, ValueError):
    code = "BadRequest"
    status = 400


class Unauthorized(GridError, PermissionError):
    code = "Unauthorized"
    status = 401


class Forbidden(GridError, PermissionError):
    code = "Forbidden"
    status = 403


class NotFound(GridError, FileNotFoundError):
    code = "NotFound"
    status = 404


class NoSuchContainer(NotFound):
    code = "NoSuchContainer"


class NoSuchObject(NotFound):
    code = "NoSuchObject"


class NoSuchUpload(NotFound):
    code = "NoSuchUpload"


class NoSuchChunk(NotFound):
    code = "NoSuchChunk"


class AlreadyExists(GridError, FileExistsError):
    code = "AlreadyExists"
    status = 409


class ContainerNotEmpty(GridError, OSError):
    code = "ContainerNotEmpty"
    status = 409


class OperationFenced(GridError):
    """The op id was settled as never to be applied (its answer had been lost); use a new one."""

    code = "OperationFenced"
    status = 409


class ObjectLocked(Forbidden):
    """Object lock (a retention or a legal hold) protects the version from removal or from this change."""

    code = "ObjectLocked"


class InvalidState(GridError):
    """The bucket's state forbids the change (object lock: versioning cannot be suspended, lock not undone)."""

    code = "InvalidState"
    status = 409


class LengthRequired(GridError, ValueError):
    code = "LengthRequired"
    status = 411


class PayloadTooLarge(GridError, ValueError):
    code = "PayloadTooLarge"
    status = 413


class PreconditionFailed(GridError):
    code = "PreconditionFailed"
    status = 412


class InvalidRange(GridError, ValueError):
    code = "InvalidRange"
    status = 416


class ChecksumMismatch(GridError, OSError):
    code = "ChecksumMismatch"
    status = 422


class InvalidPart(GridError, ValueError):
    code = "InvalidPart"
    status = 400


class VolumeFull(GridError, OSError):
    code = "VolumeFull"
    status = 507


class ServiceUnavailable(GridError, ConnectionError):
    code = "ServiceUnavailable"
    status = 503


class CommitOutcomeUnknown(ServiceUnavailable):
    """A directory change got no answer and the directory could not say whether it was applied.

    Nothing was deleted: chunks written for it are kept (``grid crawl`` reclaims them if it never landed).
    """

    code = "CommitOutcomeUnknown"


class WrongService(ServiceUnavailable):
    """The server at this address is not the service the request names: the address is stale."""

    code = "WrongService"
    status = 421


class NotEnoughServices(ServiceUnavailable):
    """Placement could not find enough services that satisfy the policy."""

    code = "NotEnoughServices"


class DataUnavailable(GridError, OSError):
    """Too many chunks of a stripe are missing or corrupt to rebuild the data."""

    code = "DataUnavailable"
    status = 503


_BY_CODE: dict[str, type[GridError]] = {}


def _register(cls: type[GridError]) -> None:
    _BY_CODE[cls.code] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(GridError)


def error_body(exc: GridError) -> dict:
    return {"error": {"code": exc.code, "message": str(exc)}}


def error_from_body(status: int, body: object) -> GridError:
    """Rebuild the exception a server described in an error body."""
    code, message = "InternalError", f"HTTP {status}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = next((c for c in _BY_CODE.values() if c.status == status), GridError)
    return cls(message)
