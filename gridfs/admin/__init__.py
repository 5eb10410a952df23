"""Operator tools: jobs run over a whole grid, never in the data path of a client.

This package owns:

- ``repair.py`` (``grid repair``): rebuild the chunks of an object that are recorded
  missing, on dead servers or corrupt, place them away from the survivors, and commit
  the new locations only if the object version is unchanged.
- ``crawler.py`` (``grid crawl``): delete orphan chunks (written by clients that died
  before committing), conservatively, by chunk id.
- ``upgrade.py`` (``grid upgrade``): rewrite records whose chunk URLs name an address
  (``http://HOST:PORT/chunk/ID``, from before service ids) into ``rawx://SERVICE_ID/ID``.

They use the client library (``gridfs.client``); the client library never imports them.

SPDX-License-Identifier: LGPL-3.0-or-later
"""
