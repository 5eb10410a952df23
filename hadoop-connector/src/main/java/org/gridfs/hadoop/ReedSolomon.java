// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.hadoop.io.erasurecode.rawcoder.util.GF256;
import org.apache.hadoop.io.erasurecode.rawcoder.util.RSUtil;

/**
 * Systematic Reed-Solomon over GF(2^8) (polynomial 0x11D) for both codecs the grid stores, reading and writing
 * the same chunks as the Python client: share i &lt; k is data chunk i, share k + j is parity j, the sum over
 * the data chunks of the encode matrix's row k + j times each.
 *
 * <p>The two codecs differ only in that matrix. {@code isal} is ISA-L's {@code gf_gen_cauchy1_matrix}, which
 * Hadoop's own coder reproduces ({@link RSUtil#genCauchyMatrix}). {@code zfec} is zfec's (fec.c,
 * {@code fec_new}): a Vandermonde matrix whose row 0 is (1, 0, ..., 0) and whose row r + 1 is the powers of
 * alpha^r (alpha = 2), made systematic by multiplying its bottom rows by the inverse of its top k x k.
 * The arithmetic (multiplication tables, matrix inversion, the coding loop) is Hadoop's: the same field, so
 * zfec's matrix built with it is zfec's matrix.
 *
 * <p>Decoding inverts the rows of the k shares held and multiplies: one routine for both codecs. Instances
 * are immutable and shared.
 */
final class ReedSolomon {
    /** Bytes coded per pass, so that the inputs and outputs of a pass stay in the CPU cache. */
    private static final int STRIDE = 64 << 10;
    private static final Map<String, ReedSolomon> CODECS = new ConcurrentHashMap<>();

    final int k;
    final int m;
    final String codec;
    /** (k + m) x k, row-major; the top k rows are the identity. */
    final byte[] matrix;
    private final byte[] encodeTables;

    private ReedSolomon(String codec, int k, int m) {
        this.codec = codec;
        this.k = k;
        this.m = m;
        this.matrix = codec.equals("isal") ? cauchyMatrix(k, k + m) : zfecMatrix(k, k + m);
        this.encodeTables = tables(Arrays.copyOfRange(matrix, k * k, (k + m) * k), m);
    }

    static ReedSolomon of(String codec, int k, int m) {
        if (!codec.equals("zfec") && !codec.equals("isal")) {
            throw new IllegalArgumentException("codec '" + codec + "' is not available in this connector");
        }
        return CODECS.computeIfAbsent(codec + "/" + k + "/" + m, key -> new ReedSolomon(codec, k, m));
    }

    static byte[] cauchyMatrix(int k, int n) {
        byte[] a = new byte[n * k];
        RSUtil.genCauchyMatrix(a, n, k);
        return a;
    }

    static byte[] zfecMatrix(int k, int n) {
        // alpha^e for e in 0..254; alpha = 2 generates the field of polynomial 0x11D, zfec's and ISA-L's.
        byte[] exp = new byte[255];
        exp[0] = 1;
        for (int e = 1; e < 255; e++) {
            exp[e] = GF256.gfMul(exp[e - 1], (byte) 2);
        }
        byte[] vdm = new byte[n * k];
        vdm[0] = 1; // row 0: the value at x = 0
        for (int row = 0; row + 1 < n; row++) {
            for (int col = 0; col < k; col++) {
                vdm[(row + 1) * k + col] = exp[(row * col) % 255];
            }
        }
        byte[] top = Arrays.copyOf(vdm, k * k);
        byte[] inverse = new byte[k * k];
        GF256.gfInvertMatrix(top, inverse, k);
        byte[] out = new byte[n * k];
        for (int i = 0; i < k; i++) {
            out[i * k + i] = 1;
        }
        for (int row = k; row < n; row++) {
            for (int col = 0; col < k; col++) {
                byte acc = 0;
                for (int t = 0; t < k; t++) {
                    acc ^= GF256.gfMul(vdm[row * k + t], inverse[t * k + col]);
                }
                out[row * k + col] = acc;
            }
        }
        return out;
    }

    private byte[] tables(byte[] rows, int nrows) {
        byte[] t = new byte[k * nrows * 32];
        RSUtil.initTables(k, nrows, rows, 0, t);
        return t;
    }

    /** out[j][outOff[j] ..+len) = sum over i of rows[j][i] * in[i][inOff[i] ..+len), in strides. */
    private static void multiply(byte[] tables, byte[][] in, int[] inOff, int len, byte[][] out, int[] outOff) {
        for (int j = 0; j < out.length; j++) {
            Arrays.fill(out[j], outOff[j], outOff[j] + len, (byte) 0); // RSUtil adds into its outputs
        }
        int[] io = new int[in.length];
        int[] oo = new int[out.length];
        for (int done = 0; done < len; done += STRIDE) {
            int n = Math.min(STRIDE, len - done);
            for (int i = 0; i < in.length; i++) {
                io[i] = inOff[i] + done;
            }
            for (int j = 0; j < out.length; j++) {
                oo[j] = outOff[j] + done;
            }
            RSUtil.encodeData(tables, n, in, io, out, oo);
        }
    }

    /** The m parity chunks of k data chunks of {@code len} bytes each. */
    void encode(byte[][] data, int[] dataOff, int len, byte[][] parity, int[] parityOff) {
        multiply(encodeTables, data, dataOff, len, parity, parityOff);
    }

    /**
     * Rebuild data chunks from any k shares: {@code shares[s]} (null when not held) holds {@code len} bytes of
     * share s at {@code shareOff[s]}; data chunk {@code wanted[j]} is written to {@code out[j]} at
     * {@code outOff[j]}. The first k shares held, in share order, are used.
     */
    void decode(byte[][] shares, int[] shareOff, int len, int[] wanted, byte[][] out, int[] outOff) {
        int[] used = new int[k];
        int count = 0;
        for (int s = 0; s < shares.length && count < k; s++) {
            if (shares[s] != null) {
                used[count++] = s;
            }
        }
        if (count < k) {
            throw new IllegalArgumentException("need " + k + " shares to decode, have " + count);
        }
        byte[] chosen = new byte[k * k];
        for (int r = 0; r < k; r++) {
            System.arraycopy(matrix, used[r] * k, chosen, r * k, k);
        }
        byte[] inverse = new byte[k * k];
        GF256.gfInvertMatrix(chosen, inverse, k);
        byte[] rows = new byte[wanted.length * k];
        for (int j = 0; j < wanted.length; j++) {
            System.arraycopy(inverse, wanted[j] * k, rows, j * k, k);
        }
        byte[][] in = new byte[k][];
        int[] inOff = new int[k];
        for (int r = 0; r < k; r++) {
            in[r] = shares[used[r]];
            inOff[r] = shareOff[used[r]];
        }
        multiply(tables(rows, wanted.length), in, inOff, len, out, outOff);
    }
}
