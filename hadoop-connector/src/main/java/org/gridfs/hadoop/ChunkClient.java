// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.SocketTimeoutException;
import java.net.URL;
import java.util.LinkedHashMap;
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

    private final String secret;
    private final Services services;
    private final int connectTimeoutMs;
    private static final int ANSWER_TIMEOUT_MS = 60_000;

    ChunkClient(String secret, Services services, double connectTimeoutSeconds) {
        this.secret = secret;
        this.services = services;
        this.connectTimeoutMs = Math.max(1, (int) (connectTimeoutSeconds * 1000));
    }

    /** One request to a storage server: method, headers, and the body's bytes if any. */
    private static final class Request {
        final String method;
        final Map<String, String> headers = new LinkedHashMap<>();
        byte[] body;
        int off;
        int len;

        Request(String method) {
            this.method = method;
        }
    }

    /** What to do with the body of a successful answer. */
    interface Body<T> {
        T read(InputStream in) throws IOException;
    }

    /** Store {@code len} bytes of {@code buf} at {@code url}; returns the xxh3_64 the server keeps. */
    String put(String url, byte[] buf, int off, int len, Map<String, String> headers) throws IOException {
        Ref ref = parse(url);
        Request r = new Request("PUT");
        r.headers.putAll(headers);
        r.headers.put("X-Grid-Chunk-Crc32c", crc32c(buf, off, len));
        r.body = buf;
        r.off = off;
        r.len = len;
        byte[] answer = exchange(ref, "/chunk/" + ref.chunkId, r, InputStream::readAllBytes);
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
        Request r = new Request("GET");
        r.headers.put("Range", "bytes=" + offset + "-" + (offset + len - 1));
        exchange(ref, "/chunk/" + ref.chunkId, r, in -> {
            int got = in.readNBytes(out, outOff, len);
            if (got != len || in.read() != -1) {
                throw GridException.unavailable(url + ": got " + got + " bytes, wanted " + len, null);
            }
            return null;
        });
    }

    void delete(String url) throws IOException {
        Ref ref = parse(url);
        exchange(ref, "/chunk/" + ref.chunkId, new Request("DELETE"), InputStream::readAllBytes);
    }

    private <T> T exchange(Ref ref, String path, Request r, Body<T> body) throws IOException {
        r.headers.put(JsonHttp.SECRET_HEADER, secret);
        if (ref.serviceId == null) {
            return send(ref.addr, path, r, body);
        }
        r.headers.put(SERVICE_ID_HEADER, ref.serviceId);
        String addr = services.addrOf(ref.serviceId);
        try {
            return send(addr, path, r, body);
        } catch (GridException ex) {
            // 421: another server listens there now; Unreachable: nothing answered at that address. Nothing was
            // stored, so one retry at the address the conscience knows now is safe.
            if (ex.status != 421 && !ex.code.equals("Unreachable")) {
                throw ex;
            }
            services.invalidate();
            String fresh = services.addrOf(ref.serviceId);
            if (fresh.equals(addr)) {
                throw ex;
            }
            return send(fresh, path, r, body);
        }
    }

    /**
     * One exchange over the JDK's keep-alive connections (HttpURLConnection: bodies are written from, and read
     * into, the caller's arrays with no intermediate buffers). A connection kept alive that the server closed
     * meanwhile fails before any answer: the request is sent once more on a new one (the server keeps nothing
     * of a PUT body it did not receive whole).
     */
    private <T> T send(String addr, String path, Request r, Body<T> body) throws IOException {
        for (int attempt = 0; ; attempt++) {
            HttpURLConnection c = (HttpURLConnection) new URL("http://" + addr + path).openConnection(Proxy.NO_PROXY);
            c.setConnectTimeout(connectTimeoutMs);
            c.setReadTimeout(ANSWER_TIMEOUT_MS);
            c.setUseCaches(false);
            c.setRequestMethod(r.method);
            for (Map.Entry<String, String> e : r.headers.entrySet()) {
                c.setRequestProperty(e.getKey(), e.getValue());
            }
            if (r.body != null) {
                c.setDoOutput(true);
                c.setFixedLengthStreamingMode(r.len);
            }
            try {
                c.connect();
            } catch (ConnectException | SocketTimeoutException ex) {
                throw new GridException(503, "Unreachable", "storage server " + addr + " is not answering: " + ex,
                        ex);
            }
            int status;
            try {
                if (r.body != null) {
                    try (OutputStream o = c.getOutputStream()) {
                        o.write(r.body, r.off, r.len);
                    }
                }
                status = c.getResponseCode();
            } catch (SocketTimeoutException ex) {
                c.disconnect();
                throw GridException.unavailable("storage server " + addr + " did not answer within "
                        + ANSWER_TIMEOUT_MS / 1000 + " s", ex);
            } catch (IOException ex) {
                c.disconnect();
                if (attempt == 0) {
                    continue;
                }
                throw GridException.unavailable("storage server " + addr + ": " + ex, ex);
            }
            if (status >= 400) {
                byte[] error;
                try (InputStream es = c.getErrorStream()) {
                    error = es == null ? new byte[0] : es.readAllBytes();
                } catch (IOException ex) {
                    error = new byte[0];
                }
                throw GridException.fromBody(status, error);
            }
            try (InputStream in = c.getInputStream()) {
                return body.read(in); // read to its end: the connection goes back to the keep-alive cache
            } catch (GridException ex) {
                c.disconnect();
                throw ex;
            } catch (IOException ex) {
                c.disconnect();
                throw GridException.unavailable("storage server " + addr + ": " + ex, ex);
            }
        }
    }
}
