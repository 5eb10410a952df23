"""The storage server (OpenIO's rawx): chunk files on one volume, served over HTTP.

``store.py`` owns the volume layout (hashed sub-directories, temp-then-rename with
fsync, metadata and per-block checksums in xattrs); ``server.py`` the HTTP chunk API
and heartbeats; ``stats.py`` the real figures sent to the conscience. These are
AGPL-3.0-or-later. ``client.py`` (LGPL-3.0-or-later) is the chunk client the client
library uses.
"""
