// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.zip.CRC32C;

import org.apache.hadoop.fs.CompositeCrcFileChecksum;
import org.apache.hadoop.fs.ContentSummary;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileChecksum;
import org.apache.hadoop.fs.FileRange;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.ParentNotDirectoryException;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.PathIsNotEmptyDirectoryException;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.StreamCapabilities;
import org.apache.hadoop.fs.permission.FsPermission;

import org.gridfs.hadoop.TestRunner.Test;

/**
 * The Hadoop FileSystem contract on a live grid, method by method: each test works under a folder of its own
 * ({@code /contract/<test>}), removed at the end. The grid is expected to run with a small chunk size (the
 * Python side starts it with 64 KiB chunks), so that files of a few hundred KiB span several metachunks.
 */
public final class ContractTests extends LiveSuite {
    private long metaSize; // user bytes per metachunk of the default policy
    private final Path base = new Path("/contract");

    ContractTests(TestContext ctx) {
        super(ctx);
    }

    @Override
    public void before() throws IOException {
        super.before();
        fs.delete(base, true);
        Check.that(fs.mkdirs(base), "mkdirs " + base);
        GridSettings s = fs.grid().settings;
        metaSize = s.policy(s.policyForSize(-1)).metachunkSize(s.chunkSize);
    }

    @Override
    public void after() throws IOException {
        fs.delete(base, true);
        super.after();
    }

    static byte[] data(int size, long seed) {
        byte[] b = new byte[size];
        new Random(seed).nextBytes(b);
        return b;
    }

    static void write(FileSystem fs, Path p, byte[] data, boolean overwrite) throws IOException {
        try (FSDataOutputStream out = fs.create(p, overwrite)) {
            // In uneven pieces, as applications write.
            int at = 0;
            Random rng = new Random(data.length);
            while (at < data.length) {
                int n = Math.min(data.length - at, 1 + rng.nextInt(200_000));
                out.write(data, at, n);
                at += n;
            }
        }
    }

    static byte[] readAll(FileSystem fs, Path p) throws IOException {
        try (FSDataInputStream in = fs.open(p)) {
            return in.readAllBytes();
        }
    }

    static String crc32c(byte[] data) {
        CRC32C c = new CRC32C();
        c.update(data);
        return String.format("%08x", c.getValue());
    }

    private Path dir(String test) throws IOException {
        Path p = new Path(base, test);
        fs.mkdirs(p);
        return p;
    }

    // -- create, open, read ---------------------------------------------------------------------------

    @Test
    public void createThenReadEverySizeAndPolicy() throws IOException {
        Path d = dir("sizes");
        int meta = (int) metaSize;
        int[] sizes = {0, 1, 1000, meta - 1, meta, meta + 1, 2 * meta + meta / 2};
        for (String policy : new String[] {"", "EC63", "EC63-ISAL", "EC42", "EC21", "THREECOPIES", "SINGLE"}) {
            try (GridFileSystem w = policy.isEmpty() ? ctx.fs() : ctx.fs("fs.grid.policy", policy)) {
                for (int size : sizes) {
                    Path p = new Path(d, (policy.isEmpty() ? "default" : policy) + "-" + size);
                    byte[] b = data(size, size * 31L + policy.hashCode());
                    write(w, p, b, false);
                    Check.bytes(b, readAll(fs, p), p.toString());
                    FileStatus s = fs.getFileStatus(p);
                    Check.eq((long) size, s.getLen(), "length of " + p);
                    Check.that(s.isFile() && !s.isDirectory(), "a file");
                    ObjectRecord r = fs.grid().directory.head(fs.grid().settings.account, ctx.bucket, fs.key(p), true);
                    Check.eq(crc32c(b), r.crc32c, "recorded CRC32C of " + p);
                    Check.eq("", r.hash, "no xxh3-128 from Java");
                    if (!policy.isEmpty()) {
                        Check.eq(policy, r.policy, "policy of " + p);
                    }
                }
            }
        }
    }

