// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;

/**
 * Where the grid is and how to write to it: the same {@code grid.toml} every Python client reads (found through
 * {@code fs.grid.config}, then {@code $GRID_CONFIG}, then {@code ~/.gridfs/grid.toml}), each value overridable
 * by a Hadoop setting. Without a grid.toml, {@code fs.grid.conscience.url}, {@code fs.grid.directory.url} and
 * {@code fs.grid.secret} are enough.
 *
 * <table>
 *   <caption>Settings</caption>
 *   <tr><td>fs.grid.config</td><td>path of grid.toml (or of its folder)</td></tr>
 *   <tr><td>fs.grid.account</td><td>grid account whose buckets grid://BUCKET names (default "default")</td></tr>
 *   <tr><td>fs.grid.conscience.url, fs.grid.directory.url, fs.grid.secret</td><td>override grid.toml</td></tr>
 *   <tr><td>fs.grid.chunk.size</td><td>bytes per chunk (grid.toml's namespace.chunk_size)</td></tr>
 *   <tr><td>fs.grid.policy</td><td>policy of every object written (default: the bucket's, else by size)</td></tr>
 *   <tr><td>fs.grid.connect.timeout</td><td>seconds to connect to a storage server (namespace.connect_timeout)</td></tr>
 *   <tr><td>fs.grid.threads</td><td>chunk transfers in flight per file system (24)</td></tr>
 *   <tr><td>fs.grid.write.depth</td><td>metachunks in flight per output stream (2)</td></tr>
 *   <tr><td>fs.grid.readahead</td><td>bytes a sequential input stream reads at once (4 MiB)</td></tr>
 *   <tr><td>fs.grid.readahead.depth</td><td>such reads ahead of a sequential reader, in parallel (4)</td></tr>
 *   <tr><td>fs.grid.block.size</td><td>block size reported to Hadoop, for splits (128 MiB)</td></tr>
 *   <tr><td>fs.grid.list.page</td><td>entries asked of the directory per listing call (1000, its maximum)</td></tr>
 * </table>
 */
final class GridSettings {
    static final long DEFAULT_CHUNK_SIZE = 8L << 20;
    static final String DEFAULT_POLICY = "EC63";

    /** An object of at most {@code maxSize} bytes gets {@code policy} (the first rule that matches wins). */
    static final class SizeRule {
        final long maxSize;
        final String policy;

        SizeRule(long maxSize, String policy) {
            this.maxSize = maxSize;
            this.policy = policy;
        }
    }

    String conscienceUrl = "";
    String directoryUrl = "";
    String secret = "";
    String account = "default";
    long chunkSize = DEFAULT_CHUNK_SIZE;
    String defaultPolicy = DEFAULT_POLICY;
    String forcedPolicy = "";
    final List<SizeRule> sizeRules = new ArrayList<>();
    final Map<String, Policy> policies = new LinkedHashMap<>(Policy.BUILTIN);
    double connectTimeout = 0.5;
    int threads = 24;
    int writeDepth = 2;
    int readahead = 4 << 20;
    int readaheadDepth = 4;
    long blockSize = 128L << 20;
    int listPage = 1000;
    String source = "Hadoop settings";

