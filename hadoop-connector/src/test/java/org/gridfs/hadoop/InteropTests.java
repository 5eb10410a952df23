// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileRange;
import org.apache.hadoop.fs.Path;

import org.gridfs.hadoop.TestRunner.Test;

/**
 * The connector against the Python client on one grid, through a fixtures folder both sides read:
 * {@code manifest.json} lists objects Python wrote ({@code [{"key", "file", "policy"}]}, the bytes in
 * {@code file}); {@code java-manifest.json} lists those Java writes, for Python to check byte for byte.
 */
final class InteropTests {
    private InteropTests() {
    }

    static List<Map<String, Object>> manifest(TestContext ctx, String name) throws IOException {
        List<Map<String, Object>> out = new ArrayList<>();
        String text = new String(Files.readAllBytes(Paths.get(ctx.fixtures, name)), StandardCharsets.UTF_8);
        for (Object o : Json.list(Json.parse(text))) {
            out.add(Json.object(o));
        }
        return out;
    }

    static byte[] expected(TestContext ctx, Map<String, Object> entry) throws IOException {
        return Files.readAllBytes(Paths.get(ctx.fixtures, Json.str(entry, "file")));
    }

    /** Whole reads, odd positioned reads and a vectored read of one object, compared with its bytes. */
    static void readAndCompare(GridFileSystem fs, Path p, byte[] b, long seed) throws Exception {
        Check.eq((long) b.length, fs.getFileStatus(p).getLen(), "length of " + p);
        Check.bytes(b, ContractTests.readAll(fs, p), "whole " + p);
        Random rng = new Random(seed);
        try (FSDataInputStream in = fs.open(p)) {
            for (int i = 0; i < 12 && b.length > 0; i++) {
                int off = rng.nextInt(b.length);
                int len = rng.nextInt(b.length - off + 1);
                byte[] got = new byte[len];
                in.readFully(off, got);
                Check.bytes(Arrays.copyOfRange(b, off, off + len), got, p + " at " + off + "+" + len);
            }
            List<FileRange> ranges = new ArrayList<>();
            for (int i = 0; i < 5 && b.length > 0; i++) {
                int off = rng.nextInt(b.length);
                ranges.add(FileRange.createFileRange(off, rng.nextInt(Math.min(b.length - off, 100_000) + 1)));
            }
            in.readVectored(ranges, ByteBuffer::allocate);
            for (FileRange r : ranges) {
                ByteBuffer bb = r.getData().get();
                byte[] got = new byte[bb.remaining()];
                bb.get(got);
                int off = (int) r.getOffset();
                Check.bytes(Arrays.copyOfRange(b, off, off + r.getLength()), got, p + " vectored " + r);
            }
        }
    }

    /** Objects the Python client wrote (zfec and ISA-L EC, copies), read by Java. */
    public static final class Read extends LiveSuite {
        Read(TestContext ctx) {
            super(ctx);
        }

        @Test
        public void everyPythonObjectReadsByteForByte() throws Exception {
            long before = fs.grid().rebuilds.get();
            for (Map<String, Object> e : manifest(ctx, "manifest.json")) {
                readAndCompare(fs, new Path("/" + Json.str(e, "key")), expected(ctx, e), e.hashCode());
            }
            Check.eq(before, fs.grid().rebuilds.get(), "a healthy grid needs no rebuild");
        }

        @Test
        public void concurrentReadersOfEveryObject() throws Exception {
            List<Map<String, Object>> objects = manifest(ctx, "manifest.json");
            ExecutorService pool = Executors.newFixedThreadPool(6);
            try {
                List<Future<Void>> results = new ArrayList<>();
                for (int t = 0; t < 6; t++) {
                    int seed = t;
                    results.add(pool.submit(() -> {
                        for (Map<String, Object> e : objects) {
                            readAndCompare(fs, new Path("/" + Json.str(e, "key")), expected(ctx, e), seed);
                        }
                        return null;
                    }));
                }
                for (Future<Void> f : results) {
                    f.get();
                }
            } finally {
                pool.shutdownNow();
            }
        }
    }

