"""``python -m gridfs.directory``. SPDX-License-Identifier: AGPL-3.0-or-later"""

from gridfs.directory.server import main

main()
