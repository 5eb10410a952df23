// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Placement, as gridfs/conscience/placement.py does it: the chunks of one metachunk never land twice on one
 * volume, and are spread as far apart as the grid allows. Greedily, each pick is restricted to the candidates
 * farthest from everything already picked (ties broken towards the least crowded host, rack, site), then drawn
 * at random weighted by the put score, so that clients do not all pile onto the momentarily best server. A
 * candidate far below the best (a disk gone slow) is passed over entirely while enough others remain.
 */
final class Placement {
    static final int LOCATION_DEPTH = 4; // site.rack.host.volume
    /** A candidate under this fraction of the best put score is passed over while others suffice. */
    static final double LAGGARD_FRACTION = 0.1;

    private Placement() {
    }

    private static String volumeKey(Services.Service s) {
        return s.location.isEmpty() ? "?.?.?." + s.addr : s.location;
    }

    static int distance(String[] a, String[] b) {
        for (int depth = 0; depth < Math.max(Math.max(a.length, b.length), LOCATION_DEPTH); depth++) {
            String x = depth < a.length ? a[depth] : "";
            String y = depth < b.length ? b[depth] : "";
            if (!x.equals(y)) {
                return Math.max(1, LOCATION_DEPTH - depth);
            }
        }
        return 0;
    }

    static List<Services.Service> select(List<Services.Service> services, int count, Collection<String> avoid)
            throws GridException {
        return select(services, count, avoid, ThreadLocalRandom.current());
    }

    /**
     * The candidates without those scoring under {@link #LAGGARD_FRACTION} of the best, when enough volumes
     * remain: a write waits for its slowest chunk, and weighting alone still sends a slow disk (score 1
     * among peers at 30) a chunk every 40 stripes. A new volume ramping up (20 % of its score) stays in.
     */
    static List<Services.Service> withoutLaggards(List<Services.Service> usable, int count) {
        double best = 0;
        for (Services.Service s : usable) {
            best = Math.max(best, s.scorePut);
        }
        List<Services.Service> strong = new ArrayList<>();
        Set<String> volumes = new HashSet<>();
        for (Services.Service s : usable) {
            if (s.scorePut >= best * LAGGARD_FRACTION) {
                strong.add(s);
                volumes.add(volumeKey(s));
            }
        }
        return volumes.size() >= count ? strong : usable;
    }

    /** "9 known: 1 silent, 7 full": why the others take no writes, as the conscience lists them. */
    private static String whyNot(List<Services.Service> services, List<Services.Service> usable,
            Collection<String> avoid) {
        Map<String, Integer> reasons = new LinkedHashMap<>();
        Set<Services.Service> taken = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        taken.addAll(usable);
        for (Services.Service s : services) {
            if (taken.contains(s)) {
                continue;
            }
            String why = avoid.contains(s.addr) || avoid.contains(s.id) ? "avoided"
                    : !s.noWrites.isEmpty() ? s.noWrites
                    : !(s.scorePut > 0) ? "scored 0" : "on a volume already counted";
            reasons.merge(why, 1, Integer::sum);
        }
        StringBuilder out = new StringBuilder(services.size() + " known");
        reasons.forEach((why, n) -> out.append(", ").append(n).append(' ').append(why));
        return out.toString();
    }

    /** {@code count} services on distinct volumes, none whose id or address is in {@code avoid}. */
    static List<Services.Service> select(List<Services.Service> services, int count, Collection<String> avoid,
            Random rng) throws GridException {
        Set<String> seenAddrs = new HashSet<>();
        List<Services.Service> usable = new ArrayList<>();
        for (Services.Service s : services) {
            boolean avoided = avoid.contains(s.addr) || avoid.contains(s.id);
            if (avoided || !seenAddrs.add(s.addr) || !(s.scorePut > 0)) {
                continue;
            }
            usable.add(s);
        }
        Set<String> volumes = new HashSet<>();
        for (Services.Service s : usable) {
            volumes.add(volumeKey(s));
        }
        if (volumes.size() < count) {
            throw new GridException(503, "NotEnoughServices", "placement needs " + count
                    + " services on distinct volumes but only " + volumes.size() + " can take writes now ("
                    + whyNot(services, usable, avoid) + ")");
        }
        usable = withoutLaggards(usable, count);
        int n = usable.size();
        String[] keys = new String[n];
        String[][] parts = new String[n][];
        for (int i = 0; i < n; i++) {
            keys[i] = volumeKey(usable.get(i));
            parts[i] = keys[i].split("\\.", -1);
        }
        // crowding[i][d - 1]: picks so far at distance d from candidate i; the lexicographically smallest
        // vector is the farthest candidate and, among equally far ones, the least crowded.
        int[][] crowding = new int[n][LOCATION_DEPTH - 1];
        boolean[] alive = new boolean[n];
        Arrays.fill(alive, true);
        List<Services.Service> chosen = new ArrayList<>();
        while (chosen.size() < count) {
            int[] best = null;
            for (int i = 0; i < n; i++) {
                if (alive[i] && (best == null || Arrays.compare(crowding[i], best) < 0)) {
                    best = crowding[i];
                }
            }
            if (best == null) {
                throw new GridException(503, "NotEnoughServices", "placement needs " + count
                        + " distinct volumes, found only " + chosen.size());
            }
            List<Integer> pool = new ArrayList<>();
            double total = 0;
            for (int i = 0; i < n; i++) {
                if (alive[i] && Arrays.equals(crowding[i], best)) {
                    pool.add(i);
                    total += usable.get(i).scorePut;
                }
            }
            double r = rng.nextDouble() * total;
            int pick = pool.get(pool.size() - 1);
            for (int i : pool) {
                r -= usable.get(i).scorePut;
                if (r < 0) {
                    pick = i;
                    break;
                }
            }
            chosen.add(usable.get(pick));
            for (int i = 0; i < n; i++) {
                if (!alive[i]) {
                    continue;
                }
                if (keys[i].equals(keys[pick])) {
                    alive[i] = false; // the same volume as a pick: never a second chunk there
                    continue;
                }
                int d = distance(parts[i], parts[pick]);
                if (d < LOCATION_DEPTH) {
                    crowding[i][d - 1]++;
                }
            }
        }
        return chosen;
    }
}