    static GridSettings load(Configuration conf) throws IOException {
        GridSettings s = new GridSettings();
        Path file = configPath(conf.get("fs.grid.config", ""));
        try {
            s.read(Toml.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8)));
            s.source = file.toString();
        } catch (NoSuchFileException ex) {
            if (conf.get("fs.grid.conscience.url") == null || conf.get("fs.grid.directory.url") == null) {
                throw new IOException("no grid configuration at " + file + ": start a grid with 'grid up', "
                        + "set fs.grid.config or GRID_CONFIG, or set fs.grid.conscience.url, fs.grid.directory.url "
                        + "and fs.grid.secret");
            }
        } catch (IllegalArgumentException ex) {
            throw new IOException(file + ": " + ex.getMessage(), ex);
        }
        s.conscienceUrl = conf.getTrimmed("fs.grid.conscience.url", s.conscienceUrl);
        s.directoryUrl = conf.getTrimmed("fs.grid.directory.url", s.directoryUrl);
        s.secret = conf.getTrimmed("fs.grid.secret", s.secret);
        s.account = conf.getTrimmed("fs.grid.account", s.account);
        s.chunkSize = conf.getLongBytes("fs.grid.chunk.size", s.chunkSize);
        s.forcedPolicy = conf.getTrimmed("fs.grid.policy", "");
        s.connectTimeout = conf.getDouble("fs.grid.connect.timeout", s.connectTimeout);
        s.threads = conf.getInt("fs.grid.threads", s.threads);
        s.writeDepth = conf.getInt("fs.grid.write.depth", s.writeDepth);
        s.readahead = (int) conf.getLongBytes("fs.grid.readahead", s.readahead);
        s.readaheadDepth = conf.getInt("fs.grid.readahead.depth", s.readaheadDepth);
        s.blockSize = conf.getLongBytes("fs.grid.block.size", s.blockSize);
        s.listPage = conf.getInt("fs.grid.list.page", s.listPage);
        s.check();
        return s;
    }

    static Path configPath(String configured) {
        String chosen = configured;
        if (chosen.isEmpty()) {
            String env = System.getenv("GRID_CONFIG");
            chosen = env != null && !env.isEmpty() ? env
                    : Paths.get(System.getProperty("user.home"), ".gridfs", "grid.toml").toString();
        }
        Path p = Paths.get(chosen);
        return Files.isDirectory(p) ? p.resolve("grid.toml") : p;
    }

    void read(Map<String, Object> toml) {
        Map<String, Object> ns = section(toml, "namespace");
        secret = Json.str(ns, "secret");
        if (ns.containsKey("chunk_size")) {
            chunkSize = Json.num(ns, "chunk_size");
        }
        if (ns.containsKey("default_policy")) {
            defaultPolicy = Json.str(ns, "default_policy");
        }
        if (ns.containsKey("connect_timeout")) {
            connectTimeout = ((Number) ns.get("connect_timeout")).doubleValue();
        }
        for (Object rule : Json.list(ns.get("size_rules"))) {
            Map<String, Object> r = Json.object(rule);
            sizeRules.add(new SizeRule(Json.num(r, "max_size"), Json.str(r, "policy")));
        }
        conscienceUrl = Json.str(section(toml, "conscience"), "url");
        directoryUrl = Json.str(section(toml, "directory"), "url");
        for (Map.Entry<String, Object> e : section(toml, "policies").entrySet()) {
            policies.put(e.getKey(), Policy.declared(e.getKey(), Json.object(e.getValue())));
        }
    }

    private static Map<String, Object> section(Map<String, Object> toml, String name) {
        Object v = toml.get(name);
        return v instanceof Map ? Json.object(v) : new LinkedHashMap<>();
    }

    private void check() throws IOException {
        if (conscienceUrl.isEmpty() || directoryUrl.isEmpty()) {
            throw new IOException(source + " names no conscience or directory URL: is the grid up?");
        }
        if (chunkSize < 4096 || chunkSize > (256L << 20)) {
            throw new IOException("chunk size " + chunkSize + " is outside 4 KiB-256 MiB");
        }
        if (!forcedPolicy.isEmpty()) {
            policy(forcedPolicy);
        }
        if (threads < 1 || writeDepth < 1 || readahead < 1 || readaheadDepth < 0 || listPage < 1 || listPage > 1000) {
            throw new IOException("fs.grid.threads, fs.grid.write.depth and fs.grid.readahead must be positive, "
                    + "fs.grid.readahead.depth at least 0, "
                    + "fs.grid.list.page 1-1000");
        }
    }

    Policy policy(String name) throws IOException {
        Policy p = policies.get(name);
        if (p == null) {
            throw new IOException("unknown storage policy '" + name + "'; known: " + policies.keySet());
        }
        return p;
    }

    /** The policy name the namespace gives an object of {@code size} bytes (-1: not known yet). */
    String policyForSize(long size) {
        if (size >= 0) {
            for (SizeRule r : sizeRules) {
                if (size <= r.maxSize) {
                    return r.policy;
                }
            }
        }
        return defaultPolicy;
    }

    /** The largest size a size rule names: a stream buffers this much before it must choose a policy. */
    long sizeRuleLimit() {
        long max = 0;
        for (SizeRule r : sizeRules) {
            max = Math.max(max, r.maxSize);
        }
        return max;
    }
}
