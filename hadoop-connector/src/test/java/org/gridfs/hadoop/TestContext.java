// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.net.URI;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;

/** What the live-grid suites are pointed at: a grid.toml, a bucket, a folder of fixtures shared with Python. */
final class TestContext {
    String config = "";
    String bucket = "";
    String fixtures = "";

    Configuration conf() {
        Configuration conf = new Configuration(false);
        conf.set("fs.grid.impl", GridFileSystem.class.getName());
        conf.set("fs.grid.config", config);
        conf.setBoolean("fs.grid.impl.disable.cache", true);
        return conf;
    }

    /** A file system of its own (not the shared cache), with the extra settings {@code kv} (name, value...). */
    GridFileSystem fs(String... kv) throws IOException {
        Configuration conf = conf();
        for (int i = 0; i + 1 < kv.length; i += 2) {
            conf.set(kv[i], kv[i + 1]);
        }
        return (GridFileSystem) FileSystem.newInstance(URI.create("grid://" + bucket + "/"), conf);
    }
}
