"""``python -m gridfs.gateways.s3``: the gateway process (see ``server``).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from gridfs.gateways.s3.server import main

main()
