// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import org.apache.hadoop.io.erasurecode.ECChunk;
import org.apache.hadoop.io.erasurecode.ErasureCoderOptions;
import org.apache.hadoop.io.erasurecode.rawcoder.RSRawEncoder;

import org.gridfs.hadoop.TestRunner.Test;

/** The parts that need no grid: JSON, TOML, policies, placement, and both Reed-Solomon codecs. */
public final class UnitTests {
    // -- JSON -------------------------------------------------------------------------------------------

    @Test
    public void jsonRoundTripsWhatTheServicesSend() {
        String text = "{\"a\": [1, -2, 3.5, 1e3, true, false, null], \"s\": \"\\u00e9t\\u00e9 \\ud83d\\ude00 \\\"q\\\" "
                + "\\\\ \\n\", \"big\": 1733097600123456, \"o\": {}}";
        Map<String, Object> m = Json.object(Json.parse(text));
        Check.eq(Arrays.asList(1L, -2L, 3.5, 1000.0, true, false, null), m.get("a"), "array");
        Check.eq("\u00e9t\u00e9 \ud83d\ude00 \"q\" \\ \n", m.get("s"), "escapes and surrogate pairs");
        Check.eq(1733097600123456L, m.get("big"), "microsecond versions fit a long");
        Check.eq(m, Json.parse(Json.write(m)), "write then parse");
        for (String bad : new String[] {"{", "[1,]", "{\"a\" 1}", "\"\\x\"", "01x", "{} x", "\"a\nb\""}) {
            Check.raises(IllegalArgumentException.class, "malformed " + bad, () -> Json.parse(bad));
        }
    }

    // -- TOML -------------------------------------------------------------------------------------------

    @Test
    public void tomlReadsGridToml() {
        String text = "# written by grid up\n[namespace]\nname = \"GRID\"\nsecret = \"s3cr\\\"et\"\n"
                + "chunk_size = 8_388_608\ndefault_policy = 'EC63-ISAL'\nconnect_timeout = 0.25\n"
                + "size_rules = [\n    { max_size = 1048576, policy = \"THREECOPIES\" },\n]\n\n"
                + "[conscience]\nurl = \"http://127.0.0.1:6000\" # trailing comment\n\n"
                + "[policies.EC84]\nmethod = \"ec\"\nk = 8\nm = 4\ncodec = \"isal\"\n\n"
                + "[local]\ndata = \"/x\"\n\n[[local.services]]\nname = \"a\"\nargs = [\n    \"--x\",\n    \"y\",\n]\n"
                + "pid = 1\n\n[[local.services]]\nname = \"b\"\nflags = { on = true, n = 0x10 }\n"
                + "text = \"\"\"\nline one\nline two\"\"\"\n";
        Map<String, Object> t = Toml.parse(text);
        Map<String, Object> ns = Json.object(t.get("namespace"));
        Check.eq("s3cr\"et", ns.get("secret"), "escaped string");
        Check.eq(8388608L, ns.get("chunk_size"), "underscored integer");
        Check.eq("EC63-ISAL", ns.get("default_policy"), "literal string");
        Check.eq(0.25, ns.get("connect_timeout"), "float");
        Check.eq("http://127.0.0.1:6000", Json.object(t.get("conscience")).get("url"), "comment after a value");
        List<Object> services = Json.list(Json.object(t.get("local")).get("services"));
        Check.eq(2, services.size(), "array of tables");
        Check.eq(Arrays.asList("--x", "y"), Json.object(services.get(0)).get("args"), "multi-line array");
        Map<String, Object> b = Json.object(services.get(1));
        Check.eq(16L, Json.object(b.get("flags")).get("n"), "inline table, hex");
        Check.eq("line one\nline two", b.get("text"), "multi-line string");

        GridSettings s = new GridSettings();
        s.read(t);
        Check.eq("s3cr\"et", s.secret, "secret");
        Check.eq("THREECOPIES", s.policyForSize(1000), "size rule");
        Check.eq("EC63-ISAL", s.policyForSize(2 << 20), "default policy past the rules");
        Check.eq("EC63-ISAL", s.policyForSize(-1), "unknown size");
        Check.eq("ec/k=8,m=4,codec=isal", s.policies.get("EC84").chunkMethod(), "declared policy");
        Check.raises(IllegalArgumentException.class, "unterminated string", () -> Toml.parse("a = \"x\n"));
        Check.raises(IllegalArgumentException.class, "junk after a value", () -> Toml.parse("a = 1 2\n"));
    }

