"""gridfs: a grid object store in the spirit of OpenIO SDS.

Packages, in the order data flows through them:

- ``gridfs.client``     the client library front ends use (put/get/list/copy/multipart)
- ``gridfs.coding``     storage policies, striping and erasure coding
- ``gridfs.conscience`` the service registry, live scores and placement
- ``gridfs.storage``    the storage server (rawx): chunk files on one volume
- ``gridfs.directory``  prefix table -> meta1 -> one SQLite database per container
- ``gridfs.events``     the durable log of changes and its handlers
- ``gridfs.cli``        the ``grid`` command and the embedded local grid
- ``gridfs.common``     configuration, names, errors and auth shared by all parts

Client-side code (client, coding, common, cli) is LGPL-3.0-or-later; the servers
(storage, conscience, directory, events) are AGPL-3.0-or-later.
"""

__version__ = "0.1.0"
