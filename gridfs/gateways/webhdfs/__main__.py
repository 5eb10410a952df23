"""``python -m gridfs.gateways.webhdfs``: the gateway process (see ``server``).

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from gridfs.gateways.webhdfs.server import main

main()
