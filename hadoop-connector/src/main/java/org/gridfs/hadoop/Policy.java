// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A storage policy, as gridfs/coding/policies.py defines it: a name, copies or Reed-Solomon (k data + m parity
 * chunks, computed by the zfec or the ISA-L matrix), and the chunk method string recorded with every object
 * ({@code ec/k=6,m=3,codec=zfec}, {@code copies/n=3}), from which the object is read back whatever the
 * namespace's policies are then.
 */
final class Policy {
    final String name;
    final boolean ec;
    final int copies;
    final int k;
    final int m;
    final String codec;

    private Policy(String name, boolean ec, int copies, int k, int m, String codec) {
        this.name = name;
        this.ec = ec;
        this.copies = copies;
        this.k = k;
        this.m = m;
        this.codec = codec;
    }

    static Policy copies(String name, int n) {
        return new Policy(name, false, n, 1, 0, "");
    }

    static Policy ec(String name, int k, int m, String codec) {
        if (!codec.equals("zfec") && !codec.equals("isal")) {
            throw new IllegalArgumentException("policy " + name + ": unknown codec " + codec);
        }
        return new Policy(name, true, 1, k, m, codec);
    }

    static final Map<String, Policy> BUILTIN = new LinkedHashMap<>();

    static {
        for (Policy p : new Policy[] {
            copies("SINGLE", 1), copies("TWOCOPIES", 2), copies("THREECOPIES", 3),
            ec("EC21", 2, 1, "zfec"), ec("EC42", 4, 2, "zfec"), ec("EC63", 6, 3, "zfec"),
            ec("EC42-ISAL", 4, 2, "isal"), ec("EC63-ISAL", 6, 3, "isal"),
        }) {
            BUILTIN.put(p.name, p);
        }
    }

    /** A policy declared in grid.toml's [policies.NAME] table, e.g. {@code {method="ec", k=8, m=4}}. */
    static Policy declared(String name, Map<String, Object> spec) {
        Object method = spec.get("method");
        if ("copies".equals(method)) {
            int n = (int) Json.num(spec, spec.containsKey("copies") ? "copies" : "n");
            if (n < 1 || n > 16) {
                throw new IllegalArgumentException("policy " + name + ": copies must be 1-16");
            }
            return copies(name, n);
        }
        if ("ec".equals(method)) {
            int k = (int) Json.num(spec, "k");
            int m = (int) Json.num(spec, "m");
            if (k < 1 || k > 32 || m < 1 || m > 16) {
                throw new IllegalArgumentException("policy " + name + ": k must be 1-32 and m 1-16");
            }
            Object codec = spec.get("codec");
            return ec(name, k, m, codec == null ? "zfec" : String.valueOf(codec));
        }
        throw new IllegalArgumentException("policy " + name + ": method must be 'copies' or 'ec', got " + method);
    }

    /** The policy an object was written with, from the chunk method its record carries. */
    static Policy fromChunkMethod(String name, String chunkMethod) {
        int slash = chunkMethod.indexOf('/');
        String method = slash < 0 ? chunkMethod : chunkMethod.substring(0, slash);
        Map<String, String> kv = new LinkedHashMap<>();
        if (slash >= 0) {
            for (String part : chunkMethod.substring(slash + 1).split(",")) {
                int eq = part.indexOf('=');
                if (eq > 0) {
                    kv.put(part.substring(0, eq), part.substring(eq + 1));
                }
            }
        }
        try {
            if (method.equals("copies")) {
                return copies(name, Integer.parseInt(kv.get("n")));
            }
            if (method.equals("ec")) {
                return ec(name, Integer.parseInt(kv.get("k")), Integer.parseInt(kv.get("m")),
                        kv.getOrDefault("codec", "zfec"));
            }
        } catch (NumberFormatException | NullPointerException ex) {
            // reported below
        }
        throw new IllegalArgumentException("unreadable chunk method '" + chunkMethod + "'");
    }

    /** Chunks per metachunk. */
    int width() {
        return ec ? k + m : copies;
    }

    /** Chunks that must be stored before a metachunk counts as written (the rest are recorded missing). */
    int minDurable() {
        return ec ? Math.min(k + 1, k + m) : copies;
    }

    /** User bytes per metachunk: k data chunks for EC, one chunk for copies. */
    long metachunkSize(long chunkSize) {
        return ec ? chunkSize * k : chunkSize;
    }

    String chunkMethod() {
        return ec ? "ec/k=" + k + ",m=" + m + ",codec=" + codec : "copies/n=" + copies;
    }

    @Override
    public String toString() {
        return name + " (" + chunkMethod() + ")";
    }
}
