// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.function.IntFunction;

import org.apache.hadoop.fs.CanUnbuffer;
import org.apache.hadoop.fs.FSExceptionMessages;
import org.apache.hadoop.fs.FSInputStream;
import org.apache.hadoop.fs.FileRange;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.StreamCapabilities;

/**
 * An open object version: reads see the version that was current when the stream was opened, whatever
 * is written to the path afterwards (its chunks are immutable).
 *
 * <p>Sequential reads go through a buffer of {@code fs.grid.readahead} bytes, and the next
 * {@code fs.grid.readahead.depth} buffers are fetched in the background, in parallel, while one is consumed
 * in order (a seek stops the read-ahead until reads go in order again); reads of at least that size, positioned reads
 * ({@code read(position, ...)}, {@code readFully}) and vectored reads go straight to the chunks (several
 * metachunks, and the ranges of a vectored read, in parallel) and leave the stream's position alone.
 */
final class GridInputStream extends FSInputStream implements CanUnbuffer, StreamCapabilities {
    private final Grid grid;
    private final ObjectReader reader;
    private final FileSystem.Statistics stats;
    private final long size;
    private long pos;
    private boolean closed;

    private byte[] buf;
    private long bufStart;
    private int bufLen;
    private final Deque<Ahead> ahead = new ArrayDeque<>(); // the next buffers, fetched while this one is read

    /** A buffer being fetched ahead of the reader: {@code len} bytes from {@code start}. */
    private static final class Ahead {
        final long start;
        final int len;
        final Future<byte[]> data;

        Ahead(long start, int len, Future<byte[]> data) {
            this.start = start;
            this.len = len;
            this.data = data;
        }
    }

    GridInputStream(Grid grid, ObjectRecord info, FileSystem.Statistics stats) {
        this.grid = grid;
        this.reader = new ObjectReader(grid, info);
        this.stats = stats;
        this.size = info.size;
    }

    private String name() {
        return "grid://" + reader.info.bucket + "/" + reader.info.key;
    }

    private void checkOpen() throws IOException {
        if (closed) {
            throw new IOException(name() + ": " + FSExceptionMessages.STREAM_IS_CLOSED);
        }
    }

    @Override
    public synchronized void seek(long target) throws IOException {
        checkOpen();
        if (target < 0) {
            throw new EOFException(name() + ": " + FSExceptionMessages.NEGATIVE_SEEK + " " + target);
        }
        if (target > size) {
            throw new EOFException(name() + ": " + FSExceptionMessages.CANNOT_SEEK_PAST_EOF + " " + target);
        }
        pos = target;
    }

    @Override
    public synchronized long getPos() throws IOException {
        return pos;
    }

    @Override
    public boolean seekToNewSource(long targetPos) {
        return false; // every read already goes to whichever chunk copy or parity answers
    }

    @Override
    public synchronized int available() throws IOException {
        checkOpen();
        return (int) Math.min(Integer.MAX_VALUE, size - pos);
    }