    /** After Python deleted, corrupted or stopped chunks and servers: every read still gives the bytes. */
    public static final class Degraded extends LiveSuite {
        Degraded(TestContext ctx) {
            super(ctx);
        }

        @Test
        public void damagedObjectsAreRebuiltFromParityOrCopies() throws Exception {
            for (Map<String, Object> e : manifest(ctx, "manifest.json")) {
                long before = fs.grid().rebuilds.get();
                Path p = new Path("/" + Json.str(e, "key"));
                Check.bytes(expected(ctx, e), ContractTests.readAll(fs, p), "whole " + p);
                if (Json.bool(e, "expect_rebuild")) {
                    Check.that(fs.grid().rebuilds.get() > before, p + ": read without rebuilding anything, "
                            + "yet Python damaged it");
                }
                readAndCompare(fs, p, expected(ctx, e), 11);
            }
        }

        @Test
        public void writesGoAroundLostServers() throws Exception {
            // Six wide at most: 8 of the 9 servers are left, and the conscience may still list the dead one.
            for (String policy : new String[] {"EC42", "EC42-ISAL", "THREECOPIES"}) {
                try (GridFileSystem w = ctx.fs("fs.grid.policy", policy)) {
                    Path p = new Path("/degraded-writes/" + policy);
                    byte[] b = ContractTests.data(3 * 1024 * 1024 + 17, policy.hashCode());
                    ContractTests.write(w, p, b, true);
                    readAndCompare(fs, p, b, 5);
                }
            }
        }
    }

    /**
     * A commit whose answer is lost: Python armed meta2 to SIGKILL itself right after committing, and restarts
     * it; the connector re-sends the commit (its op id is the content id) until meta2 answers with the
     * recorded result. The file must be whole and committed once, its chunks kept.
     */
    public static final class Crash extends LiveSuite {
        Crash(TestContext ctx) {
            super(ctx);
        }

        @Test
        public void commitAnsweredAfterTheDirectoryRestarts() throws Exception {
            Path p = new Path("/crash/k");
            byte[] b = ContractTests.data(700_000, 42);
            ContractTests.write(fs, p, b, true); // meta2 dies after applying this commit, before answering
            Check.bytes(b, ContractTests.readAll(fs, p), "the file committed while meta2 restarted");
            Files.write(Paths.get(ctx.fixtures, "crash.bin"), b);
        }
    }

    /** Objects Java writes for the Python client to read back (tests/test_hadoop_connector.py checks them). */
    public static final class Write {
        private final TestContext ctx;

        Write(TestContext ctx) {
            this.ctx = ctx;
        }

        @Test
        public void writeObjectsForPython() throws Exception {
            List<Object> written = new ArrayList<>();
            int n = 0;
            for (String policy : new String[] {"EC63", "EC63-ISAL", "EC42", "THREECOPIES", "SINGLE", ""}) {
                try (GridFileSystem fs = policy.isEmpty() ? ctx.fs() : ctx.fs("fs.grid.policy", policy)) {
                    long meta = fs.grid().settings.policy(policy.isEmpty() ? fs.grid().settings.policyForSize(-1)
                            : policy).metachunkSize(fs.grid().settings.chunkSize);
                    for (long size : new long[] {0, 1, 4097, meta - 1, meta + 1, 3 * meta + 12345}) {
                        String key = "from-java/" + (policy.isEmpty() ? "default" : policy) + "/" + size;
                        byte[] b = ContractTests.data((int) size, ++n);
                        ContractTests.write(fs, new Path("/" + key), b, true);
                        String file = "java-" + n + ".bin";
                        Files.write(Paths.get(ctx.fixtures, file), b);
                        Map<String, Object> e = new LinkedHashMap<>();
                        e.put("key", key);
                        e.put("file", file);
                        e.put("policy", policy);
                        e.put("crc32c", ContractTests.crc32c(b));
                        written.add(e);
                    }
                }
            }
            Files.write(Paths.get(ctx.fixtures, "java-manifest.json"),
                    Json.write(written).getBytes(StandardCharsets.UTF_8));
        }
    }
}
