"""``python -m gridfs.storage``. SPDX-License-Identifier: AGPL-3.0-or-later"""

from gridfs.storage.server import main

main()