    // -- policies and placement -------------------------------------------------------------------------

    @Test
    public void policiesFromChunkMethods() {
        Policy p = Policy.fromChunkMethod("EC63", "ec/k=6,m=3,codec=zfec");
        Check.that(p.ec && p.k == 6 && p.m == 3 && p.codec.equals("zfec"), "ec zfec");
        Check.eq(7, p.minDurable(), "k + 1 chunks before a metachunk counts");
        Check.eq(48L << 20, p.metachunkSize(8L << 20), "k chunks per metachunk");
        Check.eq("isal", Policy.fromChunkMethod("X", "ec/k=4,m=2,codec=isal").codec, "isal");
        Check.eq("zfec", Policy.fromChunkMethod("X", "ec/k=4,m=2").codec, "zfec by default");
        Policy c = Policy.fromChunkMethod("THREECOPIES", "copies/n=3");
        Check.that(!c.ec && c.width() == 3 && c.minDurable() == 3, "copies");
        for (String bad : new String[] {"ec/k=x,m=1", "raid/n=1", "copies/", "ec/k=2,m=1,codec=lrc"}) {
            Check.raises(IllegalArgumentException.class, bad, () -> Policy.fromChunkMethod("X", bad));
        }
    }

    private static List<Services.Service> servers(int hosts, int volumes) {
        List<Services.Service> out = new ArrayList<>();
        for (int h = 0; h < hosts; h++) {
            for (int v = 0; v < volumes; v++) {
                out.add(new Services.Service("rawx-" + h + v, "127.0.0.1:" + (7000 + h * 10 + v),
                        "site1.rack1.node" + h + ".vol" + v, 50, 50, true));
            }
        }
        return out;
    }

    @Test
    public void placementSpreadsOverHostsAndNeverRepeatsAVolume() throws Exception {
        Random rng = new Random(7);
        for (int round = 0; round < 200; round++) {
            List<Services.Service> chosen = Placement.select(servers(3, 3), 6, Collections.emptySet(), rng);
            Set<String> volumes = new HashSet<>();
            Map<String, Integer> perHost = new HashMap<>();
            for (Services.Service s : chosen) {
                Check.that(volumes.add(s.location), "a volume twice: " + s.location);
                perHost.merge(s.location.split("\\.")[2], 1, Integer::sum);
            }
            Check.eq(new HashSet<>(Arrays.asList(2)), new HashSet<>(perHost.values()), "6 picks on 3 hosts: 2 each");
        }
        List<Services.Service> nine = servers(3, 3);
        nine.set(0, new Services.Service("rawx-00", "127.0.0.1:7000", "site1.rack1.node0.vol0", 0, 50, true,
                "locked"));
        nine.set(1, new Services.Service("rawx-01", "127.0.0.1:7001", "site1.rack1.node0.vol1", 0, 0, false));
        GridException e = Check.raises(GridException.class, "a locked and a silent server leave 7 volumes for 8",
                () -> Placement.select(nine, 8, Collections.emptySet(), rng));
        Check.that(e.getMessage().contains("only 7 can take writes now (9 known, 1 locked, 1 silent)"),
                "the error says why: " + e.getMessage());
        List<Services.Service> one = Placement.select(nine, 1, new HashSet<>(Arrays.asList("rawx-02",
                "127.0.0.1:7010")), rng);
        Check.that(!Arrays.asList("rawx-00", "rawx-01", "rawx-02", "rawx-10").contains(one.get(0).id),
                "avoided by id or addr, never locked or silent");
    }

