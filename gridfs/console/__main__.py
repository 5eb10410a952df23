"""``python -m gridfs.console``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from gridfs.console.server import main

if __name__ == "__main__":
    main()
