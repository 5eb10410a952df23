// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The conscience's list of storage servers, refreshed at most every {@code ttl} seconds and shared by every
 * thread of a file system (gridfs/conscience/client.py's CachedServices): placement draws from it, chunk URLs'
 * service ids resolve through it to current addresses, and readers learn from it which servers are down, so
 * they read around them at once. When the conscience does not answer, the last list is kept.
 */
final class Services {
    /** One storage server as the conscience lists it. */
    static final class Service {
        final String id;
        final String addr;
        final String location;
        final double scorePut;
        final double scoreGet;
        final boolean up;
        /** Why it takes no writes as the conscience says ("silent", "locked", "full"), or "". */
        final String noWrites;

        Service(String id, String addr, String location, double scorePut, double scoreGet, boolean up) {
            this(id, addr, location, scorePut, scoreGet, up, up ? "" : "silent");
        }

        Service(String id, String addr, String location, double scorePut, double scoreGet, boolean up,
                String noWrites) {
            this.id = id;
            this.addr = addr;
            this.location = location;
            this.scorePut = scorePut;
            this.scoreGet = scoreGet;
            this.up = up;
            this.noWrites = noWrites;
        }
    }

    private final JsonHttp http;
    private final String url;
    private final long ttlNanos;
    private final ReentrantLock refreshing = new ReentrantLock();
    private volatile List<Service> services = Collections.emptyList();
    private volatile Map<String, Service> byName = Collections.emptyMap(); // id and address -> service
    private volatile long triedAt;
    private volatile boolean fetched;

    Services(JsonHttp http, String conscienceUrl, double ttlSeconds) {
        this.http = http;
        this.url = conscienceUrl.replaceAll("/+$", "") + "/v1/services?type=rawx";
        this.ttlNanos = (long) (ttlSeconds * 1e9);
    }

    /** The current list (refreshed when older than the ttl: one thread asks, the others wait for its answer). */
    List<Service> get() throws IOException {
        refresh(true);
        return services;
    }

    /**
     * Ask the conscience when the list is older than the ttl. With {@code wait} false, a refresh another thread
     * is doing is not waited for (the list at hand is used), unless there is no list yet.
     */
    private void refresh(boolean wait) throws IOException {
        if (fetched && System.nanoTime() - triedAt < ttlNanos) {
            return;
        }
        if (!wait && fetched) {
            if (!refreshing.tryLock()) {
                return;
            }
        } else {
            refreshing.lock();
        }
        try {
            if (fetched && System.nanoTime() - triedAt < ttlNanos) {
                return; // another thread refreshed it meanwhile
            }
            triedAt = System.nanoTime();
            List<Service> fresh = new ArrayList<>();
            Map<String, Service> names = new HashMap<>();
            for (Object o : Json.list(http.get(url))) {
                Map<String, Object> m = Json.object(o);
                boolean up = !Boolean.FALSE.equals(m.get("up"));
                String noWrites = !up ? "silent" : Boolean.TRUE.equals(m.get("locked")) ? "locked"
                        : Boolean.TRUE.equals(m.get("full")) ? "full" : "";
                Service s = new Service(Json.str(m, "id"), Json.str(m, "addr"), Json.str(m, "location"),
                        Json.real(m, "score_put"), Json.real(m, "score_get"), up, noWrites);
                fresh.add(s);
                names.put(s.addr, s);
                if (!s.id.isEmpty()) {
                    names.put(s.id, s);
                }
            }
            services = fresh;
            byName = names;
            fetched = true;
        } catch (GridException ex) {
            if (!fetched) {
                throw ex;
            }
            // keep the last list: reads must not stop while the registry restarts
        } finally {
            refreshing.unlock();
        }
    }

    /** The current address of a service id; an unknown id makes the list refresh once. */
    String addrOf(String serviceId) throws IOException {
        refresh(true);
        Service s = byName.get(serviceId);
        if (s == null) {
            invalidate();
            refresh(true);
            s = byName.get(serviceId);
        }
        if (s == null) {
            throw new GridException(503, "ServiceUnavailable", "no storage server " + serviceId
                    + " is registered with the conscience");
        }
        return s.addr;
    }

    /** Whether the conscience reports a service (id or address) down: silent, or not serving reads. */
    boolean isDown(String service) {
        try {
            refresh(false);
        } catch (IOException ex) {
            return false; // no answer from the conscience: try the read, it fails over on its own
        }
        Service s = byName.get(service);
        return s != null && (!s.up || s.scoreGet <= 0);
    }

    /** Make the next call ask the conscience (after a request to a listed server failed). */
    void invalidate() {
        triedAt = System.nanoTime() - ttlNanos - 1;
    }
}
