"""``python -m gridfs.conscience``.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from gridfs.conscience.server import main

if __name__ == "__main__":
    main()
