// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What one file system instance shares between its streams: the grid's clients (directory, conscience, storage
 * servers), reused buffers, and three thread pools, so that no task ever waits on a task queued behind it in
 * its own pool (gridfs/client/context.py): {@code ranges} runs whole reads (vectored ranges, read-ahead),
 * {@code metachunks} one metachunk each (encode, place, fan out; or gather and decode), {@code chunks} the
 * chunk transfers themselves.
 */
final class Grid implements AutoCloseable {
    static final long BUCKET_POLICY_TTL_NANOS = 5_000_000_000L;
    /** Idle buffers of one size kept for reuse, in bytes at most (one buffer at least). */
    static final long KEEP_BYTES = 128L << 20;

    final GridSettings settings;
    final Directory directory;
    final Services services;
    final ChunkClient chunks;
    final ExecutorService ranges;
    final ExecutorService metachunks;
    final ExecutorService chunkPool;
    /** Metachunk ranges rebuilt from parity since this file system started (tests read it). */
    final AtomicLong rebuilds = new AtomicLong();
    private final Map<String, Object[]> bucketPolicy = new ConcurrentHashMap<>();
    private final Map<Integer, Deque<byte[]>> free = new ConcurrentHashMap<>();

    Grid(GridSettings settings) {
        this.settings = settings;
        JsonHttp http = new JsonHttp(settings.secret, 30.0, JsonHttp.RETRY_FOR);
        this.directory = new Directory(http, settings.directoryUrl);
        this.services = new Services(new JsonHttp(settings.secret, 10.0, 1.0), settings.conscienceUrl, 1.0);
        this.chunks = new ChunkClient(settings.secret, services, settings.connectTimeout);
        this.ranges = pool("grid-range", 16);
        this.metachunks = pool("grid-meta", 8);
        this.chunkPool = pool("grid-chunk", settings.threads);
    }

    private static ExecutorService pool(String name, int threads) {
        AtomicInteger n = new AtomicInteger();
        ThreadFactory factory = r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
        return Executors.newFixedThreadPool(threads, factory);
    }

    @Override
    public void close() {
        ranges.shutdownNow();
        metachunks.shutdownNow();
        chunkPool.shutdownNow();
        free.clear();
    }

    /** The policy for a new object: fs.grid.policy, else the bucket's; null when the size decides it. */
    Policy fixedPolicy(String account, String bucket) throws IOException {
        if (!settings.forcedPolicy.isEmpty()) {
            return settings.policy(settings.forcedPolicy);
        }
        Object[] cached = bucketPolicy.get(bucket);
        if (cached == null || System.nanoTime() - (long) cached[1] > BUCKET_POLICY_TTL_NANOS) {
            String name = Json.str(directory.container(account, bucket), "policy");
            cached = new Object[] {name, System.nanoTime()};
            bucketPolicy.put(bucket, cached);
        }
        String name = (String) cached[0];
        return name.isEmpty() ? null : settings.policy(name);
    }

    // -- buffers ------------------------------------------------------------------------------------

    /** A buffer of at least {@code size} bytes (contents undefined), reused when one is free. */
    byte[] acquire(int size) {
        int cls = Math.max(1 << 20, (int) Math.min(Integer.MAX_VALUE - 8, ((size + (1L << 20) - 1) >> 20) << 20));
        Deque<byte[]> stack = free.get(cls);
        if (stack != null) {
            synchronized (stack) {
                byte[] b = stack.poll();
                if (b != null) {
                    return b;
                }
            }
        }
        return new byte[cls];
    }

    void release(byte[] buf) {
        if (buf == null || buf.length < (1 << 20)) {
            return;
        }
        Deque<byte[]> stack = free.computeIfAbsent(buf.length, k -> new ArrayDeque<>());
        // Enough for a stream's next metachunks, but never more than KEEP_BYTES of one size kept idle.
        int keep = (int) Math.max(1, Math.min(settings.writeDepth + 2, KEEP_BYTES / buf.length));
        synchronized (stack) {
            if (stack.size() < keep) {
                stack.push(buf);
            }
        }
    }

    // -- futures ------------------------------------------------------------------------------------

    /** The value of a future, with its failure as the IOException it was (or wrapped in one). */
    static <T> T await(Future<T> f) throws IOException {
        try {
            return f.get();
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted");
        } catch (ExecutionException ex) {
            Throwable cause = ex.getCause();
            if (cause instanceof IOException) {
                throw (IOException) cause;
            }
            if (cause instanceof RuntimeException) {
                throw (RuntimeException) cause;
            }
            if (cause instanceof Error) {
                throw (Error) cause;
            }
            throw new IOException(cause);
        }
    }
}
