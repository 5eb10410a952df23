"""The directory with indirections: meta0 (65,536 prefixes -> meta1), meta1 (container
-> meta2) and meta2 (one SQLite database per container: objects, versions, chunk
locations, properties, multipart uploads), plus the durable event log of changes.

In one-machine mode one process holds the three roles; the hops stay real and are
what ``grid locate`` shows. Server modules are AGPL-3.0-or-later; ``client.py`` and
``model.py`` are LGPL-3.0-or-later.
"""
