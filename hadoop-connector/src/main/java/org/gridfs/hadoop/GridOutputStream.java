// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.io.OutputStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.zip.CRC32C;

import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.StreamCapabilities;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A new object, streamed in metachunks and visible only once {@link #close()} commits it (gridfs/client/
 * writer.py): each full metachunk is striped (EC: k data chunks, views of the buffer, plus m parity chunks;
 * copies: the buffer n times), placed on servers drawn by score, and sent to all of them at once while the
 * stream fills the next one ({@code fs.grid.write.depth} metachunks in flight). A chunk that fails is sent
 * to another server; a metachunk counts as written once the policy's minimum of chunks is stored, the
 * positions still missing being recorded for repair.
 *
 * <p>{@code close()} commits the object record with the stream's content id as op id, its size and the
 * CRC32C of every byte written (Hadoop's COMPOSITE-CRC32C of the file); its xxh3-128 hash is left unknown
 * (""). Until then nothing is visible: {@code flush()}, {@code hflush()} and {@code hsync()} do not publish
 * data (the stream does not claim those capabilities). When the write or the commit fails, the chunks written
 * are deleted, unless the directory's answer to the commit was lost: then they are kept, since the commit
 * may have landed ({@code grid crawl} reclaims them if it did not).
 *
 * <p>The policy is fs.grid.policy, else the bucket's; else the size decides: the stream holds up to the
 * largest size rule's bytes before it commits to the namespace's default policy, so small files get the
 * small-object policy (copies) as they do from the Python client.
 */
final class GridOutputStream extends OutputStream implements StreamCapabilities {
    private static final Logger LOG = LoggerFactory.getLogger(GridOutputStream.class);
    static final int PLACEMENT_ATTEMPTS = 3;

    private final Grid grid;
    private final ObjectRecord record = new ObjectRecord();
    private final boolean overwrite;
    private final CRC32C crc = new CRC32C();
    private final long peekLimit;
    private Policy policy;
    private ReedSolomon codec;
    private long metaSize;

    private byte[] cur;
    private int curLen;
    private long total;
    private int nextPos;
    private long sent; // bytes handed to metachunks so far: the offset of the next one
    private final Deque<Future<ObjectRecord.Metachunk>> pending = new ArrayDeque<>();
    private final List<ObjectRecord.Metachunk> done = new ArrayList<>();
    private final List<String> written = new ArrayList<>(); // every chunk stored, to delete on failure
    private IOException failure;
    private boolean closed;

    GridOutputStream(Grid grid, String bucket, String key, Policy fixed, boolean overwrite,
            Map<String, String> properties) {
        this.grid = grid;
        this.overwrite = overwrite;
        record.account = grid.settings.account;
        record.bucket = bucket;
        record.key = key;
        record.contentId = Directory.newId();
        record.properties.putAll(properties);
        this.peekLimit = fixed == null ? grid.settings.sizeRuleLimit() : 0;
        if (fixed != null) {
            choose(fixed);
        }
    }

    private String name() {
        return "grid://" + record.bucket + "/" + record.key;
    }

    private void choose(Policy p) {
        policy = p;
        codec = p.ec ? ReedSolomon.of(p.codec, p.k, p.m) : null;
        metaSize = p.metachunkSize(grid.settings.chunkSize);
    }

    private void checkOpen() throws IOException {
        if (closed) {
            throw new IOException(name() + ": the stream is closed");
        }
        if (failure != null) {
            throw new IOException(name() + ": an earlier write failed: " + failure.getMessage(), failure);
        }
    }

    @Override
    public synchronized void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) throws IOException {
        checkOpen();
        if (off < 0 || len < 0 || len > b.length - off) {
            throw new IndexOutOfBoundsException("offset " + off + ", length " + len + ", buffer " + b.length);
        }
        crc.update(b, off, len);
        total += len; // FSDataOutputStream counts the bytes in the file system's statistics
        try {
            while (len > 0) {
                if (policy == null && curLen + len > peekLimit) {
                    choose(grid.settings.policy(grid.settings.policyForSize(-1))); // too big for the size rules
                    sendFullMetachunks();
                }
                long cap = policy == null ? peekLimit : metaSize;
                int n = (int) Math.min(len, cap - curLen);
                reserve(curLen + n);
                System.arraycopy(b, off, cur, curLen, n);
                curLen += n;
                off += n;
                len -= n;
                if (policy != null && curLen == metaSize) {
                    send(cur, curLen);
                    cur = null;
                    curLen = 0;
                }
            }
        } catch (IOException | RuntimeException ex) {
            failure = ex instanceof IOException ? (IOException) ex : new IOException(ex);
            throw ex;
        }
    }

    /**
     * Room for {@code needed} bytes in the current buffer. The first metachunk's buffer grows as data comes
     * (a small file never takes a whole metachunk); later ones are whole metachunks from the pool.
     */
    private void reserve(long needed) {
        if (cur != null && cur.length >= needed) {
            return;
        }
        long want;
        if (policy != null && nextPos > 0) {
            want = metaSize;
        } else {
            long cap = policy == null ? Math.max(peekLimit, 1) : metaSize;
            want = Math.max(needed, Math.min(cap, Math.max(64 << 10, cur == null ? 0 : 2L * cur.length)));
        }
        byte[] bigger = want >= (1 << 20) ? grid.acquire((int) want) : new byte[(int) want];
        if (cur != null) {
            System.arraycopy(cur, 0, bigger, 0, curLen);
            grid.release(cur);
        }
        cur = bigger;
    }

    /** Once the policy is chosen late: send what the peek buffer holds beyond one metachunk. */
    private void sendFullMetachunks() throws IOException {
        while (curLen > metaSize) {
            byte[] head = metaSize >= (1 << 20) ? grid.acquire((int) metaSize) : new byte[(int) metaSize];
            System.arraycopy(cur, 0, head, 0, (int) metaSize);
            System.arraycopy(cur, (int) metaSize, cur, 0, curLen - (int) metaSize);
            curLen -= (int) metaSize;
            send(head, (int) metaSize);
        }
    }

    /** Hand a metachunk to the metachunk pool (which returns its buffer); wait for the oldest beyond the depth. */
    private void send(byte[] data, int size) throws IOException {
        while (pending.size() >= grid.settings.writeDepth) {
            done.add(Grid.await(pending.removeFirst()));
        }
        byte[] buf = data;
        if (codec != null) {
            int room = codec.k * ObjectReader.chunkSize(size, codec.k); // k chunks, the last one zero-padded
            if (buf.length < room) {
                buf = java.util.Arrays.copyOf(data, room);
                grid.release(data);
            }
        }
        byte[] owned = buf;
        int pos = nextPos++;
        long offset = sent;
        sent += size;
        pending.addLast(grid.metachunks.submit(() -> {
            try {
                return writeMetachunk(pos, offset, owned, size);
            } finally {
                grid.release(owned);
            }
        }));
    }

    @Override
    public void flush() {
        // Nothing is visible before close: data waits for its metachunk to fill.
    }

    @Override
    public boolean hasCapability(String capability) {
        return false; // no hflush, no hsync: data is visible on close only
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        boolean keepChunks = false;
        try {
            if (failure != null) {
                throw new IOException(name() + ": not committed, an earlier write failed: " + failure.getMessage(),
                        failure);
            }
            if (policy == null) {
                choose(grid.settings.policy(grid.settings.policyForSize(total)));
                sendFullMetachunks();
            }
            if (curLen > 0) {
                send(cur, curLen);
                cur = null;
                curLen = 0;
            }
            while (!pending.isEmpty()) {
                done.add(Grid.await(pending.removeFirst()));
            }
            record.size = total;
            record.policy = policy.name;
            record.chunkMethod = policy.chunkMethod();
            record.crc32c = String.format("%08x", crc.getValue());
            record.metachunks = done;
            try {
                grid.directory.commit(record, !overwrite);
            } catch (GridException ex) {
                keepChunks = ex.lostAnswer();
                if (ex.code.equals("AlreadyExists") || ex.code.equals("PreconditionFailed")) {
                    throw new FileAlreadyExistsException(name() + " already exists");
                }
                throw ex;
            }
        } catch (IOException | RuntimeException ex) {
            for (Future<ObjectRecord.Metachunk> f : pending) {
                f.cancel(false);
            }
            for (Future<ObjectRecord.Metachunk> f : pending) {
                try {
                    Grid.await(f);
                } catch (IOException | RuntimeException ignored) {
                    // its chunks, if any, are in `written`
                }
            }
            if (keepChunks) {
                LOG.warn("{}: commit outcome unknown ({}): keeping its chunks", name(), ex.getMessage());
            } else {
                discard();
            }
            throw ex;
        } finally {
            grid.release(cur);
            cur = null;
        }
    }

    /** Best-effort delete of every chunk this stream stored. */
    private void discard() {
        List<String> urls;
        synchronized (written) {
            urls = new ArrayList<>(written);
            written.clear();
        }
        List<Future<?>> deletes = new ArrayList<>();
        for (String url : urls) {
            deletes.add(grid.chunkPool.submit(() -> {
                grid.chunks.delete(url);
                return null;
            }));
        }
        for (Future<?> f : deletes) {
            try {
                Grid.await(f);
            } catch (IOException | RuntimeException ex) {
                LOG.debug("could not delete a chunk: {}", ex.getMessage());
            }
        }
    }

    // -- one metachunk ------------------------------------------------------------------------------

    /** The servers chosen for one metachunk, handing out replacements for failures. */
    private final class Placed {
        final List<Services.Service> chosen;
        private final Set<String> used = new HashSet<>();

        Placed(int width) throws IOException {
            List<Services.Service> picked;
            try {
                picked = Placement.select(grid.services.get(), width, new HashSet<>());
            } catch (GridException ex) {
                // The list at hand may be a ttl old (a blip of the conscience, a server back): one fresh
                // look before the write fails.
                grid.services.invalidate();
                picked = Placement.select(grid.services.get(), width, new HashSet<>());
            }
            chosen = picked;
            for (Services.Service s : chosen) {
                used.add(s.addr);
            }
        }

        synchronized Services.Service replacement() {
            try {
                Services.Service s = Placement.select(grid.services.get(), 1, used).get(0);
                used.add(s.addr);
                return s;
            } catch (IOException ex) {
                return null;
            }
        }
    }

    private ObjectRecord.Metachunk writeMetachunk(int pos, long offset, byte[] buf, int size) throws IOException {
        int width = policy.width();
        byte[][] arrays = new byte[width][];
        int[] offs = new int[width];
        int len;
        List<byte[]> parity = new ArrayList<>();
        try {
            if (codec == null) {
                len = size;
                for (int i = 0; i < width; i++) {
                    arrays[i] = buf;
                }
            } else {
                int k = codec.k;
                len = ObjectReader.chunkSize(size, k);
                java.util.Arrays.fill(buf, size, k * len, (byte) 0); // the padded tail: the buffer has room
                for (int i = 0; i < k; i++) {
                    arrays[i] = buf;
                    offs[i] = i * len;
                }
                byte[][] out = new byte[codec.m][];
                for (int j = 0; j < codec.m; j++) {
                    out[j] = grid.acquire(len);
                    parity.add(out[j]);
                    arrays[k + j] = out[j];
                }
                codec.encode(java.util.Arrays.copyOf(arrays, k), java.util.Arrays.copyOf(offs, k), len, out,
                        new int[codec.m]);
            }
            Placed placed = new Placed(width);
            List<Future<Object>> puts = new ArrayList<>();
            for (int sub = 0; sub < width; sub++) {
                int s = sub;
                int chunkLen = len;
                puts.add(grid.chunkPool.submit(() -> putShare(placed, pos, s, arrays[s], offs[s], chunkLen,
                        placed.chosen.get(s))));
            }
            List<ObjectRecord.Chunk> chunks = new ArrayList<>();
            List<Integer> missing = new ArrayList<>();
            List<String> errors = new ArrayList<>();
            for (int sub = 0; sub < width; sub++) {
                Object r;
                try {
                    r = Grid.await(puts.get(sub)); // every put is waited for: none may still read a buffer
                } catch (IOException | RuntimeException ex) {
                    r = ex;
                }
                if (r instanceof ObjectRecord.Chunk) {
                    chunks.add((ObjectRecord.Chunk) r);
                } else {
                    missing.add(sub);
                    errors.add(String.valueOf(r));
                }
            }
            if (chunks.size() < policy.minDurable()) {
                throw new GridException(503, "ServiceUnavailable", name() + ": metachunk " + pos + ": only "
                        + chunks.size() + " of " + width + " chunks stored, " + policy.minDurable() + " needed ("
                        + String.join("; ", errors) + ")");
            }
            if (!missing.isEmpty()) {
                LOG.warn("{}: metachunk {} stored without positions {}: recorded for repair", name(), pos, missing);
            }
            return new ObjectRecord.Metachunk(pos, offset, size, chunks, missing);
        } finally {
            for (byte[] p : parity) {
                grid.release(p);
            }
        }
    }

    /** Store one chunk, moving to another server when one fails; the chunk, or the last error. */
    private Object putShare(Placed placed, int pos, int sub, byte[] buf, int off, int len, Services.Service first)
            throws IOException {
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("X-Grid-Content-Id", record.contentId);
        headers.put("X-Grid-Content-Path", URLEncoder.encode(record.key, StandardCharsets.UTF_8)
                .replace("+", "%20").replace("%2F", "/"));
        headers.put("X-Grid-Content-Policy", policy.name);
        headers.put("X-Grid-Content-Container", record.account + "/" + record.bucket);
        headers.put("X-Grid-Chunk-Pos", pos + "." + sub);
        Services.Service svc = first;
        GridException last = new GridException(503, "ServiceUnavailable", "no server available");
        for (int attempt = 0; attempt < PLACEMENT_ATTEMPTS && svc != null; attempt++) {
            String url = ChunkClient.url(svc, Directory.newId());
            try {
                String hash = grid.chunks.put(url, buf, off, len, headers);
                synchronized (written) {
                    written.add(url);
                }
                return new ObjectRecord.Chunk(url, sub, len, hash);
            } catch (GridException ex) {
                LOG.warn("{}: chunk {}.{} to {} failed ({}): placing it elsewhere", name(), pos, sub, svc.addr,
                        ex.getMessage());
                grid.services.invalidate();
                last = ex;
                svc = placed.replacement();
            }
        }
        return last;
    }
}
