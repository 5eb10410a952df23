"""S3 errors: a code, a status and a message, answered as S3's XML error body.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

from xml.sax.saxutils import escape

STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "ConditionalRequestConflict": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidBucketState": 409,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidStorageClass": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MaxMessageLengthExceeded": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchLifecycleConfiguration": 404,
    "NoSuchObjectLockConfiguration": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "ObjectLockConfigurationNotFoundError": 404,
    "PreconditionFailed": 412,
    "RequestHeaderSectionTooLarge": 400,
    "RequestTimeout": 400,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    def __init__(self, code: str, message: str = "", **extra: str) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        self.status = STATUS.get(code, 400)
        self.extra = extra
        self.headers: dict[str, str] = {}  # answered with the error (x-amz-delete-marker on a marker's 404)

    def xml(self, resource: str = "", request_id: str = "") -> bytes:
        fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in self.extra.items())
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>{fields}"
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
        ).encode()


class RequestTimeout(S3Error, TimeoutError):
    """The client stopped sending a body it announced.

    Also a ``TimeoutError``: once the answer is sent, aiohttp reads what is left of an
    unread body for a while, and takes a ``TimeoutError`` from it as the sign to close the
    connection quietly.
    """

    def __init__(self) -> None:
        super().__init__("RequestTimeout", "Your socket connection to the server was not read from or written to "
                         "within the timeout period. Idle connections will be closed.")