    @Test
    public void placementPassesOverALaggardWhileOthersSuffice() throws Exception {
        Random rng = new Random(11);
        List<Services.Service> twelve = servers(4, 3);
        twelve.set(4, new Services.Service("rawx-11", "127.0.0.1:7011", "site1.rack1.node1.vol1", 3, 50, true));
        twelve.set(7, new Services.Service("rawx-21", "127.0.0.1:7021", "site1.rack1.node2.vol1", 10, 50, true));
        int slow = 0;
        int ramping = 0;
        for (int round = 0; round < 300; round++) {
            for (Services.Service s : Placement.select(twelve, 9, Collections.emptySet(), rng)) {
                slow += s.id.equals("rawx-11") ? 1 : 0;
                ramping += s.id.equals("rawx-21") ? 1 : 0;
            }
        }
        Check.eq(0, slow, "a volume at 3 among peers at 50 takes no chunk while 11 others suffice");
        Check.that(ramping > 0, "a volume ramping up (a fifth of its score) still takes chunks");
        boolean used = false;
        for (Services.Service s : Placement.select(twelve, 12, Collections.emptySet(), rng)) {
            used |= s.id.equals("rawx-11");
        }
        Check.that(used, "the laggard is used when the stripe needs every volume");
    }

    // -- Reed-Solomon -----------------------------------------------------------------------------------