    @Test
    public void smallFilesTakeTheSizeRulePolicy() throws IOException {
        GridSettings s = fs.grid().settings;
        if (s.sizeRules.isEmpty()) {
            return;
        }
        Path small = new Path(dir("rules"), "small");
        write(fs, small, data(100, 1), false);
        ObjectRecord r = fs.grid().directory.head(s.account, ctx.bucket, fs.key(small), false);
        Check.eq(s.policyForSize(100), r.policy, "a small file's policy");
        Path big = new Path(dir("rules"), "big");
        long limit = s.sizeRuleLimit();
        write(fs, big, data((int) limit + 1, 2), false);
        r = fs.grid().directory.head(s.account, ctx.bucket, fs.key(big), false);
        Check.eq(s.policyForSize(-1), r.policy, "past the rules: the default policy");
    }

    @Test
    public void seekAndOddRanges() throws IOException {
        Path p = new Path(dir("ranges"), "f");
        int meta = (int) metaSize;
        byte[] b = data(2 * meta + meta / 2 + 7, 5);
        write(fs, p, b, false);
        int cs = ObjectReader.chunkSize(meta, 6);
        int[][] ranges = {
            {0, 0}, {0, 1}, {b.length - 1, 1}, {meta - 1, 2}, {meta - 3, meta + 6}, {cs - 1, 2}, {cs, cs},
            {b.length - 10, 10}, {1, b.length - 2}, {0, b.length}, {2 * meta, b.length - 2 * meta},
        };
        try (FSDataInputStream in = fs.open(p)) {
            for (int[] r : ranges) {
                byte[] got = new byte[r[1]];
                in.readFully(r[0], got);
                Check.bytes(Arrays.copyOfRange(b, r[0], r[0] + r[1]), got, "readFully " + r[0] + "+" + r[1]);
                in.seek(r[0]);
                Check.eq((long) r[0], in.getPos(), "position after seek");
                byte[] seq = new byte[r[1]];
                in.readFully(seq);
                Check.bytes(got, seq, "seek then read " + r[0] + "+" + r[1]);
            }
            Check.eq(-1, in.read(b.length, new byte[1], 0, 1), "positioned read at the end");
            Check.raises(EOFException.class, "readFully past the end", () -> in.readFully(b.length - 1, new byte[2]));
            Check.raises(EOFException.class, "seek past the end", () -> in.seek(b.length + 1));
            Check.raises(EOFException.class, "negative seek", () -> in.seek(-1));
            in.seek(b.length);
            Check.eq(-1, in.read(), "read at the end");
            in.seek(meta - 1);
            Check.eq(b[meta - 1] & 0xff, in.read(), "one byte");
            Check.eq(b[meta] & 0xff, in.read(), "the next byte, in the next metachunk");
            in.seek(0);
            byte[] small = new byte[4093];
            byte[] all = new byte[b.length];
            int at = 0;
            for (int n; (n = in.read(small)) > 0; at += n) {
                System.arraycopy(small, 0, all, at, n);
            }
            Check.bytes(b, all, "small sequential reads");
        }
        FSDataInputStream closed = fs.open(p);
        closed.close();
        Check.raises(IOException.class, "read after close", () -> closed.read());
    }

