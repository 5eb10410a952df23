"""The ``grid`` command and the embedded local grid it starts.

``local.py`` starts and stops the processes of a one-machine grid (conscience,
directory, event agent, one storage server per volume) and records them in
``grid.toml``; ``main.py`` is the command line; ``demo.py`` is what ``make demo`` runs.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from gridfs.common.procenv import quiet_blas

quiet_blas()  # before anything imports numpy (gridfs.common.procenv says why)
