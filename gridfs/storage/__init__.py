"""The storage server (OpenIO's rawx): chunk files on one volume, served over HTTP.

``store.py`` owns the volume layout (hashed sub-directories, temp-then-rename with
fsync, metadata and per-block checksums in xattrs); ``iostats.py`` counts the volume's
I/O pattern and its cost per MiB (sent to the conscience); ``http1.py`` is its HTTP/1.1
(a raw asyncio protocol receiving bodies into pooled buffers); ``api.py`` the chunk
routes; ``scrub.py`` the background scrubber; ``server.py`` the process: state,
heartbeats, start-up. These are AGPL-3.0-or-later. ``client.py`` (LGPL-3.0-or-later)
is the chunk client the client library uses.
"""