    @Test
    public void vectoredReads() throws Exception {
        Path p = new Path(dir("vectored"), "f");
        int meta = (int) metaSize;
        byte[] b = data(3 * meta + 11, 6);
        write(fs, p, b, false);
        List<FileRange> ranges = new ArrayList<>();
        long[][] spec = {{0, 100}, {meta - 50, 100}, {2 * meta, meta}, {b.length - 1, 1}, {500, 0}, {7, 3000}};
        for (long[] r : spec) {
            ranges.add(FileRange.createFileRange(r[0], (int) r[1]));
        }
        try (FSDataInputStream in = fs.open(p)) {
            Check.that(in.hasCapability(StreamCapabilities.VECTOREDIO), "vectored IO capability");
            in.readVectored(ranges, ByteBuffer::allocate);
            for (FileRange r : ranges) {
                ByteBuffer bb = r.getData().get();
                byte[] got = new byte[bb.remaining()];
                bb.get(got);
                Check.bytes(Arrays.copyOfRange(b, (int) r.getOffset(), (int) r.getOffset() + r.getLength()), got,
                        "range " + r);
            }
            List<FileRange> direct = Arrays.asList(FileRange.createFileRange(meta - 5, 10));
            in.readVectored(direct, ByteBuffer::allocateDirect);
            ByteBuffer bb = direct.get(0).getData().get();
            byte[] got = new byte[bb.remaining()];
            bb.get(got);
            Check.bytes(Arrays.copyOfRange(b, meta - 5, meta + 5), got, "into a direct buffer");
            Check.raises(EOFException.class, "a range past the end", () -> in.readVectored(
                    Arrays.asList(FileRange.createFileRange(b.length - 1, 2)), ByteBuffer::allocate));
        }
    }

