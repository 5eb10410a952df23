// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.concurrent.Future;

import org.apache.hadoop.fs.ContentSummary;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.permission.FsPermission;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One bucket's objects as the tree Hadoop sees (the conventions of gridfs.fs and the WebHDFS gateway): keys
 * are paths without their leading "/", a directory is a key prefix ending in "/", an empty directory is the
 * zero-byte marker object {@code KEY/}. Lookups and listings of the directory, statuses built from object
 * records and their {@code hadoop.*} properties, markers, and the object-by-object walks that directory
 * renames and deletes are made of. {@link GridFileSystem} puts Hadoop's API on top.
 */
final class BucketTree {
    private static final Logger LOG = LoggerFactory.getLogger(BucketTree.class);

    private final Grid grid;
    private final String account;
    private final String bucket;
    private final URI uri;
    private final String user;
    private final FileSystem.Statistics stats;

    BucketTree(Grid grid, String bucket, URI uri, String user, FileSystem.Statistics stats) {
        this.grid = grid;
        this.account = grid.settings.account;
        this.bucket = bucket;
        this.uri = uri;
        this.user = user;
        this.stats = stats;
    }

    // -- names ----------------------------------------------------------------------------------------

    Path pathOf(String key) {
        return new Path(GridFileSystem.SCHEME, bucket, "/" + key);
    }

    static String parentKey(String key) {
        int slash = key.lastIndexOf('/');
        return slash < 0 ? "" : key.substring(0, slash);
    }

    static String baseName(String key) {
        return key.substring(key.lastIndexOf('/') + 1);
    }

    /** A grid error as Hadoop callers expect it: not found is FileNotFoundException, exists is FileAlreadyExists. */
    IOException translate(String what, GridException ex) {
        if (ex.code.equals("NoSuchContainer")) {
            return new FileNotFoundException(what + ": bucket '" + bucket + "' does not exist in account '"
                    + account + "' (" + ex.getMessage() + ")");
        }
        if (ex.notFound()) {
            FileNotFoundException fnf = new FileNotFoundException(what + ": " + ex.getMessage());
            fnf.initCause(ex);
            return fnf;
        }
        if (ex.code.equals("AlreadyExists") || ex.code.equals("PreconditionFailed")) {
            return new FileAlreadyExistsException(what + ": " + ex.getMessage());
        }
        return ex;
    }

    // -- lookups --------------------------------------------------------------------------------------

    /** The latest version of an object, or null when there is none (a missing bucket raises). */
    ObjectRecord headOrNull(String key, boolean chunks) throws IOException {
        try {
            return grid.directory.head(account, bucket, key, chunks);
        } catch (GridException ex) {
            if (ex.code.equals("NoSuchObject")) {
                return null;
            }
            throw translate(pathOf(key).toString(), ex);
        }
    }

    Directory.Page list(String prefix, String delimiter, String token, int max) throws IOException {
        stats.incrementLargeReadOps(1);
        try {
            return grid.directory.list(account, bucket, prefix, delimiter, token, max);
        } catch (GridException ex) {
            throw translate(pathOf(prefix).toString(), ex);
        }
    }

    Directory.Page firstUnder(String dirKey) throws IOException {
        return list(dirKey.isEmpty() ? "" : dirKey + "/", "/", "", 1);
    }

    static boolean isEmpty(Directory.Page page) {
        return page.objects.isEmpty() && page.prefixes.isEmpty();
    }

    /** The status of a path, or null when nothing is there. */
    FileStatus statusOrNull(String key) throws IOException {
        stats.incrementReadOps(1);
        if (key.isEmpty()) {
            try {
                grid.directory.container(account, bucket);
            } catch (GridException ex) {
                throw translate(uri.toString(), ex);
            }
            return dirStatus("", null);
        }
        ObjectRecord r = headOrNull(key, false);
        if (r != null) {
            return fileStatus(r);
        }
        Directory.Page page = firstUnder(key);
        if (isEmpty(page)) {
            return null;
        }
        ObjectRecord marker = page.objects.isEmpty() ? null : page.objects.get(0);
        return dirStatus(key, marker != null && marker.key.equals(key + "/") ? marker : null);
    }

