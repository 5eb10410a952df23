// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;

/** A suite on a live grid: one file system of its own, opened before its tests and closed after. */
abstract class LiveSuite {
    final TestContext ctx;
    GridFileSystem fs;

    LiveSuite(TestContext ctx) {
        this.ctx = ctx;
    }

    public void before() throws IOException {
        fs = ctx.fs();
    }

    public void after() throws IOException {
        fs.close();
    }
}
