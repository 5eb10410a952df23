"""The conscience: registry of every service, live scores, and placement.

This package owns:

- ``server.py`` (``python -m gridfs.conscience``): the registry. Services heartbeat
  about once a second with real figures (CPU idle, IO idle, free space, requests in
  flight); the conscience turns them into a put score and a get score (0-100), locks
  volumes on request, and forgets services on request.
- ``scoring.py``: the pure functions behind the scores (fullness, silence, ramp-up).
- ``client.py``: the HTTP client, and the cached service list the client library reads
  before placing each metachunk.
- ``placement.py``: weighted random choice by put score, spread over sites, racks,
  hosts and volumes; runs in the client, never in the conscience.

The wire protocol is in docs/PROTOCOLS.md ("Conscience").

Licensing: ``server.py`` and ``__main__.py`` are AGPL-3.0-or-later; ``client.py``,
``placement.py`` and ``scoring.py`` run in clients and are LGPL-3.0-or-later.

SPDX-License-Identifier: LGPL-3.0-or-later
"""