    private static byte[][] sample(int k, int len) {
        byte[][] data = new byte[k][len];
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < len; j++) {
                data[i][j] = (byte) ((i * 37 + j * 11 + 1) % 256);
            }
        }
        return data;
    }

    private static byte[][] encode(ReedSolomon rs, byte[][] data) {
        int len = data[0].length;
        byte[][] parity = new byte[rs.m][len];
        rs.encode(data, new int[rs.k], len, parity, new int[rs.m]);
        return parity;
    }

    private static String hex(byte[] b) {
        return Directory.hex(b);
    }

    @Test
    public void zfecParityMatchesThePythonZfec() {
        // Computed with zfec.Encoder(k, k + m).encode(data, parity numbers) on the same 8-byte data chunks.
        Object[][] cases = {
            {2, 1, new String[] {"4f7641e8d3f21534"}},
            {4, 2, new String[] {"abeb7acd57a12cae", "fef629d645d7b58f"}},
            {6, 3, new String[] {"ece0924987b51dff", "eb3bd309b91a691a", "97d0ae4824a91263"}},
        };
        for (Object[] c : cases) {
            int k = (int) c[0];
            int m = (int) c[1];
            byte[][] parity = encode(ReedSolomon.of("zfec", k, m), sample(k, 8));
            for (int j = 0; j < m; j++) {
                Check.eq(((String[]) c[2])[j], hex(parity[j]), "zfec " + k + "+" + m + " parity " + j);
            }
        }
    }

    @Test
    public void isalParityMatchesIsaLAndHadoopsCoder() throws Exception {
        // Computed with ISA-L (gf_gen_cauchy1_matrix + ec_encode_data) through gridfs.coding.isal.
        Object[][] cases = {
            {4, 2, new String[] {"693c4efeccf157d0", "0853f084b887e5f1"}},
            {6, 3, new String[] {"d46de1da9bfea7ad", "65a77d2218102dff", "d994bfe457290c4a"}},
        };
        for (Object[] c : cases) {
            int k = (int) c[0];
            int m = (int) c[1];
            byte[][] data = sample(k, 8);
            byte[][] parity = encode(ReedSolomon.of("isal", k, m), data);
            RSRawEncoder hadoop = new RSRawEncoder(new ErasureCoderOptions(k, m));
            byte[][] theirs = new byte[m][8];
            hadoop.encode(data, theirs);
            for (int j = 0; j < m; j++) {
                Check.eq(((String[]) c[2])[j], hex(parity[j]), "isal " + k + "+" + m + " parity " + j);
                Check.bytes(theirs[j], parity[j], "Hadoop's RSRawEncoder parity " + j);
            }
        }
        Check.that(ECChunk.class != null, "Hadoop's erasure coding classes are in the client jars");
    }

    @Test
    public void everyPatternOfMLostSharesDecodes() {
        Random rng = new Random(3);
        for (String codec : new String[] {"zfec", "isal"}) {
            for (int[] km : new int[][] {{2, 1}, {4, 2}, {6, 3}, {8, 4}}) {
                int k = km[0];
                int m = km[1];
                ReedSolomon rs = ReedSolomon.of(codec, k, m);
                int len = 1000 + rng.nextInt(70_000); // crosses the coding stride
                byte[][] data = new byte[k][len];
                for (byte[] d : data) {
                    rng.nextBytes(d);
                }
                byte[][] parity = encode(rs, data);
                for (int lostMask = 0; lostMask < (1 << (k + m)); lostMask++) {
                    if (Integer.bitCount(lostMask) > m) {
                        continue;
                    }
                    byte[][] shares = new byte[k + m][];
                    List<Integer> wanted = new ArrayList<>();
                    for (int s = 0; s < k + m; s++) {
                        if ((lostMask & (1 << s)) == 0) {
                            shares[s] = s < k ? data[s] : parity[s - k];
                        } else if (s < k) {
                            wanted.add(s);
                        }
                    }
                    if (wanted.isEmpty()) {
                        continue;
                    }
                    int[] w = wanted.stream().mapToInt(Integer::intValue).toArray();
                    byte[][] out = new byte[w.length][len + 5];
                    int[] outOff = new int[w.length];
                    Arrays.fill(outOff, 5); // outputs at an offset, as in a caller's array
                    rs.decode(shares, new int[k + m], len, w, out, outOff);
                    for (int j = 0; j < w.length; j++) {
                        Check.bytes(data[w[j]], Arrays.copyOfRange(out[j], 5, len + 5),
                                codec + " " + k + "+" + m + " lost " + Integer.toBinaryString(lostMask));
                    }
                }
            }
        }
    }

    @Test
    public void wideCodesUseSeveralTableGroups() {
        // More than 8 parity chunks: the coding loop works on outputs 8 at a time.
        for (String codec : new String[] {"zfec", "isal"}) {
            ReedSolomon rs = ReedSolomon.of(codec, 3, 10);
            byte[][] data = sample(3, 5003);
            byte[][] parity = encode(rs, data);
            for (int[] held : new int[][] {{3, 4, 5}, {10, 11, 12}, {0, 8, 12}, {1, 2, 11}}) {
                byte[][] shares = new byte[13][];
                for (int s : held) {
                    shares[s] = s < 3 ? data[s] : parity[s - 3];
                }
                byte[][] out = new byte[3][5003];
                rs.decode(shares, new int[13], 5003, new int[] {0, 1, 2}, out, new int[3]);
                for (int i = 0; i < 3; i++) {
                    Check.bytes(data[i], out[i], codec + " 3+10 from " + Arrays.toString(held) + ", chunk " + i);
                }
            }
        }
    }

    @Test
    public void chunkUrlsOfBothForms() throws Exception {
        String id = "0123456789ABCDEF".repeat(4);
        ChunkClient.Ref r = ChunkClient.parse("rawx://rawx-1f2e3d4c5b6a7980/" + id);
        Check.eq("rawx-1f2e3d4c5b6a7980", r.service(), "service id");
        Check.eq(id, r.chunkId, "chunk id");
        ChunkClient.Ref old = ChunkClient.parse("http://127.0.0.1:6001/chunk/" + id);
        Check.eq("127.0.0.1:6001", old.service(), "old URLs name the address");
        for (String bad : new String[] {"rawx://x/" + id, "rawx://rawx-1/abc", "ftp://h/chunk/" + id,
            "http://h/chunk/../" + id}) {
            Check.raises(GridException.class, bad, () -> ChunkClient.parse(bad));
        }
        Check.eq("e3069283", ChunkClient.crc32c("123456789".getBytes("US-ASCII"), 0, 9), "CRC32C check value");
        Check.eq("CCFFFDE7A15C83636D15A5EBEC2C68FE30C0EC37A6748C59B36B38D05432B4DB",
                Directory.containerId("default", "bucket"), "container id, as gridfs.common.names computes it");
    }
}
