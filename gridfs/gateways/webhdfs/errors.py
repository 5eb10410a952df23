"""WebHDFS errors: a Java exception name, an HTTP status and a message.

Answered as ``{"RemoteException": {"exception", "javaClassName", "message"}}``, the body
Hadoop's ``WebHdfsFileSystem`` turns back into the named Java exception (so ``mkdir -p``
sees a ``FileNotFoundException`` and goes on). Statuses follow the namenode's
``ExceptionHandler``: file-system ``IOException``s (already exists, not a directory,
not empty) are 403, bad arguments and unsupported operations 400, missing paths 404.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import logging

from gridfs.common import errors as grid_errors

log = logging.getLogger("gridfs.webhdfs")

# exception -> (javaClassName, HTTP status)
EXCEPTIONS = {
    "FileNotFoundException": ("java.io.FileNotFoundException", 404),
    "AccessControlException": ("org.apache.hadoop.security.AccessControlException", 403),
    "FileAlreadyExistsException": ("org.apache.hadoop.fs.FileAlreadyExistsException", 403),
    "ParentNotDirectoryException": ("org.apache.hadoop.fs.ParentNotDirectoryException", 403),
    "PathIsNotEmptyDirectoryException": ("org.apache.hadoop.fs.PathIsNotEmptyDirectoryException", 403),
    "IOException": ("java.io.IOException", 403),
    "IllegalArgumentException": ("java.lang.IllegalArgumentException", 400),
    "UnsupportedOperationException": ("java.lang.UnsupportedOperationException", 400),
    "RetriableException": ("org.apache.hadoop.ipc.RetriableException", 503),
    "RuntimeException": ("java.lang.RuntimeException", 500),
}


class WebHdfsError(Exception):
    def __init__(self, exception: str, message: str) -> None:
        super().__init__(message)
        self.exception = exception
        self.java_class, self.status = EXCEPTIONS[exception]
        self.message = message

    def body(self) -> dict:
        return {"RemoteException": {"exception": self.exception, "javaClassName": self.java_class,
                                    "message": self.message}}


def not_found(path: str) -> WebHdfsError:
    return WebHdfsError("FileNotFoundException", f"File does not exist: {path}")


def bad_argument(message: str) -> WebHdfsError:
    return WebHdfsError("IllegalArgumentException", message)


def unsupported(message: str) -> WebHdfsError:
    return WebHdfsError("UnsupportedOperationException", message)


def translate(exc: BaseException, path: str) -> WebHdfsError:
    """A grid error as the Hadoop exception a WebHDFS client expects."""
    if isinstance(exc, WebHdfsError):
        return exc
    message = str(exc)
    if isinstance(exc, grid_errors.NotFound):
        return not_found(path) if isinstance(exc, grid_errors.NoSuchObject | grid_errors.NoSuchContainer) \
            else WebHdfsError("FileNotFoundException", message)
    if isinstance(exc, grid_errors.AlreadyExists):
        return WebHdfsError("FileAlreadyExistsException", f"{path} already exists")
    if isinstance(exc, grid_errors.ContainerNotEmpty):
        return WebHdfsError("PathIsNotEmptyDirectoryException", f"`{path} is non empty': {message}")
    if isinstance(exc, PermissionError):
        return WebHdfsError("AccessControlException", message)
    if isinstance(exc, grid_errors.BadRequest | grid_errors.InvalidName | ValueError):
        return bad_argument(message)
    if isinstance(exc, ConnectionError | grid_errors.DataUnavailable | grid_errors.ServiceUnavailable):
        return WebHdfsError("RetriableException", "the grid is not reachable right now: " + message)
    if isinstance(exc, grid_errors.GridError | OSError):
        return WebHdfsError("IOException", message)
    log.exception("internal error on %s", path, exc_info=exc)
    return WebHdfsError("RuntimeException", "internal error of the WebHDFS gateway (see its log)")
