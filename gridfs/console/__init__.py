"""The web console: ``python -m gridfs.console``, started by ``grid up`` on 127.0.0.1.

This package owns the console's HTTP service (:mod:`.server`), its login token, sessions and CSRF checks
(:mod:`.auth`), the one-hour ring of throughput and free-space samples it keeps in memory
(:mod:`.sampler`), the JSON views its page reads (:mod:`.views`, built on the same data gathering as
``grid status``, ``grid health`` and ``grid events``), and the static page itself (``static/``: HTML, CSS
and vanilla JavaScript shipped in the package, no build step, nothing fetched at run time).

It changes nothing in the grid but the lock of a storage volume and the replay of event dead letters.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
