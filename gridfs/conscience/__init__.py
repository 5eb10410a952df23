"""The conscience: registry of every service, live scores, and placement.

Services heartbeat about once a second with real figures; the conscience turns them
into a put score and a get score (0-100). Placement is a weighted random choice by
score under distance rules, run in the client on a cached service list.

``server.py`` is AGPL-3.0-or-later; ``client.py``, ``placement.py`` and ``scoring.py``
run in clients and are LGPL-3.0-or-later.
"""
