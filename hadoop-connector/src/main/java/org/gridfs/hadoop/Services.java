// SPDX-License-Identifier: LGPL-3.0-or-later
package org.gridfs.hadoop;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

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

        Service(String id, String addr, String location, double scorePut, double scoreGet, boolean up) {
            this.id = id;
            this.addr = addr;
            this.location = location;
            this.scorePut = scorePut;
            this.scoreGet = scoreGet;
            this.up = up;
        }
    }

    private final JsonHttp http;
    private final String url;
    private final long ttlNanos;
    private List<Service> services = Collections.emptyList();
    private Map<String, Service> byName = Collections.emptyMap();
    private long triedAt;
    private boolean fetched;

    Services(JsonHttp http, String conscienceUrl, double ttlSeconds) {
        this.http = http;
        this.url = conscienceUrl.replaceAll("/+$", "") + "/v1/services?type=rawx";
        this.ttlNanos = (long) (ttlSeconds * 1e9);
    }

    /** The current list (refreshed when older than the ttl). */
    synchronized List<Service> get() throws IOException {
        long now = System.nanoTime();
        if (!fetched || now - triedAt >= ttlNanos) {
            triedAt = now;
            try {
                List<Service> fresh = new ArrayList<>();
                Map<String, Service> names = new HashMap<>();
                for (Object o : Json.list(http.get(url))) {
                    Map<String, Object> m = Json.object(o);
                    Service s = new Service(Json.str(m, "id"), Json.str(m, "addr"), Json.str(m, "location"),
                            Json.real(m, "score_put"), Json.real(m, "score_get"), !Boolean.FALSE.equals(m.get("up")));
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
            }
        }
        return services;
    }

    /** The current address of a service id; an unknown id makes the list refresh once. */
    String addrOf(String serviceId) throws IOException {
        get();
        Service s;
        synchronized (this) {
            s = byName.get(serviceId);
        }
        if (s == null) {
            invalidate();
            get();
            synchronized (this) {
                s = byName.get(serviceId);
            }
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
            get();
        } catch (IOException ex) {
            return false; // no answer from the conscience: try the read, it fails over on its own
        }
        Service s;
        synchronized (this) {
            s = byName.get(service);
        }
        return s != null && (!s.up || s.scoreGet <= 0);
    }

    /** Make the next call ask the conscience (after a request to a listed server failed). */
    synchronized void invalidate() {
        triedAt = System.nanoTime() - ttlNanos - 1;
    }
}
