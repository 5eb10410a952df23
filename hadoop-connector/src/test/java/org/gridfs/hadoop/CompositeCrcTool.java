// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;

import org.apache.hadoop.fs.CompositeCrcFileChecksum;
import org.apache.hadoop.fs.FileChecksum;
import org.apache.hadoop.fs.MD5MD5CRC32GzipFileChecksum;
import org.apache.hadoop.io.MD5Hash;
import org.apache.hadoop.util.CrcComposer;
import org.apache.hadoop.util.CrcUtil;
import org.apache.hadoop.util.DataChecksum;

/**
 * The COMPOSITE_CRC file checksum HDFS would give for a local file, computed with Hadoop's own classes
 * the way HDFS does it ({@code dfs.checksum.combine.mode=COMPOSITE_CRC}, {@code dfs.checksum.type=CRC32C}):
 *
 * <ol>
 *   <li>a DataNode keeps one CRC32C per {@code bytesPerChecksum} chunk of each block (its .meta file:
 *       {@link DataChecksum#calculateChunkedSums});</li>
 *   <li>asked for a block checksum, it composes those chunk CRCs into one CRC of the block
 *       ({@code BlockChecksumHelper}: a striped {@link CrcComposer} whose stripe is the whole block,
 *       full chunks first, then the partial last chunk);</li>
 *   <li>the client composes the block CRCs in order, each with its block's length
 *       ({@code FileChecksumHelper.makeCompositeCrcResult}) into a {@link CompositeCrcFileChecksum}.</li>
 * </ol>
 *
 * <p>An empty file has no block, and HDFS then answers, whatever the mode, the MD5-of-CRCs "magic" of older
 * versions ({@code FileChecksumHelper.FileChecksumComputer.compute}): no composite CRC at all.
 *
 * <p>Usage: {@code CompositeCrcTool BLOCK_SIZE BYTES_PER_CHECKSUM FILE...} (HDFS's defaults: 134217728 512).
 * Prints one line per file: {@code FILE crc32c=<8 hex digits> CHECKSUM} (the hex form grid records carry,
 * {@code crc32c=none} for an empty file, then the checksum's own string).
 * Used by tests/test_checksums.py to check the grid's object CRC32C against Hadoop's.
 */
public final class CompositeCrcTool {
    private CompositeCrcTool() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: CompositeCrcTool BLOCK_SIZE BYTES_PER_CHECKSUM FILE...");
            System.exit(2);
        }
        long blockSize = Long.parseLong(args[0]);
        int bytesPerChecksum = Integer.parseInt(args[1]);
        if (blockSize <= 0 || blockSize > Integer.MAX_VALUE - 8 || bytesPerChecksum <= 0
                || blockSize % bytesPerChecksum != 0) {
            // HDFS refuses a block size that is not a multiple of bytes-per-checksum, too.
            System.err.println("block size must be a positive multiple of bytes-per-checksum, below 2 GiB");
            System.exit(2);
        }
        for (int i = 2; i < args.length; i++) {
            FileChecksum checksum;
            try (InputStream in = Files.newInputStream(Paths.get(args[i]))) {
                checksum = fileChecksum(in, (int) blockSize, bytesPerChecksum);
            }
            String crc = checksum instanceof CompositeCrcFileChecksum
                    ? String.format("%08x", CrcUtil.readInt(checksum.getBytes(), 0)) : "none";
            System.out.println(args[i] + " crc32c=" + crc + " " + checksum);
        }
    }

    /** The client side: block CRCs composed in file order, each weighted by its block's length. */
    static FileChecksum fileChecksum(InputStream in, int blockSize, int bytesPerChecksum) throws IOException {
        CrcComposer file = CrcComposer.newCrcComposer(DataChecksum.Type.CRC32C, blockSize);
        byte[] block = new byte[blockSize];
        int length;
        int blocks = 0;
        while ((length = in.readNBytes(block, 0, blockSize)) > 0) {
            file.update(blockCrc(block, length, bytesPerChecksum), length);
            blocks++;
        }
        if (blocks == 0) {
            return new MD5MD5CRC32GzipFileChecksum(0, 0, MD5Hash.digest(new byte[32]));
        }
        int crc = CrcUtil.readInt(file.digest(), 0);
        return new CompositeCrcFileChecksum(crc, DataChecksum.Type.CRC32C, bytesPerChecksum);
    }

    /** The DataNode side: the chunk CRCs of its .meta file composed into the block's CRC. */
    static int blockCrc(byte[] data, int length, int bytesPerChecksum) throws IOException {
        DataChecksum sums = DataChecksum.newDataChecksum(DataChecksum.Type.CRC32C, bytesPerChecksum);
        int chunks = (length + bytesPerChecksum - 1) / bytesPerChecksum;
        byte[] meta = new byte[chunks * sums.getChecksumSize()];
        sums.calculateChunkedSums(data, 0, length, meta, 0);

        CrcComposer composer = CrcComposer.newStripedCrcComposer(DataChecksum.Type.CRC32C, bytesPerChecksum, length);
        int fullChunks = length / bytesPerChecksum;
        DataInputStream metaIn = new DataInputStream(new ByteArrayInputStream(meta));
        composer.update(metaIn, fullChunks, bytesPerChecksum);
        int lastChunk = length % bytesPerChecksum;
        if (lastChunk > 0) {
            composer.update(metaIn.readInt(), lastChunk);
        }
        return CrcUtil.readInt(composer.digest(), 0);
    }
}