    private long longProp(ObjectRecord r, String name, long otherwise) {
        String v = r == null ? null : r.properties.get(name);
        try {
            return v == null || v.isEmpty() ? otherwise : Long.parseLong(v.trim());
        } catch (NumberFormatException ex) {
            return otherwise;
        }
    }

    private FsPermission permission(ObjectRecord r, boolean dir) {
        String v = r == null ? null : r.properties.get(GridFileSystem.PERMISSION);
        if (v != null) {
            try {
                return new FsPermission((short) Integer.parseInt(v.trim(), 8));
            } catch (NumberFormatException ex) {
                LOG.debug("{}: unreadable {} '{}'", r.key, GridFileSystem.PERMISSION, v);
            }
        }
        return new FsPermission((short) (dir ? 0755 : 0644));
    }

    private String prop(ObjectRecord r, String name, String otherwise) {
        String v = r == null ? null : r.properties.get(name);
        return v == null || v.isEmpty() ? otherwise : v;
    }

    private static int replication(ObjectRecord r) {
        try {
            Policy p = Policy.fromChunkMethod(r.policy, r.chunkMethod);
            return p.ec ? 1 : p.copies;
        } catch (IllegalArgumentException ex) {
            return 1;
        }
    }

    FileStatus fileStatus(ObjectRecord r) {
        long mtime = longProp(r, GridFileSystem.MTIME, (long) (r.mtime * 1000));
        long blockSize = longProp(r, GridFileSystem.BLOCKSIZE, grid.settings.blockSize);
        return new FileStatus(r.size, false, replication(r), blockSize, mtime, longProp(r, GridFileSystem.ATIME, 0),
                permission(r, false), prop(r, GridFileSystem.OWNER, user), prop(r, GridFileSystem.GROUP, user), pathOf(r.key));
    }

    /** A directory's status; {@code marker} (its marker object, when it has one) gives times and permission. */
    FileStatus dirStatus(String key, ObjectRecord marker) {
        long mtime = marker == null ? 0 : longProp(marker, GridFileSystem.MTIME, (long) (marker.mtime * 1000));
        return new FileStatus(0, true, 1, 0, mtime, longProp(marker, GridFileSystem.ATIME, 0), permission(marker, true),
                prop(marker, GridFileSystem.OWNER, user), prop(marker, GridFileSystem.GROUP, user), key.isEmpty() ? new Path(uri + "/")
                : pathOf(key));
    }

    /** A directory marker: the zero-byte object {@code key + "/"}. */
    void writeMarker(String key, Map<String, String> properties) throws IOException {
        ObjectRecord r = new ObjectRecord();
        r.account = account;
        r.bucket = bucket;
        r.key = key + "/";
        r.contentId = Directory.newId();
        Policy p = grid.settings.policy(grid.settings.policyForSize(0));
        r.policy = p.name;
        r.chunkMethod = p.chunkMethod();
        r.crc32c = "00000000";
        r.mimeType = GridFileSystem.DIRECTORY_MIME;
        r.properties.putAll(properties);
        try {
            grid.directory.commit(r, false);
        } catch (GridException ex) {
            throw translate(pathOf(key).toString(), ex);
        }
    }

    /** Keep a directory that an operation may have emptied: give it a marker when nothing is left under it. */
    void keepDirectory(String key) throws IOException {
        if (!key.isEmpty() && isEmpty(firstUnder(key))) {
            writeMarker(key, Collections.emptyMap());
        }
    }

    /** The entries of a directory, page by page; a file lists as itself. */
    final class Lister implements RemoteIterator<FileStatus> {
        private final String prefix;
        private final String delimiter;
        private final boolean filesOnly;
        private List<FileStatus> batch = new ArrayList<>();
        private int at;
        private String token;
        private boolean exhausted;

        Lister(String key, boolean recursive, boolean filesOnly) throws IOException {
            this.prefix = key.isEmpty() ? "" : key + "/";
            this.delimiter = recursive ? "" : "/";
            this.filesOnly = filesOnly;
            boolean found = fetch("");
            if (!found && !key.isEmpty()) {
                ObjectRecord r = headOrNull(key, false);
                if (r == null) {
                    throw new FileNotFoundException(pathOf(key) + ": no such file or directory");
                }
                batch.add(fileStatus(r)); // a file lists as itself
            } else if (!found) {
                statusOrNull(""); // the bucket root: raises when the bucket does not exist
            }
        }