    @Override
    public synchronized int read() throws IOException {
        byte[] one = new byte[1];
        return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public synchronized int read(byte[] b, int off, int len) throws IOException {
        checkOpen();
        if (off < 0 || len < 0 || len > b.length - off) {
            throw new IndexOutOfBoundsException("offset " + off + ", length " + len + ", buffer " + b.length);
        }
        if (len == 0) {
            return 0;
        }
        if (pos >= size) {
            return -1;
        }
        int n = (int) Math.min(len, size - pos);
        if (buf == null || pos < bufStart || pos >= bufStart + bufLen) {
            if (n >= grid.settings.readahead) {
                reader.read(pos, n, b, off); // large reads need no buffer
                pos += n;
                stats.incrementBytesRead(n);
                return n;
            }
            fill(pos);
        }
        n = (int) Math.min(n, bufStart + bufLen - pos);
        System.arraycopy(buf, (int) (pos - bufStart), b, off, n);
        pos += n;
        stats.incrementBytesRead(n);
        return n;
    }

    /** Make the buffer hold bytes from {@code at}; reads in order keep the next buffers coming. */
    private void fill(long at) throws IOException {
        boolean inOrder = buf != null && at == bufStart + bufLen;
        int block = grid.settings.readahead;
        Ahead first = ahead.peekFirst();
        if (first != null && first.start == at) {
            ahead.removeFirst();
            byte[] got = Grid.await(first.data);
            grid.release(buf);
            buf = got;
            bufStart = at;
            bufLen = first.len;
        } else {
            dropAhead();
            if (buf == null) {
                buf = grid.acquire(block);
            }
            bufLen = (int) Math.min(block, size - at);
            bufStart = at;
            try {
                reader.read(at, bufLen, buf, 0);
            } catch (IOException ex) {
                bufLen = 0;
                throw ex;
            }
        }
        if (!inOrder && bufStart != 0) {
            return; // a seek: no read-ahead until reads go in order again
        }
        Ahead last = ahead.peekLast();
        long following = last == null ? bufStart + bufLen : last.start + last.len;
        while (ahead.size() < grid.settings.readaheadDepth && following < size) {
            long from = following;
            int len = (int) Math.min(block, size - from);
            ahead.addLast(new Ahead(from, len, grid.ranges.submit(() -> {
                byte[] b = grid.acquire(block);
                try {
                    reader.read(from, len, b, 0);
                } catch (IOException | RuntimeException ex) {
                    grid.release(b);
                    throw ex;
                }
                return b;
            })));
            following += len;
        }
    }

    /** Forget the read-ahead (after a seek): buffers already fetched go back to the pool. */
    private void dropAhead() {
        for (Ahead a : ahead) {
            if (!a.data.cancel(false)) {
                try {
                    grid.release(Grid.await(a.data));
                } catch (IOException | RuntimeException ex) {
                    // a read-ahead nobody wants any more: its failure does not matter
                }
            }
        }
        ahead.clear();
    }

    @Override
    public int read(long position, byte[] b, int off, int len) throws IOException {
        validatePositionedReadArgs(position, b, off, len);
        synchronized (this) {
            checkOpen();
        }
        if (len == 0) {
            return 0;
        }
        if (position >= size) {
            return -1;
        }
        int n = (int) Math.min(len, size - position);
        reader.read(position, n, b, off);
        stats.incrementBytesRead(n);
        return n;
    }

    @Override
    public void readVectored(List<? extends FileRange> ranges, IntFunction<ByteBuffer> allocate) throws IOException {
        synchronized (this) {
            checkOpen();
        }
        for (FileRange r : ranges) {
            if (r.getOffset() < 0 || r.getLength() < 0) {
                throw new IllegalArgumentException("invalid range " + r);
            }
            if (r.getOffset() + r.getLength() > size) {
                throw new EOFException(name() + ": range " + r + " goes past the end (" + size + " bytes)");
            }
        }
        List<CompletableFuture<ByteBuffer>> futures = new ArrayList<>();
        for (FileRange r : ranges) {
            CompletableFuture<ByteBuffer> result = new CompletableFuture<>();
            r.setData(result);
            futures.add(result);
            grid.ranges.submit(() -> {
                try {
                    ByteBuffer bb = allocate.apply(r.getLength());
                    int start = bb.position();
                    if (bb.hasArray()) {
                        reader.read(r.getOffset(), r.getLength(), bb.array(), bb.arrayOffset() + start);
                    } else {
                        byte[] tmp = new byte[r.getLength()];
                        reader.read(r.getOffset(), r.getLength(), tmp, 0);
                        bb.put(tmp);
                    }
                    bb.limit(start + r.getLength());
                    bb.position(start);
                    stats.incrementBytesRead(r.getLength());
                    result.complete(bb);
                } catch (Throwable ex) {
                    result.completeExceptionally(ex);
                }
            });
        }
    }

    @Override
    public synchronized void unbuffer() {
        dropAhead();
        grid.release(buf);
        buf = null;
        bufLen = 0;
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            unbuffer();
        }
    }

    @Override
    public boolean hasCapability(String capability) {
        switch (capability.toLowerCase(java.util.Locale.ROOT)) {
            case StreamCapabilities.VECTOREDIO:
            case StreamCapabilities.UNBUFFER:
                return true;
            default:
                return false;
        }
    }
}
