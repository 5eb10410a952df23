// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32C;

/**
 * Chunk transfers with the storage servers (gridfs/storage/client.py). Chunk URLs name the server by service
 * id, {@code rawx://SERVICE_ID/CHUNK_ID}: the id is resolved to the server's current address through the
 * conscience's list and sent in {@code X-Grid-Service-Id}, so that a server now listening on a stale address
 * answers 421; on that answer or a refused connection the list is refreshed and the request retried once at
 * the fresh address. Old records hold {@code http://HOST:PORT/chunk/CHUNK_ID}: those go straight there.
 *
 * <p>A PUT declares the CRC32C of its body ({@code X-Grid-Chunk-Crc32c}: the JDK has no xxh3); the server
 * verifies it, stores the xxh3_64 it computes, and answers it: that is the hash the chunk record carries.
 */
final class ChunkClient {
    static final String SERVICE_ID_HEADER = "X-Grid-Service-Id";
    private static final Pattern RAWX = Pattern.compile("^rawx://([a-z0-9][a-z0-9-]{2,63})/([0-9A-F]{64})$");
    private static final Pattern LEGACY = Pattern.compile("^http://([^/]+)/chunk/([0-9A-F]{64})$");

    /** What a chunk URL names: a service id (rawx://) or, in an old record, an address. */
    static final class Ref {
        final String serviceId; // null for an old-form URL
        final String addr; // null for a rawx:// URL
        final String chunkId;

        Ref(String serviceId, String addr, String chunkId) {
            this.serviceId = serviceId;
            this.addr = addr;
            this.chunkId = chunkId;
        }

        String service() {
            return serviceId != null ? serviceId : addr;
        }
    }

    static Ref parse(String url) throws GridException {
        Matcher m = RAWX.matcher(url);
        if (m.matches()) {
            return new Ref(m.group(1), null, m.group(2));
        }
        m = LEGACY.matcher(url);
        if (m.matches()) {
            return new Ref(null, m.group(1), m.group(2));
        }
        throw new GridException(400, "InvalidName", "not a chunk URL: " + url);
    }

    static String url(Services.Service s, String chunkId) {
        return s.id.matches("^[a-z0-9][a-z0-9-]{2,63}$") ? "rawx://" + s.id + "/" + chunkId
                : "http://" + s.addr + "/chunk/" + chunkId;
    }

    static String crc32c(byte[] buf, int off, int len) {
        CRC32C crc = new CRC32C();
        crc.update(buf, off, len);
        return String.format("%08x", crc.getValue());
    }

    private final HttpClient http;
    private final String secret;
    private final Services services;
    private final Duration timeout = Duration.ofSeconds(60);

    ChunkClient(String secret, Services services, double connectTimeoutSeconds) {
        this.http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofMillis(Math.max(1, (long) (connectTimeoutSeconds * 1000)))).build();
        this.secret = secret;
        this.services = services;
    }

    /** Store {@code len} bytes of {@code buf} at {@code url}; returns the xxh3_64 the server keeps. */
    String put(String url, byte[] buf, int off, int len, Map<String, String> headers) throws IOException {
        Ref ref = parse(url);
        HttpRequest.Builder rb = HttpRequest.newBuilder().timeout(timeout)
                .PUT(HttpRequest.BodyPublishers.ofByteArray(buf, off, len))
                .header("X-Grid-Chunk-Crc32c", crc32c(buf, off, len));
        for (Map.Entry<String, String> e : headers.entrySet()) {
            rb.header(e.getKey(), e.getValue());
        }
        byte[] answer = exchange(ref, "/chunk/" + ref.chunkId, rb, (resp, in) -> in.readAllBytes());
        String hash = Json.str(Json.object(Json.parse(answer)), "hash");
        if (!hash.matches("^[0-9a-f]{16}$")) {
            throw new GridException(502, "BadAnswer", url + ": the storage server named no xxh3_64 for the chunk "
                    + "(it predates X-Grid-Chunk-Crc32c?)");
        }
        return hash;
    }

    /** Bytes {@code [offset, offset + len)} of a chunk, into {@code out} at {@code outOff}. */
    void get(String url, long offset, int len, byte[] out, int outOff) throws IOException {
        if (len == 0) {
            return;
        }
        Ref ref = parse(url);
        HttpRequest.Builder rb = HttpRequest.newBuilder().timeout(timeout).GET()
                .header("Range", "bytes=" + offset + "-" + (offset + len - 1));
        exchange(ref, "/chunk/" + ref.chunkId, rb, (resp, in) -> {
            int got = in.readNBytes(out, outOff, len);
            if (got != len || in.read() != -1) {
                throw GridException.unavailable(url + ": got " + got + " bytes, wanted " + len, null);
            }
            return null;
        });
    }

    void delete(String url) throws IOException {
        Ref ref = parse(url);
        exchange(ref, "/chunk/" + ref.chunkId, HttpRequest.newBuilder().timeout(timeout).DELETE(),
                (resp, in) -> in.readAllBytes());
    }

    interface Body<T> {
        T read(HttpResponse<InputStream> resp, InputStream in) throws IOException;
    }

    private <T> T exchange(Ref ref, String path, HttpRequest.Builder rb, Body<T> body) throws IOException {
        rb.header(JsonHttp.SECRET_HEADER, secret);
        if (ref.serviceId == null) {
            return send(ref.addr, path, rb, body);
        }
        rb.header(SERVICE_ID_HEADER, ref.serviceId);
        String addr = services.addrOf(ref.serviceId);
        try {
            return send(addr, path, rb, body);
        } catch (GridException ex) {
            // 421: another server listens there now; 0: nothing answered at that address. Nothing was stored,
            // so one retry at the address the conscience knows now is safe.
            if (ex.status != 421 && !ex.code.equals("Unreachable")) {
                throw ex;
            }
            services.invalidate();
            String fresh = services.addrOf(ref.serviceId);
            if (fresh.equals(addr)) {
                throw ex;
            }
            return send(fresh, path, rb, body);
        }
    }

    private <T> T send(String addr, String path, HttpRequest.Builder rb, Body<T> body) throws IOException {
        HttpRequest req = rb.uri(URI.create("http://" + addr + path)).build();
        // A kept-alive connection the server closed fails before any answer: the client retries it on a new
        // one by itself for idempotent requests; a PUT is sent again here once (the server keeps nothing of a
        // body it did not receive whole).
        for (int attempt = 0; ; attempt++) {
            HttpResponse<InputStream> resp;
            try {
                resp = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
            } catch (ConnectException | HttpConnectTimeoutException ex) {
                throw new GridException(503, "Unreachable", "storage server " + addr + " is not answering: " + ex,
                        ex);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted talking to " + addr);
            } catch (IOException ex) {
                if (attempt == 0 && req.method().equals("PUT")) {
                    continue;
                }
                throw GridException.unavailable("storage server " + addr + ": " + ex, ex);
            }
            try (InputStream in = resp.body()) {
                if (resp.statusCode() >= 400) {
                    throw GridException.fromBody(resp.statusCode(), in.readAllBytes());
                }
                return body.read(resp, in);
            } catch (GridException ex) {
                throw ex;
            } catch (IOException ex) {
                throw GridException.unavailable("storage server " + addr + ": " + ex, ex);
            }
        }
    }
}
