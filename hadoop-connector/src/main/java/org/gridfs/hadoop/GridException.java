// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.util.Map;

/**
 * An error a grid service answered ({@code {"error": {"code", "message"}}} with its HTTP status, as
 * gridfs/common/errors.py names them), or a transport failure (status 503, code ServiceUnavailable).
 */
class GridException extends IOException {
    private static final long serialVersionUID = 1L;

    final int status;
    final String code;

    GridException(int status, String code, String message) {
        super(code + ": " + message);
        this.status = status;
        this.code = code;
    }

    GridException(int status, String code, String message, Throwable cause) {
        this(status, code, message);
        initCause(cause);
    }

    static GridException unavailable(String message, Throwable cause) {
        return new GridException(503, "ServiceUnavailable", message, cause);
    }

    /** The exception an error body describes. */
    static GridException fromBody(int status, byte[] body) {
        String code = "HTTP" + status;
        String message = "HTTP " + status;
        try {
            Map<String, Object> error = Json.object(Json.object(Json.parse(body)).get("error"));
            code = Json.str(error, "code");
            message = Json.str(error, "message");
        } catch (IllegalArgumentException ex) {
            // not a grid error body: keep the status
        }
        return new GridException(status, code, message);
    }

    boolean notFound() {
        return status == 404;
    }

    /** An answer that says nothing about whether a change was applied: a transport failure or a 5xx. */
    boolean lostAnswer() {
        return status >= 500;
    }
}