    @Test
    public void concurrentReaders() throws Exception {
        Path p = new Path(dir("concurrent"), "f");
        byte[] b = data((int) (2 * metaSize + 999), 7);
        write(fs, p, b, false);
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            List<Future<Void>> results = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                int seed = t;
                results.add(pool.submit(() -> {
                    Random rng = new Random(seed);
                    try (FSDataInputStream in = fs.open(p)) {
                        for (int i = 0; i < 25; i++) {
                            int off = rng.nextInt(b.length);
                            int len = rng.nextInt(Math.min(b.length - off, 200_000) + 1);
                            byte[] got = new byte[len];
                            if (rng.nextBoolean()) {
                                in.readFully(off, got);
                            } else {
                                in.seek(off);
                                in.readFully(got);
                            }
                            Check.bytes(Arrays.copyOfRange(b, off, off + len), got, "reader " + seed);
                        }
                    }
                    Check.bytes(b, readAll(fs, p), "whole file, reader " + seed);
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

    @Test
    public void oddNamesRoundTrip() throws IOException {
        Path d = dir("names");
        String[] names = {"with space", "\u00fcn\u00efc\u00f6d\u00e9 \u6587\u4ef6", "per%cent", "plus+sign", "hash#tag",
            "semi;colon", "a=b&c", "quote'd"};
        for (String name : names) {
            Path p = new Path(d, name);
            byte[] b = data(100 + name.length(), name.hashCode());
            write(fs, p, b, false);
            Check.bytes(b, readAll(fs, p), name);
            ObjectRecord r = fs.grid().directory.head(fs.grid().settings.account, ctx.bucket,
                    "contract/names/" + name, false);
            Check.eq((long) b.length, r.size, "the object key is the name itself: " + name);
        }
        Set<String> listed = new HashSet<>();
        for (FileStatus s : fs.listStatus(d)) {
            listed.add(s.getPath().getName());
            Check.that(fs.exists(s.getPath()), "a listed path resolves: " + s.getPath());
        }
        Check.eq(new HashSet<>(Arrays.asList(names)), listed, "names in the listing");
        Check.that(fs.rename(new Path(d, names[0]), new Path(d, names[1] + " moved")), "rename");
        Check.that(fs.exists(new Path(d, names[1] + " moved")), "the new odd name");
    }

    @Test
    public void openErrors() throws IOException {
        Path d = dir("open");
        Check.raises(FileNotFoundException.class, "missing file", () -> fs.open(new Path(d, "nope")));
        Check.raises(FileNotFoundException.class, "a directory", () -> fs.open(d));
    }

    // -- create semantics -----------------------------------------------------------------------------

    @Test
    public void createOverwriteOrNot() throws IOException {
        Path d = dir("overwrite");
        Path p = new Path(d, "f");
        write(fs, p, data(10, 1), false);
        Check.raises(FileAlreadyExistsException.class, "create without overwrite",
                () -> fs.create(p, false).close());
        byte[] second = data(200_000, 2);
        write(fs, p, second, true);
        Check.bytes(second, readAll(fs, p), "overwritten");
        Check.raises(FileAlreadyExistsException.class, "create over a directory", () -> fs.create(d, true));
        Check.raises(ParentNotDirectoryException.class, "create under a file",
                () -> fs.create(new Path(p, "child"), true));
        Check.raises(FileNotFoundException.class, "createNonRecursive without a parent",
                () -> fs.createNonRecursive(new Path(d, "no/such/f"), true, 4096, (short) 1, 1 << 20, null));
        try (FSDataOutputStream out = fs.createNonRecursive(new Path(d, "g"), true, 4096, (short) 1, 1 << 20,
                null)) {
            out.write(1);
        }
        Check.eq(1L, fs.getFileStatus(new Path(d, "g")).getLen(), "createNonRecursive in an existing directory");
    }

    @Test
    public void visibleOnCloseOnly() throws IOException {
        Path p = new Path(dir("visibility"), "f");
        byte[] b = data((int) metaSize * 2 + 5, 3);
        FSDataOutputStream out = fs.create(p, false);
        out.write(b, 0, b.length);
        out.hflush();
        out.hsync();
        Check.that(!out.hasCapability("hflush") && !out.hasCapability("hsync"),
                "no hflush or hsync capability");
        Check.that(!fs.exists(p), "nothing visible before close, whatever was flushed");
        out.close();
        out.close(); // a second close does nothing
        Check.bytes(b, readAll(fs, p), "visible on close");
        Check.raises(IOException.class, "write after close", () -> out.write(1));
    }

    @Test
    public void racingCreatorsWithoutOverwriteOneWins() throws IOException {
        Path p = new Path(dir("race"), "f");
        FSDataOutputStream first = fs.create(p, false);
        FSDataOutputStream second = fs.create(p, false);
        first.write(data(1000, 1));
        second.write(data(2000, 2));
        first.close();
        Check.raises(FileAlreadyExistsException.class, "the second commit", second::close);
        Check.eq(1000L, fs.getFileStatus(p).getLen(), "the first writer's file");
    }

    @Test
    public void appendAndTruncateAreRefused() throws IOException {
        Path p = new Path(dir("append"), "f");
        write(fs, p, data(10, 1), false);
        UnsupportedOperationException e = Check.raises(UnsupportedOperationException.class, "append",
                () -> fs.append(p));
        Check.that(e.getMessage().contains("immutable"), "says why: " + e.getMessage());
        Check.raises(UnsupportedOperationException.class, "truncate", () -> fs.truncate(p, 1));
    }

    // -- status and listings --------------------------------------------------------------------------

    @Test
    public void fileStatusOfFilesDirectoriesAndRoot() throws IOException {
        Path d = dir("status");
        Path f = new Path(d, "sub/deeper/f"); // sub and deeper are implied by the key
        write(fs, f, data(5, 1), false);
        Check.that(fs.getFileStatus(new Path(d, "sub")).isDirectory(), "an implied directory");
        Check.that(fs.getFileStatus(d).isDirectory(), "a directory with a marker");
        FileStatus root = fs.getFileStatus(new Path("/"));
        Check.that(root.isDirectory(), "the bucket root");
        Check.eq(fs.getUri() + "/", root.getPath().toString(), "the root's path");
        Check.raises(FileNotFoundException.class, "missing", () -> fs.getFileStatus(new Path(d, "missing")));
        FileStatus s = fs.getFileStatus(f);
        Check.eq(fs.makeQualified(f), s.getPath(), "qualified path");
        Check.that(Math.abs(s.getModificationTime() - System.currentTimeMillis()) < 600_000, "mtime in ms");
        Check.eq(new FsPermission((short) 0644), s.getPermission(), "default permission");
        Check.that(fs.exists(f) && !fs.exists(new Path(d, "missing")), "exists");
        try (GridFileSystem other = ctx.fs()) {
            Check.that(other.getFileStatus(new Path("grid://" + ctx.bucket + "/contract/status/sub/deeper/f"))
                    .isFile(), "a full grid:// URI");
        }
    }

    @Test
    public void listStatusAndItsIterator() throws IOException {
        Path d = dir("list");
        for (int i = 0; i < 7; i++) {
            write(fs, new Path(d, "f" + i), data(i, i), false);
        }
        write(fs, new Path(d, "implied/x"), data(3, 1), false);
        fs.mkdirs(new Path(d, "empty"));
        fs.mkdirs(new Path(d, "marked"));
        write(fs, new Path(d, "marked/y"), data(3, 1), false);
        Set<String> expected = new HashSet<>(Arrays.asList("f0", "f1", "f2", "f3", "f4", "f5", "f6", "implied", "empty",
                "marked"));
        for (GridFileSystem lister : new GridFileSystem[] {fs, ctx.fs("fs.grid.list.page", "3")}) {
            FileStatus[] all = lister.listStatus(d);
            Set<String> names = new HashSet<>();
            for (FileStatus s : all) {
                names.add(s.getPath().getName());
                boolean dirName = Arrays.asList("implied", "empty", "marked").contains(s.getPath().getName());
                Check.eq(dirName, s.isDirectory(), "kind of " + s.getPath());
            }
            Check.eq(expected, names, "listStatus");
            Check.eq(all.length, expected.size(), "no duplicates, no markers");
            List<String> iterated = new ArrayList<>();
            RemoteIterator<FileStatus> it = lister.listStatusIterator(d);
            while (it.hasNext()) {
                iterated.add(it.next().getPath().getName());
            }
            Check.eq(expected, new HashSet<>(iterated), "listStatusIterator");
            Check.eq(expected.size(), iterated.size(), "each entry once");
            if (lister != fs) {
                lister.close();
            }
        }
        Check.eq(0, fs.listStatus(new Path(d, "empty")).length, "an empty directory");
        FileStatus[] one = fs.listStatus(new Path(d, "f3"));
        Check.that(one.length == 1 && one[0].isFile() && one[0].getLen() == 3, "a file lists as itself");
        Check.raises(FileNotFoundException.class, "missing", () -> fs.listStatus(new Path(d, "missing")));
        Check.raises(FileNotFoundException.class, "missing (iterator)",
                () -> fs.listStatusIterator(new Path(d, "missing")));
    }

    @Test
    public void listFilesRecursiveOrNot() throws IOException {
        Path d = dir("files");
        String[] keys = {"a", "b/c", "b/d/e", "b/d/f", "g/h"};
        for (String k : keys) {
            write(fs, new Path(d, k), data(k.length(), 1), false);
        }
        fs.mkdirs(new Path(d, "empty/dir"));
        Set<String> all = new HashSet<>();
        RemoteIterator<LocatedFileStatus> it = fs.listFiles(d, true);
        while (it.hasNext()) {
            LocatedFileStatus s = it.next();
            Check.that(s.isFile() && s.getBlockLocations().length >= 1, "a located file " + s.getPath());
            all.add(s.getPath().toUri().getPath().substring(d.toUri().getPath().length() + 1));
        }
        Check.eq(new HashSet<>(Arrays.asList(keys)), all, "recursive listFiles: files only, no markers");
        Set<String> top = new HashSet<>();
        it = fs.listFiles(d, false);
        while (it.hasNext()) {
            top.add(it.next().getPath().getName());
        }
        Check.eq(new HashSet<>(Arrays.asList("a")), top, "listFiles of one level");
        it = fs.listFiles(new Path(d, "a"), true);
        Check.that(it.hasNext() && it.next().getPath().getName().equals("a") && !it.hasNext(), "of a file");
    }

    @Test
    public void mkdirsCreatesMarkers() throws IOException {
        Path d = dir("mkdirs");
        Path nested = new Path(d, "x/y/z");
        Check.that(fs.mkdirs(nested), "mkdirs -p");
        Check.that(fs.getFileStatus(nested).isDirectory() && fs.getFileStatus(new Path(d, "x/y")).isDirectory(),
                "the directory and its parents");
        Check.that(fs.mkdirs(nested), "mkdirs of an existing directory");
        ObjectRecord marker = fs.grid().directory.head(fs.grid().settings.account, ctx.bucket,
                fs.key(nested) + "/", false);
        Check.eq(0L, marker.size, "a zero-byte marker");
        Path f = new Path(d, "file");
        write(fs, f, data(1, 1), false);
        Check.raises(FileAlreadyExistsException.class, "mkdirs over a file", () -> fs.mkdirs(f));
        Check.raises(ParentNotDirectoryException.class, "mkdirs under a file", () -> fs.mkdirs(new Path(f, "a/b")));
    }

    @Test
    public void contentSummary() throws IOException {
        Path d = dir("summary");
        write(fs, new Path(d, "a"), data(100, 1), false);
        write(fs, new Path(d, "b/c"), data(200, 1), false);
        write(fs, new Path(d, "b/d/e"), data(300, 1), false);
        fs.mkdirs(new Path(d, "f/g"));
        ContentSummary s = fs.getContentSummary(d);
        Check.eq(600L, s.getLength(), "bytes");
        Check.eq(3L, s.getFileCount(), "files");
        Check.eq(5L, s.getDirectoryCount(), "summary, b, b/d, f, f/g");
        Check.that(s.getSpaceConsumed() >= 600, "raw bytes");
        ContentSummary one = fs.getContentSummary(new Path(d, "a"));
        Check.that(one.getLength() == 100 && one.getFileCount() == 1 && one.getDirectoryCount() == 0, "a file");
    }

    // -- rename and delete ----------------------------------------------------------------------------

    @Test
    public void renameFiles() throws IOException {
        Path d = dir("rename-file");
        Path a = new Path(d, "a");
        byte[] b = data((int) metaSize + 3, 9);
        write(fs, a, b, false);
        Path moved = new Path(d, "moved");
        Check.that(fs.rename(a, moved), "rename");
        Check.that(!fs.exists(a), "source gone");
        Check.bytes(b, readAll(fs, moved), "same bytes under the new name");
        Check.that(fs.getFileStatus(d).isDirectory(), "the parent directory stays");
        write(fs, a, data(1, 1), false);
        Check.that(!fs.rename(a, moved), "never over an existing file");
        Check.that(!fs.rename(new Path(d, "missing"), new Path(d, "x")), "a missing source");
        Check.that(!fs.rename(a, new Path(d, "no/parent/x")), "a missing destination parent");
        Path sub = new Path(d, "sub");
        fs.mkdirs(sub);
        Check.that(fs.rename(a, sub), "into an existing directory");
        Check.that(fs.exists(new Path(sub, "a")) && !fs.exists(a), "moved inside");
        Check.that(fs.rename(moved, moved), "onto itself");
        Path only = new Path(dir("rename-last"), "only");
        write(fs, only, data(1, 1), false);
        Check.that(fs.rename(only, new Path(d, "only")), "the last file out of a directory");
        Check.that(fs.getFileStatus(new Path(base, "rename-last")).isDirectory(), "the emptied directory stays");
    }

    @Test
    public void renameDirectories() throws IOException {
        Path d = dir("rename-dir");
        Path src = new Path(d, "src");
        String[] keys = {"a", "b/c", "b/d/e", "f"};
        for (String k : keys) {
            write(fs, new Path(src, k), data(k.length() * 1000, k.hashCode()), false);
        }
        fs.mkdirs(new Path(src, "empty"));
        Path dst = new Path(d, "dst");
        Check.that(fs.rename(src, dst), "rename a tree");
        Check.that(!fs.exists(src), "the source is gone");
        for (String k : keys) {
            Check.bytes(data(k.length() * 1000, k.hashCode()), readAll(fs, new Path(dst, k)), "moved " + k);
        }
        Check.that(fs.getFileStatus(new Path(dst, "empty")).isDirectory(), "the empty directory moved too");
        Path into = new Path(d, "into");
        fs.mkdirs(into);
        Check.that(fs.rename(dst, into), "into an existing directory");
        Check.that(fs.exists(new Path(into, "dst/b/d/e")), "moved inside it");
        Check.that(!fs.rename(into, new Path(into, "dst/inside")), "never into itself");
        Check.that(!fs.rename(new Path("/"), new Path(d, "root")), "never the root");
    }

    @Test
    public void deleteFilesAndDirectories() throws IOException {
        Path d = dir("delete");
        Path f = new Path(d, "f");
        write(fs, f, data(10, 1), false);
        Check.that(fs.delete(f, false), "delete a file");
        Check.that(!fs.exists(f), "gone");
        Check.that(fs.getFileStatus(d).isDirectory(), "its directory stays");
        Check.that(!fs.delete(f, false), "delete a missing path");
        Path tree = new Path(d, "tree");
        write(fs, new Path(tree, "a/b"), data(10, 1), false);
        write(fs, new Path(tree, "c"), data(10, 1), false);
        fs.mkdirs(new Path(tree, "e"));
        Check.raises(PathIsNotEmptyDirectoryException.class, "non-recursive delete of a full directory",
                () -> fs.delete(tree, false));
        Check.that(fs.exists(new Path(tree, "a/b")), "nothing deleted");
        Check.that(fs.delete(tree, true), "recursive delete");
        Check.that(!fs.exists(tree), "the tree is gone");
        Path empty = new Path(d, "empty");
        fs.mkdirs(empty);
        Check.that(fs.delete(empty, false), "non-recursive delete of an empty directory");
        Check.that(!fs.exists(empty), "gone too");
        Check.that(fs.getFileStatus(d).isDirectory(), "the parent stays");
        Check.that(!fs.delete(new Path("/"), true), "the bucket root is not emptied");
    }

    // -- attributes and checksums ---------------------------------------------------------------------

    @Test
    public void timesPermissionsOwnersAreObjectProperties() throws IOException {
        Path d = dir("attrs");
        Path f = new Path(d, "f");
        write(fs, f, data(10, 1), false);
        fs.setTimes(f, 1_600_000_000_123L, 1_600_000_100_456L);
        fs.setPermission(f, new FsPermission((short) 0640));
        fs.setOwner(f, "alice", "staff");
        FileStatus s = fs.getFileStatus(f);
        Check.eq(1_600_000_000_123L, s.getModificationTime(), "mtime");
        Check.eq(1_600_000_100_456L, s.getAccessTime(), "atime");
        Check.eq(new FsPermission((short) 0640), s.getPermission(), "permission");
        Check.eq("alice", s.getOwner(), "owner");
        Check.eq("staff", s.getGroup(), "group");
        ObjectRecord r = fs.grid().directory.head(fs.grid().settings.account, ctx.bucket, fs.key(f), false);
        Check.eq("1600000000123", r.properties.get("hadoop.mtime"), "property hadoop.mtime");
        Check.eq("1600000100456", r.properties.get("hadoop.atime"), "property hadoop.atime");
        Check.eq("640", r.properties.get("hadoop.permission"), "property hadoop.permission");
        Check.eq("alice", r.properties.get("hadoop.owner"), "property hadoop.owner");
        Check.eq("staff", r.properties.get("hadoop.group"), "property hadoop.group");
        fs.setTimes(f, -1, 5L);
        Check.eq(1_600_000_000_123L, fs.getFileStatus(f).getModificationTime(), "-1 leaves mtime alone");
        Path implied = new Path(d, "implied");
        write(fs, new Path(implied, "x"), data(1, 1), false);
        fs.setPermission(implied, new FsPermission((short) 0700));
        fs.setOwner(implied, "bob", null);
        FileStatus ds = fs.getFileStatus(implied);
        Check.that(ds.isDirectory(), "still a directory");
        Check.eq(new FsPermission((short) 0700), ds.getPermission(), "a directory's permission (on its marker)");
        Check.eq("bob", ds.getOwner(), "a directory's owner");
        Check.raises(FileNotFoundException.class, "missing", () -> fs.setPermission(new Path(d, "nope"),
                new FsPermission((short) 0600)));
    }

    @Test
    public void compositeCrcChecksumIsHadoops() throws Exception {
        Path d = dir("checksum");
        for (int size : new int[] {1, 511, 512, 513, (int) metaSize + 1000}) {
            Path f = new Path(d, "f" + size);
            byte[] b = data(size, size);
            write(fs, f, b, false);
            FileChecksum c = fs.getFileChecksum(f);
            Check.that(c instanceof CompositeCrcFileChecksum, "a composite CRC: " + c);
            Check.eq("COMPOSITE-CRC32C", c.getAlgorithmName(), "algorithm");
            // What HDFS gives for the same bytes, with two block sizes: the same value.
            for (int block : new int[] {512 * 4, 1 << 20}) {
                FileChecksum hdfs = CompositeCrcTool.fileChecksum(new ByteArrayInputStream(b), block, 512);
                Check.eq(hdfs, c, "HDFS's COMPOSITE_CRC with " + block + "-byte blocks, " + size + " bytes");
            }
            Check.eq(c, fs.getFileChecksum(f, size), "checksum of the whole length");
            Check.eq(null, fs.getFileChecksum(f, size - 1), "no checksum of a prefix");
        }
        Path empty = new Path(d, "empty");
        write(fs, empty, new byte[0], false);
        Check.eq(null, fs.getFileChecksum(empty), "none for an empty file");
        Check.raises(FileNotFoundException.class, "a directory", () -> fs.getFileChecksum(d));
    }

    @Test
    public void statisticsAreCounted() throws IOException {
        Path p = new Path(dir("stats"), "f");
        FileSystem.Statistics stats = fs.stats();
        long written = stats.getBytesWritten();
        long writeOps = stats.getWriteOps();
        byte[] b = data(123_456, 1);
        write(fs, p, b, false);
        Check.eq(written + b.length, stats.getBytesWritten(), "bytes written");
        Check.that(stats.getWriteOps() > writeOps, "write ops");
        long read = stats.getBytesRead();
        long readOps = stats.getReadOps();
        readAll(fs, p);
        Check.that(stats.getBytesRead() >= read + b.length, "bytes read");
        Check.that(stats.getReadOps() > readOps, "read ops");
        long large = stats.getLargeReadOps();
        fs.listStatus(p.getParent());
        Check.that(stats.getLargeReadOps() > large, "listings count as large read ops");
    }

    @Test
    public void missingBucket() throws IOException {
        String name = "gone-" + Long.toHexString(System.nanoTime());
        TestContext other = new TestContext();
        other.config = ctx.config;
        other.bucket = name;
        try (GridFileSystem g = other.fs()) {
            FileNotFoundException e = Check.raises(FileNotFoundException.class, "a missing bucket",
                    () -> g.getFileStatus(new Path("/")));
            Check.that(e.getMessage().contains(name), "names the bucket: " + e.getMessage());
            Check.raises(FileNotFoundException.class, "create in a missing bucket",
                    () -> g.create(new Path("/x"), true));
        }
    }
}
