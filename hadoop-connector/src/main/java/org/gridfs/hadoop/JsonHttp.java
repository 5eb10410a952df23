// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

/**
 * Calls to the grid's JSON services (directory, conscience), as gridfs/common/http.py's JsonClient makes them:
 * keep-alive connections, the namespace secret in {@code X-Grid-Secret}, and bounded retries. A connection
 * that could not be opened is retried for every call; a read error, a timeout or a 503 only for a GET or for a
 * call marked idempotent (a POST carrying an op id, which the directory applies once). Retries back off from
 * 0.1 s doubling to 1 s and stop {@code retryFor} seconds after the first attempt.
 */
final class JsonHttp {
    static final String SECRET_HEADER = "X-Grid-Secret";
    static final double RETRY_FOR = 15.0;

    private final HttpClient http;
    private final String secret;
    private final Duration timeout;
    private final double retryFor;

    JsonHttp(String secret, double timeoutSeconds, double retryFor) {
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(3)).build();
        this.secret = secret;
        this.timeout = Duration.ofMillis((long) (timeoutSeconds * 1000));
        this.retryFor = retryFor;
    }

    /** {@code ?k=v&...} of the non-null values, URL-encoded. */
    static String query(Object... pairs) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i + 1 < pairs.length; i += 2) {
            if (pairs[i + 1] == null) {
                continue;
            }
            sb.append(sb.length() == 0 ? '?' : '&').append(pairs[i]).append('=')
                    .append(URLEncoder.encode(String.valueOf(pairs[i + 1]), StandardCharsets.UTF_8));
        }
        return sb.toString();
    }

    Object get(String url) throws IOException {
        return call("GET", url, null, true);
    }

    /** One call; {@code body} (a Map or List) is sent as JSON; the answer is decoded JSON, or null. */
    Object call(String method, String url, Object body, boolean idempotent) throws IOException {
        boolean retryAll = idempotent || method.equals("GET");
        long deadline = System.nanoTime() + (long) (retryFor * 1e9);
        long backoffMs = 100;
        while (true) {
            HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(url)).timeout(timeout)
                    .header(SECRET_HEADER, secret).header("Content-Type", "application/json");
            rb.method(method, body == null ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(Json.write(body), StandardCharsets.UTF_8));
            IOException failure;
            try {
                HttpResponse<byte[]> resp = http.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
                int status = resp.statusCode();
                if (status < 400) {
                    byte[] data = resp.body();
                    return data.length == 0 ? null : Json.parse(data);
                }
                GridException err = GridException.fromBody(status, resp.body());
                if (status != 503 || !retryAll) {
                    throw err;
                }
                failure = err;
            } catch (ConnectException | HttpConnectTimeoutException ex) {
                failure = GridException.unavailable(url + " is not answering: " + ex, ex);
            } catch (GridException ex) {
                throw ex;
            } catch (IOException ex) {
                if (!retryAll) {
                    throw GridException.unavailable(url + ": " + ex, ex);
                }
                failure = GridException.unavailable(url + ": " + ex, ex);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted calling " + url);
            } catch (IllegalArgumentException ex) {
                throw GridException.unavailable(url + " answered something that is not JSON: " + ex.getMessage(), ex);
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw failure instanceof GridException ? (GridException) failure
                        : GridException.unavailable(failure.toString(), failure);
            }
            sleep(Math.min(backoffMs, left / 1_000_000 + 1));
            backoffMs = Math.min(backoffMs * 2, 1000);
        }
    }

    static void sleep(long ms) throws InterruptedIOException {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted");
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asObject(Object v) {
        return (Map<String, Object>) v;
    }
}