        /** Load the next page; true when the page held anything, markers included. */
        private boolean fetch(String from) throws IOException {
            Directory.Page page = list(prefix, delimiter, from, grid.settings.listPage);
            batch = new ArrayList<>();
            at = 0;
            if (!filesOnly) {
                for (String p : page.prefixes) {
                    String dir = p.substring(0, p.length() - 1);
                    if (!baseName(dir).isEmpty()) {
                        batch.add(dirStatus(dir, null));
                    }
                }
            }
            for (ObjectRecord r : page.objects) {
                if (!r.key.endsWith("/")) { // markers are directories, never files
                    batch.add(fileStatus(r));
                }
            }
            if (!filesOnly) {
                batch.sort((a, b) -> a.getPath().compareTo(b.getPath()));
            }
            token = page.next;
            exhausted = page.next.isEmpty();
            return !isEmpty(page);
        }

        @Override
        public boolean hasNext() throws IOException {
            while (at >= batch.size() && !exhausted) {
                fetch(token);
            }
            return at < batch.size();
        }

        @Override
        public FileStatus next() throws IOException {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return batch.get(at++);
        }
    }

    /** Apply {@code change} to every object under {@code prefix} (the marker too), several at once. */
    interface PerObject {
        void apply(String key) throws IOException;
    }

    int eachUnder(String prefix, PerObject change, String what) throws IOException {
        int done = 0;
        IOException failure = null;
        String token = "";
        do {
            Directory.Page page = list(prefix, "", token, grid.settings.listPage);
            List<String> keys = new ArrayList<>();
            for (ObjectRecord r : page.objects) {
                if (!r.key.equals(prefix)) {
                    keys.add(r.key);
                }
            }
            for (int i = 0; i < keys.size() && failure == null; i += GridFileSystem.TREE_PARALLELISM) {
                List<Future<Void>> batch = new ArrayList<>();
                for (String k : keys.subList(i, Math.min(keys.size(), i + GridFileSystem.TREE_PARALLELISM))) {
                    batch.add(grid.metachunks.submit(() -> {
                        change.apply(k);
                        return null;
                    }));
                }
                for (Future<Void> fut : batch) {
                    try {
                        Grid.await(fut);
                        done++;
                    } catch (IOException ex) {
                        failure = failure == null ? ex : failure;
                    }
                }
            }
            if (failure != null) {
                throw new IOException(what + " stopped after " + done + " objects: " + failure.getMessage()
                        + " (the objects not done yet are where they were)", failure);
            }
            token = page.next;
        } while (!token.isEmpty());
        return done;
    }

    private static double overhead(ObjectRecord r) {
        try {
            Policy p = Policy.fromChunkMethod(r.policy, r.chunkMethod);
            return p.ec ? (p.k + p.m) / (double) p.k : p.copies;
        } catch (IllegalArgumentException ex) {
            return 1;
        }
    }

    /** The entries of a directory (recursively: every object under it), page by page; a file lists as itself. */
    Lister lister(String key, boolean recursive, boolean filesOnly) throws IOException {
        return new Lister(key, recursive, filesOnly);
    }

    /** The content summary of the directory {@code key}: one listing of everything under it. */
    ContentSummary contentSummary(String key) throws IOException {
        String prefix = key.isEmpty() ? "" : key + "/";
        long files = 0;
        long bytes = 0;
        double raw = 0;
        Set<String> dirs = new HashSet<>();
        String token = "";
        do {
            Directory.Page page = list(prefix, "", token, grid.settings.listPage);
            for (ObjectRecord r : page.objects) {
                String rest = r.key.substring(prefix.length());
                if (!r.key.endsWith("/")) {
                    files++;
                    bytes += r.size;
                    raw += r.size * overhead(r);
                }
                for (int slash = rest.indexOf('/'); slash >= 0; slash = rest.indexOf('/', slash + 1)) {
                    dirs.add(rest.substring(0, slash)); // every directory between the summary's and the object
                }
            }
            token = page.next;
        } while (!token.isEmpty());
        dirs.remove(""); // the directory's own marker
        return new ContentSummary.Builder().length(bytes).fileCount(files).directoryCount(dirs.size() + 1)
                .spaceConsumed((long) raw).build();
    }
}
