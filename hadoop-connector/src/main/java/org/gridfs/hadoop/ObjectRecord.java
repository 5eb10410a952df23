// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * An object version as the directory records it (gridfs/directory/model.py's ObjectInfo): its size, policy and
 * chunk method, checksums, properties, and, when asked for, where its chunks are: metachunks of {@code size}
 * user bytes at {@code offset}, each stored as chunks (EC shares 0..k+m-1, or copies).
 */
final class ObjectRecord {
    /** One chunk file on one storage server. */
    static final class Chunk {
        final String url; // rawx://SERVICE_ID/CHUNK_ID, or http://HOST:PORT/chunk/CHUNK_ID in old records
        final int sub; // EC share number, or copy number
        final long size;
        final String hash; // xxh3_64 hex of the chunk's bytes

        Chunk(String url, int sub, long size, String hash) {
            this.url = url;
            this.sub = sub;
            this.size = size;
            this.hash = hash;
        }

        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("url", url);
            m.put("sub", sub);
            m.put("size", size);
            m.put("hash", hash);
            return m;
        }
    }

    /** {@code size} user bytes of the object at {@code offset}, stored as {@code chunks}. */
    static final class Metachunk {
        final int pos;
        final long offset;
        final long size;
        final List<Chunk> chunks;
        final List<Integer> missing; // positions that could not be written, left for repair

        Metachunk(int pos, long offset, long size, List<Chunk> chunks, List<Integer> missing) {
            this.pos = pos;
            this.offset = offset;
            this.size = size;
            this.chunks = chunks;
            this.missing = missing;
        }

        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pos", pos);
            m.put("offset", offset);
            m.put("size", size);
            List<Object> cs = new ArrayList<>();
            for (Chunk c : chunks) {
                cs.add(c.toJson());
            }
            m.put("chunks", cs);
            m.put("missing", missing);
            return m;
        }
    }

    String account = "";
    String bucket = "";
    String key = "";
    long version;
    String contentId = "";
    long size;
    double mtime;
    String policy = "";
    String chunkMethod = "";
    String hash = ""; // xxh3_128 of the whole object; "" when not known (the connector does not compute it)
    String crc32c = ""; // CRC32C of the whole object, 8 lowercase hex digits; "" when not known
    String mimeType = "application/octet-stream";
    Map<String, String> properties = new LinkedHashMap<>();
    List<Metachunk> metachunks = new ArrayList<>();

    static ObjectRecord fromJson(Object json) {
        Map<String, Object> m = Json.object(json);
        ObjectRecord r = new ObjectRecord();
        r.account = Json.str(m, "account");
        r.bucket = Json.str(m, "bucket");
        r.key = Json.str(m, "key");
        r.version = Json.num(m, "version");
        r.contentId = Json.str(m, "content_id");
        r.size = Json.num(m, "size");
        r.mtime = Json.real(m, "mtime");
        r.policy = Json.str(m, "policy");
        r.chunkMethod = Json.str(m, "chunk_method");
        r.hash = Json.str(m, "hash");
        r.crc32c = Json.str(m, "crc32c");
        r.mimeType = Json.str(m, "mime_type");
        Object props = m.get("properties");
        if (props instanceof Map) {
            for (Map.Entry<String, Object> e : Json.object(props).entrySet()) {
                r.properties.put(e.getKey(), String.valueOf(e.getValue()));
            }
        }
        for (Object mcJson : Json.list(m.get("metachunks"))) {
            Map<String, Object> mc = Json.object(mcJson);
            List<Chunk> chunks = new ArrayList<>();
            for (Object cJson : Json.list(mc.get("chunks"))) {
                Map<String, Object> c = Json.object(cJson);
                chunks.add(new Chunk(Json.str(c, "url"), (int) Json.num(c, "sub"), Json.num(c, "size"),
                        Json.str(c, "hash")));
            }
            List<Integer> missing = new ArrayList<>();
            for (Object sub : Json.list(mc.get("missing"))) {
                missing.add(((Number) sub).intValue());
            }
            r.metachunks.add(new Metachunk((int) Json.num(mc, "pos"), Json.num(mc, "offset"), Json.num(mc, "size"),
                    chunks, missing));
        }
        return r;
    }

    /** The record a commit sends (the directory fills in version and mtime). */
    Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("account", account);
        m.put("bucket", bucket);
        m.put("key", key);
        m.put("content_id", contentId);
        m.put("size", size);
        m.put("policy", policy);
        m.put("chunk_method", chunkMethod);
        m.put("hash", hash);
        m.put("crc32c", crc32c);
        m.put("mime_type", mimeType);
        m.put("properties", properties);
        List<Object> mcs = new ArrayList<>();
        for (Metachunk mc : metachunks) {
            mcs.add(mc.toJson());
        }
        m.put("metachunks", mcs);
        return m;
    }
}
