// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads byte ranges of one object version, as gridfs/client/reader.py does: object range, then metachunk
 * ranges (read in parallel), then chunk ranges (read in parallel), straight into the caller's array. Only the
 * chunks and the byte ranges within them that hold the bytes asked for are fetched.
 *
 * <p>With EC, data chunk i of a metachunk of {@code size} bytes holds bytes {@code [i*cs, (i+1)*cs)} where
 * {@code cs = ceil(size / k)}. When a data chunk is missing, unreachable or corrupt (the storage server answers
 * 422 rather than serve a chunk whose checksum fails), the same byte range of other chunks is fetched and the
 * lost ranges are rebuilt with one decode, reusing the data already read as shares. A chunk whose server the
 * conscience reports down is not waited on: the shares that rebuild it are fetched at once, beside the other
 * reads. With copies, the next copy is read (copies on servers reported down last).
 */
final class ObjectReader {
    private static final Logger LOG = LoggerFactory.getLogger(ObjectReader.class);

    private final Grid grid;
    final ObjectRecord info;
    private final Policy policy;
    private final ReedSolomon codec;

    ObjectReader(Grid grid, ObjectRecord info) {
        this.grid = grid;
        this.info = info;
        this.policy = info.chunkMethod.isEmpty() ? Policy.copies(info.policy, 1)
                : Policy.fromChunkMethod(info.policy, info.chunkMethod);
        this.codec = policy.ec ? ReedSolomon.of(policy.codec, policy.k, policy.m) : null;
    }

    private String name() {
        return info.bucket + "/" + info.key;
    }

