"""The directory with indirections: meta0 (65,536 prefixes -> meta1 service), meta1
(container -> meta2 service) and meta2 (one SQLite database per container: objects,
versions, chunk locations, properties, multipart uploads, and the outbox of its events).

Each role is a service of its own (``python -m gridfs.directory --role ...``) that names
the next hop by service id and finds its address through the conscience; ``grid locate``
shows the hops. Changes carry op ids and commit with their events in one transaction.
Server modules are AGPL-3.0-or-later; ``client.py`` and ``model.py`` are LGPL-3.0-or-later.
"""
