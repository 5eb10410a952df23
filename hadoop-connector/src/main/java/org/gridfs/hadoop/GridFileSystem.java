// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.CommonPathCapabilities;
import org.apache.hadoop.fs.CompositeCrcFileChecksum;
import org.apache.hadoop.fs.ContentSummary;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileChecksum;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.ParentNotDirectoryException;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.PathIsNotEmptyDirectoryException;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.security.UserGroupInformation;
import org.apache.hadoop.util.DataChecksum;
import org.apache.hadoop.util.Progressable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code grid://BUCKET/path}: the grid as a Hadoop {@link FileSystem}, talking to the directory and the storage
 * servers directly (no gateway): it resolves objects through meta0, meta1 and meta2, reads and writes chunks in
 * parallel, encodes and decodes erasure-coded objects itself (both of the grid's codecs), and rebuilds from
 * parity what a missing or corrupt chunk held. Enable with {@code fs.grid.impl=org.gridfs.hadoop.GridFileSystem};
 * the settings are in {@link GridSettings}.
 *
 * <p>The tree is the one the Python client's fsspec {@code grid://} shows: the bucket is the root, a directory
 * is a key prefix ending in "/", and an empty directory is a zero-byte marker object whose key is the
 * directory's followed by "/". {@code mkdirs} writes the marker of the directory it creates; a directory
 * emptied by {@code delete} or {@code rename} gets one, so it stays (as it would in HDFS). Listings never show
 * markers as files.
 *
 * <p>Semantics, where an object store differs from HDFS:
 * <ul>
 *   <li>{@code create} streams the file in metachunks; it becomes visible, whole, on {@code close()} (one
 *       directory commit). {@code hflush}/{@code hsync} publish nothing: the streams do not claim them.
 *       {@code overwrite=false} is enforced by the directory at commit (if-none-match), so two writers
 *       racing for one new name cannot both win.</li>
 *   <li>{@code rename} of a file is one metadata call (no data moves). Of a directory, it is one such call per
 *       object under it, several at once; it is not atomic: when one fails, the rename stops and raises an
 *       IOException saying how many objects moved. The objects moved are under the destination, the others
 *       still under the source (each object is in exactly one place, whole); renaming the remaining source
 *       objects finishes the job. The destination's parent must exist; a destination that exists is refused
 *       (false), except a directory, into which the source moves.</li>
 *   <li>{@code delete} of a directory deletes its objects one call each, children first; a failure leaves
 *       the directory existing with the objects not deleted yet. Deleting the bucket root deletes nothing
 *       and returns false unless it is empty (as S3A does).</li>
 *   <li>Times and permissions are object properties: {@code hadoop.mtime}, {@code hadoop.atime}
 *       (milliseconds since the epoch), {@code hadoop.permission} (octal, e.g. "644"), {@code hadoop.owner},
 *       {@code hadoop.group}, and {@code hadoop.blocksize} (bytes, as reported to Hadoop for splits); the WebHDFS
 *       gateway uses the same. They are recorded, not enforced. Without them a file shows its commit time, 644,
 *       the current user and {@code fs.grid.block.size}.</li>
 *   <li>{@code append} and {@code truncate} throw UnsupportedOperationException: objects are immutable.</li>
 *   <li>{@code getFileChecksum} is a COMPOSITE-CRC32C of the whole file from the CRC32C every write records
 *       (no data is read), equal to HDFS's with {@code dfs.checksum.combine.mode=COMPOSITE_CRC} whatever its
 *       block size; null for objects stored without one, and for empty files (HDFS has no composite CRC of
 *       an empty file either).</li>
 * </ul>
 */
public class GridFileSystem extends FileSystem {
    private static final Logger LOG = LoggerFactory.getLogger(GridFileSystem.class);
    public static final String SCHEME = "grid";
    public static final String MTIME = "hadoop.mtime";
    public static final String ATIME = "hadoop.atime";
    public static final String PERMISSION = "hadoop.permission";
    public static final String OWNER = "hadoop.owner";
    public static final String GROUP = "hadoop.group";
    public static final String BLOCKSIZE = "hadoop.blocksize";
    static final String DIRECTORY_MIME = "application/x-directory";
    /** Directory calls in flight for the objects of one directory rename or delete. */
    static final int TREE_PARALLELISM = 8;

    private URI uri;
    private String bucket;
    private String account;
    private Grid grid;
    private BucketTree tree;
    private Path workingDir;
    private String user;

    @Override
    public void initialize(URI name, Configuration conf) throws IOException {
        super.initialize(name, conf);
        setConf(conf);
        bucket = name.getAuthority();
        if (bucket == null || bucket.isEmpty()) {
            throw new IOException("grid URIs name a bucket: grid://BUCKET/path, not " + name);
        }
        uri = URI.create(SCHEME + "://" + bucket);
        GridSettings settings = GridSettings.load(conf);
        account = settings.account;
        grid = new Grid(settings);
        user = UserGroupInformation.getCurrentUser().getShortUserName();
        tree = new BucketTree(grid, bucket, uri, user, statistics);
        workingDir = new Path("/").makeQualified(uri, null);
    }

    /** The shared state of this file system (tests read its counters). */
    Grid grid() {
        return grid;
    }

    /** This file system's Hadoop statistics. */
    Statistics stats() {
        return statistics;
    }

    @Override
    public String getScheme() {
        return SCHEME;
    }

    @Override
    public URI getUri() {
        return uri;
    }

    @Override
    public Path getWorkingDirectory() {
        return workingDir;
    }

    @Override
    public void setWorkingDirectory(Path dir) {
        workingDir = makeQualified(dir);
    }

    @Override
    public String getCanonicalServiceName() {
        return null; // no delegation tokens
    }

    @Override
    public long getDefaultBlockSize(Path f) {
        return grid.settings.blockSize;
    }

    @Override
    public void close() throws IOException {
        try {
            super.close();
        } finally {
            if (grid != null) {
                grid.close();
            }
        }
    }

    @Override
    public boolean hasPathCapability(Path path, String capability) throws IOException {
        switch (capability) {
            case CommonPathCapabilities.FS_CHECKSUMS:
            case CommonPathCapabilities.FS_PERMISSIONS:
                return true;
            case CommonPathCapabilities.FS_APPEND:
            case CommonPathCapabilities.FS_CONCAT:
            case CommonPathCapabilities.FS_TRUNCATE:
            case CommonPathCapabilities.FS_SYMLINKS:
                return false;
            default:
                return super.hasPathCapability(path, capability);
        }
    }

    // -- names ----------------------------------------------------------------------------------------

    /** The object key of a path ("" for the bucket root). */
    String key(Path path) {
        Path p = makeQualified(path);
        String k = p.toUri().getPath();
        while (k.startsWith("/")) {
            k = k.substring(1);
        }
        while (k.endsWith("/")) {
            k = k.substring(0, k.length() - 1);
        }
        return k;
    }

    @Override
    public FileStatus getFileStatus(Path f) throws IOException {
        FileStatus s = tree.statusOrNull(key(f));
        if (s == null) {
            throw new FileNotFoundException(makeQualified(f) + ": no such file or directory");
        }
        return s;
    }

    // -- reading --------------------------------------------------------------------------------------

    @Override
    public FSDataInputStream open(Path f, int bufferSize) throws IOException {
        String key = key(f);
        statistics.incrementReadOps(1);
        ObjectRecord r = key.isEmpty() ? null : tree.headOrNull(key, true);
        if (r == null) {
            if (key.isEmpty() || !BucketTree.isEmpty(tree.firstUnder(key))) {
                throw new FileNotFoundException(makeQualified(f) + " is a directory, not a file");
            }
            throw new FileNotFoundException(makeQualified(f) + ": no such file");
        }
        return new FSDataInputStream(new GridInputStream(grid, r, statistics));
    }

    @Override
    public FileChecksum getFileChecksum(Path f) throws IOException {
        String key = key(f);
        ObjectRecord r = key.isEmpty() ? null : tree.headOrNull(key, false);
        if (r == null) {
            throw new FileNotFoundException(makeQualified(f) + ": not a file");
        }
        statistics.incrementReadOps(1);
        if (r.crc32c.isEmpty() || r.size == 0) {
            return null; // stored before the grid kept CRCs, or empty: nothing to compare
        }
        return new CompositeCrcFileChecksum(Integer.parseUnsignedInt(r.crc32c, 16), DataChecksum.Type.CRC32C, 512);
    }

    @Override
    public FileChecksum getFileChecksum(Path f, long length) throws IOException {
        FileStatus s = getFileStatus(f);
        return length >= s.getLen() ? getFileChecksum(f) : null; // only whole files have a recorded CRC
    }

    // -- writing --------------------------------------------------------------------------------------

    @Override
    public FSDataOutputStream create(Path f, FsPermission permission, boolean overwrite, int bufferSize,
            short replication, long blockSize, Progressable progress) throws IOException {
        String key = key(f);
        if (key.isEmpty()) {
            throw new FileAlreadyExistsException(uri + "/ is the bucket's root directory");
        }
        FileStatus existing = tree.statusOrNull(key);
        if (existing != null && existing.isDirectory()) {
            throw new FileAlreadyExistsException(makeQualified(f) + " is a directory");
        }
        if (existing != null && !overwrite) {
            throw new FileAlreadyExistsException(makeQualified(f) + " already exists");
        }
        String parent = BucketTree.parentKey(key);
        if (!parent.isEmpty() && tree.headOrNull(parent, false) != null) {
            throw new ParentNotDirectoryException(tree.pathOf(parent) + " is a file, not a directory");
        }
        return new FSDataOutputStream(newObject(key, overwrite, Collections.emptyMap()), statistics);
    }

    @Override
    public FSDataOutputStream createNonRecursive(Path f, FsPermission permission, boolean overwrite,
            int bufferSize, short replication, long blockSize, Progressable progress) throws IOException {
        String parent = BucketTree.parentKey(key(f));
        FileStatus p = tree.statusOrNull(parent);
        if (p == null) {
            throw new FileNotFoundException(tree.pathOf(parent) + ": the parent directory does not exist");
        }
        if (!p.isDirectory()) {
            throw new ParentNotDirectoryException(tree.pathOf(parent) + " is a file, not a directory");
        }
        return create(f, permission, overwrite, bufferSize, replication, blockSize, progress);
    }

    private GridOutputStream newObject(String key, boolean overwrite, Map<String, String> properties)
            throws IOException {
        statistics.incrementWriteOps(1);
        Policy fixed;
        try {
            fixed = grid.fixedPolicy(account, bucket);
        } catch (GridException ex) {
            throw tree.translate(tree.pathOf(key).toString(), ex);
        }
        return new GridOutputStream(grid, bucket, key, fixed, overwrite, properties);
    }

    @Override
    public FSDataOutputStream append(Path f, int bufferSize, Progressable progress) {
        throw new UnsupportedOperationException("grid:// does not support append: objects are immutable; "
                + "write a new file (create with overwrite) instead");
    }

    @Override
    public boolean truncate(Path f, long newLength) {
        throw new UnsupportedOperationException("grid:// does not support truncate: objects are immutable; "
                + "write a new file (create with overwrite) instead");
    }

    @Override
    public boolean mkdirs(Path f, FsPermission permission) throws IOException {
        String key = key(f);
        statistics.incrementWriteOps(1);
        try {
            grid.directory.container(account, bucket);
        } catch (GridException ex) {
            if (!ex.code.equals("NoSuchContainer")) {
                throw ex;
            }
            grid.directory.createContainer(account, bucket); // mkdir -p grid://new-bucket/... makes the bucket
        }
        for (String p = key; !p.isEmpty(); p = BucketTree.parentKey(p)) {
            if (tree.headOrNull(p, false) != null) {
                if (p.equals(key)) {
                    throw new FileAlreadyExistsException(makeQualified(f) + " is a file");
                }
                throw new ParentNotDirectoryException(tree.pathOf(p) + " is a file, not a directory");
            }
            if (!BucketTree.isEmpty(tree.firstUnder(p))) {
                if (p.equals(key)) {
                    return true; // exists already
                }
                break;
            }
        }
        if (!key.isEmpty()) {
            tree.writeMarker(key, Collections.emptyMap());
        }
        return true;
    }

    // -- listing --------------------------------------------------------------------------------------

    @Override
    public FileStatus[] listStatus(Path f) throws IOException {
        List<FileStatus> out = new ArrayList<>();
        RemoteIterator<FileStatus> it = listStatusIterator(f);
        while (it.hasNext()) {
            out.add(it.next());
        }
        return out.toArray(new FileStatus[0]);
    }

    @Override
    public RemoteIterator<FileStatus> listStatusIterator(Path f) throws IOException {
        statistics.incrementReadOps(1);
        return tree.lister(key(f), false, false);
    }

    @Override
    public RemoteIterator<LocatedFileStatus> listFiles(Path f, boolean recursive) throws IOException {
        statistics.incrementReadOps(1);
        RemoteIterator<FileStatus> files = tree.lister(key(f), recursive, true);
        return new RemoteIterator<LocatedFileStatus>() {
            @Override
            public boolean hasNext() throws IOException {
                return files.hasNext();
            }

            @Override
            public LocatedFileStatus next() throws IOException {
                FileStatus s = files.next();
                return new LocatedFileStatus(s, getFileBlockLocations(s, 0, s.getLen()));
            }
        };
    }

    @Override
    public ContentSummary getContentSummary(Path f) throws IOException {
        String key = key(f);
        FileStatus s = getFileStatus(f);
        if (s.isFile()) {
            return new ContentSummary.Builder().length(s.getLen()).fileCount(1).directoryCount(0)
                    .spaceConsumed(s.getLen() * s.getReplication()).build();
        }
        return tree.contentSummary(key);
    }

    // -- namespace changes ----------------------------------------------------------------------------

    @Override
    public boolean rename(Path src, Path dst) throws IOException {
        String from = key(src);
        String to = key(dst);
        if (from.isEmpty()) {
            return false; // the bucket root cannot move
        }
        FileStatus s = tree.statusOrNull(from);
        if (s == null) {
            return false;
        }
        if (to.equals(from)) {
            return true;
        }
        if (to.startsWith(from + "/")) {
            return false; // into itself
        }
        FileStatus d = tree.statusOrNull(to);
        if (d != null && d.isDirectory()) {
            to = to.isEmpty() ? BucketTree.baseName(from) : to + "/" + BucketTree.baseName(from);
            if (to.equals(from)) {
                return true;
            }
            d = tree.statusOrNull(to);
        }
        if (d != null) {
            return false; // never overwrite
        }
        String parent = BucketTree.parentKey(to);
        if (!parent.isEmpty()) {
            FileStatus p = tree.statusOrNull(parent);
            if (p == null || !p.isDirectory()) {
                return false;
            }
        }
        statistics.incrementWriteOps(1);
        String target = to;
        try {
            if (s.isFile()) {
                grid.directory.rename(account, bucket, from, target);
            } else {
                String fromPrefix = from + "/";
                if (tree.headOrNull(fromPrefix, false) != null) { // the marker first: the target exists at once
                    grid.directory.rename(account, bucket, fromPrefix, target + "/");
                }
                tree.eachUnder(fromPrefix, k -> grid.directory.rename(account, bucket, k,
                        target + "/" + k.substring(fromPrefix.length())), "rename of " + src + " to " + dst);
            }
        } catch (GridException ex) {
            throw tree.translate("rename " + src + " to " + dst, ex);
        }
        tree.keepDirectory(BucketTree.parentKey(from));
        return true;
    }

    @Override
    public boolean delete(Path f, boolean recursive) throws IOException {
        String key = key(f);
        statistics.incrementWriteOps(1);
        if (key.isEmpty()) {
            if (BucketTree.isEmpty(tree.list("", "", "", 1))) {
                return true;
            }
            if (!recursive) {
                throw new PathIsNotEmptyDirectoryException(uri + "/ is not empty");
            }
            LOG.warn("refusing to delete every object of bucket {}: delete its directories instead", bucket);
            return false;
        }
        FileStatus s = tree.statusOrNull(key);
        if (s == null) {
            return false;
        }
        try {
            if (s.isFile()) {
                grid.directory.delete(account, bucket, key);
            } else {
                String prefix = key + "/";
                if (!recursive) {
                    Directory.Page page = tree.list(prefix, "/", "", 2);
                    boolean onlyMarker = page.prefixes.isEmpty() && page.objects.size() <= 1
                            && (page.objects.isEmpty() || page.objects.get(0).key.equals(prefix));
                    if (!onlyMarker) {
                        throw new PathIsNotEmptyDirectoryException(makeQualified(f) + " is not empty");
                    }
                }
                tree.eachUnder(prefix, k -> deleteIfThere(k), "delete of " + f);
                deleteIfThere(prefix);
            }
        } catch (GridException ex) {
            throw tree.translate("delete " + f, ex);
        }
        tree.keepDirectory(BucketTree.parentKey(key));
        return true;
    }

    private void deleteIfThere(String key) throws IOException {
        try {
            grid.directory.delete(account, bucket, key);
        } catch (GridException ex) {
            if (!ex.code.equals("NoSuchObject")) {
                throw ex;
            }
        }
    }

    // -- attributes -----------------------------------------------------------------------------------

    /** Set properties of a file, or of a directory's marker (written when the directory has none). */
    private void setProperties(Path p, Map<String, String> properties) throws IOException {
        String key = key(p);
        statistics.incrementWriteOps(1);
        if (key.isEmpty()) {
            LOG.debug("the bucket root keeps no attributes: {} ignored for {}", properties, p);
            return;
        }
        try {
            if (tree.headOrNull(key, false) != null) {
                grid.directory.setProperties(account, bucket, key, properties);
                return;
            }
            if (BucketTree.isEmpty(tree.firstUnder(key))) {
                throw new FileNotFoundException(makeQualified(p) + ": no such file or directory");
            }
            if (tree.headOrNull(key + "/", false) != null) {
                grid.directory.setProperties(account, bucket, key + "/", properties);
            } else {
                tree.writeMarker(key, properties);
            }
        } catch (GridException ex) {
            throw tree.translate(p.toString(), ex);
        }
    }

    @Override
    public void setTimes(Path p, long mtime, long atime) throws IOException {
        Map<String, String> props = new LinkedHashMap<>();
        if (mtime >= 0) {
            props.put(MTIME, Long.toString(mtime));
        }
        if (atime >= 0) {
            props.put(ATIME, Long.toString(atime));
        }
        if (!props.isEmpty()) {
            setProperties(p, props);
        }
    }

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
        setProperties(p, Collections.singletonMap(PERMISSION, Integer.toOctalString(permission.toShort())));
    }

    @Override
    public void setOwner(Path p, String username, String groupname) throws IOException {
        Map<String, String> props = new LinkedHashMap<>();
        if (username != null) {
            props.put(OWNER, username);
        }
        if (groupname != null) {
            props.put(GROUP, groupname);
        }
        if (!props.isEmpty()) {
            setProperties(p, props);
        }
    }
}