    /** Fill {@code out[off, off + len)} with the object's bytes from {@code start}; metachunks in parallel. */
    void read(long start, int len, byte[] out, int off) throws IOException {
        if (start < 0 || len < 0 || start + len > info.size) {
            throw new GridException(416, "InvalidRange", name() + ": range " + start + "+" + len + " outside "
                    + info.size + " bytes");
        }
        long end = start + len;
        List<long[]> spans = new ArrayList<>(); // metachunk index, start and end in it, offset in out
        for (int i = 0; i < info.metachunks.size(); i++) {
            ObjectRecord.Metachunk mc = info.metachunks.get(i);
            long a = Math.max(start, mc.offset);
            long b = Math.min(end, mc.offset + mc.size);
            if (a < b) {
                spans.add(new long[] {i, a - mc.offset, b - mc.offset, off + (a - start)});
            }
        }
        List<Future<Void>> futures = new ArrayList<>();
        for (int i = 0; i + 1 < spans.size(); i++) { // all but the last in parallel, the last in this thread
            long[] sp = spans.get(i);
            futures.add(grid.metachunks.submit(() -> {
                readMetachunk(info.metachunks.get((int) sp[0]), sp[1], sp[2], out, (int) sp[3]);
                return null;
            }));
        }
        IOException failure = null;
        try {
            if (!spans.isEmpty()) {
                long[] sp = spans.get(spans.size() - 1);
                readMetachunk(info.metachunks.get((int) sp[0]), sp[1], sp[2], out, (int) sp[3]);
            }
        } catch (IOException ex) {
            failure = ex;
        }
        for (Future<Void> f : futures) {
            try {
                Grid.await(f);
            } catch (IOException ex) {
                failure = failure == null ? ex : failure;
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    // -- one metachunk --------------------------------------------------------------------------------

    /** Bytes [lo, hi) of data chunk {@code index} land at {@code out} in the caller's array. */
    private static final class Range {
        final int index;
        final int lo;
        final int hi;
        final int out;

        Range(int index, int lo, int hi, int out) {
            this.index = index;
            this.lo = lo;
            this.hi = hi;
            this.out = out;
        }
    }

    static int chunkSize(long metaSize, int k) {
        return (int) ((metaSize + k - 1) / k);
    }

    private List<Range> dataRanges(long metaSize, long a, long b, int outAt) {
        int cs = chunkSize(metaSize, codec.k);
        List<Range> out = new ArrayList<>();
        long pos = a;
        while (pos < b) {
            int i = (int) (pos / cs);
            long hi = Math.min(b, (long) (i + 1) * cs);
            out.add(new Range(i, (int) (pos - (long) i * cs), (int) (hi - (long) i * cs), outAt + (int) (pos - a)));
            pos = hi;
        }
        return out;
    }

    private boolean down(ObjectRecord.Chunk c) {
        try {
            return grid.services.isDown(ChunkClient.parse(c.url).service());
        } catch (GridException ex) {
            return false; // not a URL we can judge: the read fails and is reported
        }
    }

    private void readMetachunk(ObjectRecord.Metachunk mc, long a, long b, byte[] out, int at) throws IOException {
        if (codec == null) {
            readCopies(mc, a, (int) (b - a), out, at);
            return;
        }
        List<Range> ranges = dataRanges(mc.size, a, b, at);
        Map<Integer, ObjectRecord.Chunk> bySub = new HashMap<>();
        Set<Integer> down = new HashSet<>();
        for (ObjectRecord.Chunk c : mc.chunks) {
            bySub.put(c.sub, c);
            if (down(c)) {
                down.add(c.sub);
            }
        }
        List<Range> lost = new ArrayList<>();
        Map<Range, Future<Boolean>> reads = new LinkedHashMap<>();
        for (Range r : ranges) {
            if (!bySub.containsKey(r.index) || down.contains(r.index)) {
                lost.add(r);
            } else {
                ObjectRecord.Chunk c = bySub.get(r.index);
                reads.put(r, grid.chunkPool.submit(() -> readRange(mc, c, r.lo, r.hi - r.lo, out, r.out)));
            }
        }
        int[] earlySpan = null;
        Map<Integer, Future<byte[]>> early = Collections.emptyMap();
        if (!lost.isEmpty()) {
            // Positions known lost now: fetch what rebuilds them beside the reads, not after.
            earlySpan = span(lost);
            int inHand = 0;
            for (Range r : reads.keySet()) {
                inHand += r.lo <= earlySpan[0] && earlySpan[1] <= r.hi ? 1 : 0;
            }
            Set<Integer> skip = new HashSet<>();
            for (Range r : ranges) {
                skip.add(r.index);
            }
            List<ObjectRecord.Chunk> others = candidates(bySub, down, skip);
            early = fetch(mc, others.subList(0, Math.max(0, Math.min(others.size(), codec.k - inHand))),
                    earlySpan[0], earlySpan[1]);
        }
        for (Map.Entry<Range, Future<Boolean>> e : reads.entrySet()) {
            if (!Grid.await(e.getValue())) {
                lost.add(e.getKey());
            }
        }
        if (!lost.isEmpty()) {
            rebuild(mc, bySub, down, ranges, lost, out, earlySpan, early);
        }
    }

    private void readCopies(ObjectRecord.Metachunk mc, long a, int len, byte[] out, int at) throws IOException {
        List<ObjectRecord.Chunk> replicas = new ArrayList<>(mc.chunks);
        Collections.shuffle(replicas, ThreadLocalRandom.current()); // spread reads over the copies
        List<ObjectRecord.Chunk> ordered = new ArrayList<>();
        List<ObjectRecord.Chunk> last = new ArrayList<>();
        for (ObjectRecord.Chunk c : replicas) {
            (down(c) ? last : ordered).add(c);
        }
        ordered.addAll(last);
        List<String> errors = new ArrayList<>();
        for (ObjectRecord.Chunk c : ordered) {
            try {
                grid.chunks.get(c.url, a, len, out, at);
                return;
            } catch (GridException ex) {
                report(mc, c, ex);
                errors.add(c.sub + ": " + ex.getMessage());
            }
        }
        throw new GridException(503, "DataUnavailable", name() + ": metachunk " + mc.pos
                + " has no readable copy (" + String.join("; ", errors) + ")");
    }

    private boolean readRange(ObjectRecord.Metachunk mc, ObjectRecord.Chunk c, int lo, int n, byte[] out, int at)
            throws IOException {
        try {
            grid.chunks.get(c.url, lo, n, out, at);
            return true;
        } catch (GridException ex) {
            report(mc, c, ex);
            return false;
        }
    }

    /** Chunks to fetch shares from: servers reported up first, data before parity. */
    private static List<ObjectRecord.Chunk> candidates(Map<Integer, ObjectRecord.Chunk> bySub, Set<Integer> down,
            Set<Integer> skip) {
        List<Integer> subs = new ArrayList<>();
        for (int s : bySub.keySet()) {
            if (!skip.contains(s)) {
                subs.add(s);
            }
        }
        subs.sort((x, y) -> down.contains(x) != down.contains(y) ? (down.contains(x) ? 1 : -1)
                : Integer.compare(x, y));
        List<ObjectRecord.Chunk> out = new ArrayList<>();
        for (int s : subs) {
            out.add(bySub.get(s));
        }
        return out;
    }

    private Map<Integer, Future<byte[]>> fetch(ObjectRecord.Metachunk mc, List<ObjectRecord.Chunk> chunks, int lo,
            int hi) {
        Map<Integer, Future<byte[]>> out = new LinkedHashMap<>();
        for (ObjectRecord.Chunk c : chunks) {
            out.put(c.sub, grid.chunkPool.submit(() -> {
                byte[] share = new byte[hi - lo];
                return readRange(mc, c, lo, hi - lo, share, 0) ? share : null;
            }));
        }
        return out;
    }

    private static int[] span(List<Range> ranges) {
        int lo = Integer.MAX_VALUE;
        int hi = 0;
        for (Range r : ranges) {
            lo = Math.min(lo, r.lo);
            hi = Math.max(hi, r.hi);
        }
        return new int[] {lo, hi};
    }

    /** Rebuild the lost data ranges with one decode of bytes [lo, hi) of any k shares. */
    private void rebuild(ObjectRecord.Metachunk mc, Map<Integer, ObjectRecord.Chunk> bySub, Set<Integer> down,
            List<Range> ranges, List<Range> lost, byte[] out, int[] earlySpan, Map<Integer, Future<byte[]>> early)
            throws IOException {
        int k = codec.k;
        int width = codec.k + codec.m;
        int[] span = span(lost);
        int lo = span[0];
        int hi = span[1];
        Set<Integer> lostSubs = new HashSet<>();
        for (Range r : lost) {
            lostSubs.add(r.index);
        }
        byte[][] shares = new byte[width][];
        int[] shareOff = new int[width];
        int held = 0;
        for (Range r : ranges) { // data read whole over [lo, hi) is a share in hand
            if (!lostSubs.contains(r.index) && r.lo <= lo && hi <= r.hi) {
                shares[r.index] = out;
                shareOff[r.index] = r.out + lo - r.lo;
                held++;
            }
        }
        Map<Integer, Future<byte[]>> pending = earlySpan != null && earlySpan[0] == lo && earlySpan[1] == hi
                ? early : Collections.emptyMap();
        Set<Integer> skip = new HashSet<>(lostSubs);
        skip.addAll(pending.keySet());
        for (int s = 0; s < width; s++) {
            if (shares[s] != null) {
                skip.add(s);
            }
        }
        List<ObjectRecord.Chunk> candidates = candidates(bySub, down, skip);
        for (int s : new java.util.TreeSet<>(lostSubs)) { // last of all: lost only because reported down
            if (down.contains(s) && bySub.containsKey(s)) {
                candidates.add(bySub.get(s));
            }
        }
        while (true) {
            for (Map.Entry<Integer, Future<byte[]>> e : pending.entrySet()) {
                byte[] data = Grid.await(e.getValue());
                if (data != null && shares[e.getKey()] == null) {
                    shares[e.getKey()] = data;
                    shareOff[e.getKey()] = 0;
                    held++;
                }
            }
            if (held >= k || candidates.isEmpty()) {
                break;
            }
            int n = Math.min(k - held, candidates.size());
            pending = fetch(mc, new ArrayList<>(candidates.subList(0, n)), lo, hi);
            candidates = new ArrayList<>(candidates.subList(n, candidates.size()));
        }
        if (held < k) {
            List<Integer> gone = new ArrayList<>();
            for (int s = 0; s < width; s++) {
                if (shares[s] == null) {
                    gone.add(s);
                }
            }
            throw new GridException(503, "DataUnavailable", name() + ": metachunk " + mc.pos
                    + " cannot be rebuilt: positions " + gone + " are missing, unreachable or corrupt, " + k + " of "
                    + width + " are needed");
        }
        int[] wanted = lostSubs.stream().mapToInt(Integer::intValue).sorted().toArray();
        byte[][] rebuilt = new byte[wanted.length][hi - lo];
        codec.decode(shares, shareOff, hi - lo, wanted, rebuilt, new int[wanted.length]);
        for (Range r : lost) {
            int j = java.util.Arrays.binarySearch(wanted, r.index);
            System.arraycopy(rebuilt[j], r.lo - lo, out, r.out, r.hi - r.lo);
        }
        grid.rebuilds.incrementAndGet();
        LOG.info("{}: rebuilt metachunk {} positions {} from parity", name(), mc.pos, lostSubs);
    }

    private void report(ObjectRecord.Metachunk mc, ObjectRecord.Chunk c, GridException ex) {
        if (ex.code.equals("ChecksumMismatch")) {
            LOG.warn("{}: corrupt chunk at position {}.{} ({}): reading around it", name(), mc.pos, c.sub, c.url);
        } else {
            LOG.warn("{}: chunk {}.{} unreadable ({}): {}", name(), mc.pos, c.sub, c.url, ex.getMessage());
        }
    }
}
