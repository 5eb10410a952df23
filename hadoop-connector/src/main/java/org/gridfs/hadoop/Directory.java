// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The directory's hops, as gridfs/directory/client.py takes them: a container id is the SHA-256 of
 * {@code account \0 bucket}; its first 4 hex digits pick the prefix, meta0 maps the prefix to a meta1 service,
 * meta1 the container to its meta2 service. Both answers are cached, and dropped when a meta2 no longer holds
 * the container (404) or does not answer (it may have moved).
 *
 * <p>Every change carries an op id (a put's is its content id), so it is retried like an idempotent request and
 * applied once. When its answer is lost (no answer or a 5xx after the retries) the change is settled with
 * {@code resolve}: applied (its first answer is returned), or fenced: it will never apply, and the caller
 * hears {@code OperationFenced} (a 409, so the chunks written for it are garbage). When even that gets no
 * answer the outcome is unknown: {@code CommitOutcomeUnknown}, and nothing may be deleted.
 */
final class Directory {
    private static final SecureRandom RANDOM = new SecureRandom();

    private final JsonHttp http;
    private final String meta0;
    private final Map<String, String> meta1OfPrefix = new ConcurrentHashMap<>();
    private final Map<String, String> meta2OfCid = new ConcurrentHashMap<>();

    Directory(JsonHttp http, String meta0Url) {
        this.http = http;
        this.meta0 = meta0Url.replaceAll("/+$", "");
    }

    static String containerId(String account, String bucket) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            byte[] d = sha.digest((account + "\0" + bucket).getBytes(StandardCharsets.UTF_8));
            return hex(d).toUpperCase();
        } catch (NoSuchAlgorithmException ex) {
            throw new IllegalStateException(ex);
        }
    }

    static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            sb.append(Character.forDigit((b >> 4) & 15, 16)).append(Character.forDigit(b & 15, 16));
        }
        return sb.toString();
    }

    /** A random id: 32 random bytes, upper-case hex (content ids and chunk ids are of this form). */
    static String newId() {
        byte[] b = new byte[32];
        RANDOM.nextBytes(b);
        return hex(b).toUpperCase();
    }

    static String newOpId() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return hex(b);
    }

    // -- resolution --------------------------------------------------------------------------------

    private String meta1(String cid) throws IOException {
        String prefix = cid.substring(0, 4);
        String url = meta1OfPrefix.get(prefix);
        if (url == null) {
            url = Json.str(Json.object(http.get(meta0 + "/v1/meta0/" + prefix)), "addr");
            meta1OfPrefix.put(prefix, url);
        }
        return url;
    }

    private String meta2(String cid) throws IOException {
        String url = meta2OfCid.get(cid);
        if (url == null) {
            url = Json.str(Json.object(http.get(meta1(cid) + "/v1/meta1/" + cid)), "meta2_addr");
            meta2OfCid.put(cid, url);
        }
        return url;
    }

    private void forget(String cid) {
        meta2OfCid.remove(cid);
        meta1OfPrefix.remove(cid.substring(0, 4));
    }

    /** A call to the container's meta2: {@code path} after {@code /v1/meta2/CID}, with its query. */
    Object call(String account, String bucket, String method, String path, Object body, boolean idempotent)
            throws IOException {
        String cid = containerId(account, bucket);
        for (int attempt = 0; ; attempt++) {
            try {
                return http.call(method, meta2(cid) + "/v1/meta2/" + cid + path, body, idempotent);
            } catch (GridException ex) {
                if (ex.code.equals("NoSuchContainer") && attempt == 0) {
                    forget(cid); // a cached meta2 that no longer holds it: resolve once more
                    continue;
                }
                if (ex.code.equals("NoSuchContainer")) {
                    throw new GridException(404, ex.code, "no bucket '" + bucket + "' in account '" + account + "'");
                }
                if (ex.lostAnswer()) {
                    forget(cid);
                }
                throw ex;
            }
        }
    }

    /** POST a change named by {@code opId} (retried: the directory applies it once); settle a lost answer. */
    Object change(String account, String bucket, String path, Map<String, Object> body, String opId)
            throws IOException {
        String op = opId == null || opId.isEmpty() ? newOpId() : opId;
        Map<String, Object> sent = new LinkedHashMap<>(body);
        sent.put("op_id", op);
        GridException lost;
        try {
            return call(account, bucket, "POST", path, sent, true);
        } catch (GridException ex) {
            if (!ex.lostAnswer()) {
                throw ex;
            }
            lost = ex;
        }
        Map<String, Object> settled;
        try {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("op_id", op);
            settled = Json.object(call(account, bucket, "POST", "/resolve", q, true));
        } catch (GridException ex) {
            throw new GridException(503, "CommitOutcomeUnknown", path + " (op " + op + ") got no answer (" + lost
                    + ") and could not be settled (" + ex + "); its chunks are kept", lost);
        }
        if ("applied".equals(settled.get("state"))) {
            return settled.get("result");
        }
        throw new GridException(409, "OperationFenced", path + " (op " + op + ") got no answer (" + lost
                + ") and is now settled as never applied");
    }

    // -- containers ---------------------------------------------------------------------------------

    Map<String, Object> container(String account, String bucket) throws IOException {
        return Json.object(call(account, bucket, "GET", "/container" + JsonHttp.query("stats", "false"), null,
                false));
    }

    /** Create a bucket; one that exists already is fine (AlreadyExists is swallowed). */
    void createContainer(String account, String bucket) throws IOException {
        String cid = containerId(account, bucket);
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("account", account);
        body.put("name", bucket);
        body.put("policy", "");
        body.put("versioning", false);
        body.put("properties", new LinkedHashMap<String, Object>());
        body.put("op_id", newOpId());
        try {
            http.call("POST", meta1(cid) + "/v1/meta1/" + cid, body, true);
        } catch (GridException ex) {
            if (!ex.code.equals("AlreadyExists")) {
                throw ex;
            }
        }
        meta2OfCid.remove(cid);
    }

    // -- objects ------------------------------------------------------------------------------------

    ObjectRecord head(String account, String bucket, String key, boolean chunks) throws IOException {
        return ObjectRecord.fromJson(call(account, bucket, "GET", "/object" + JsonHttp.query("key", key,
                "chunks", chunks ? "true" : "false"), null, false));
    }

    /** A page of a listing: objects, common prefixes, and the token of the next page ("" at the end). */
    static final class Page {
        final List<ObjectRecord> objects = new ArrayList<>();
        final List<String> prefixes = new ArrayList<>();
        String next = "";
    }

    Page list(String account, String bucket, String prefix, String delimiter, String token, int maxKeys)
            throws IOException {
        Map<String, Object> m = Json.object(call(account, bucket, "GET", "/list" + JsonHttp.query("prefix", prefix,
                "delimiter", delimiter, "token", token, "max_keys", maxKeys), null, false));
        Page page = new Page();
        for (Object o : Json.list(m.get("objects"))) {
            page.objects.add(ObjectRecord.fromJson(o));
        }
        for (Object p : Json.list(m.get("prefixes"))) {
            page.prefixes.add(String.valueOf(p));
        }
        page.next = Json.bool(m, "truncated") ? Json.str(m, "next_token") : "";
        return page;
    }

    /** Record an object version; its op id is its content id. */
    ObjectRecord commit(ObjectRecord record, boolean ifNoneMatch) throws IOException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("object", record.toJson());
        body.put("if_none_match", ifNoneMatch);
        Object out = change(record.account, record.bucket, "/commit", body, record.contentId);
        return ObjectRecord.fromJson(Json.object(out).get("object"));
    }

    void delete(String account, String bucket, String key) throws IOException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("key", key);
        body.put("version", null);
        change(account, bucket, "/delete", body, null);
    }

    /** Metadata-only rename: no chunk is read or written. */
    ObjectRecord rename(String account, String bucket, String src, String dst) throws IOException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("src", src);
        body.put("dst", dst);
        return ObjectRecord.fromJson(Json.object(change(account, bucket, "/rename", body, null)).get("object"));
    }

    /** Set (a value) or remove (null) properties of the latest version of an object. */
    ObjectRecord setProperties(String account, String bucket, String key, Map<String, String> properties)
            throws IOException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("key", key);
        body.put("properties", properties);
        body.put("version", null);
        body.put("replace", false);
        return ObjectRecord.fromJson(change(account, bucket, "/properties", body, null));
    }
}
