"""Environment settings for the grid's own processes (the ``grid`` and ``grid-distcp`` commands, and the
services they start, which inherit them).

numpy's OpenBLAS starts a thread per core at import, and each spins for a while before it sleeps: about
0.1 CPU-s per process here (``python -c "import numpy"``: 0.15 CPU-s, 0.07 with one thread), though the
grid makes no BLAS call. A `grid put` paid it on every run, every MPI rank and every user-function call
(a process each) pays it too. Only entry points call :func:`quiet_blas`: a library user's own process,
which may want BLAS threads, is left alone.

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from __future__ import annotations

import os

QUIET_BLAS = {"OPENBLAS_NUM_THREADS": "1"}


def quiet_blas() -> None:
    """One BLAS thread, unless the environment says otherwise; before numpy is imported to take effect."""
    for name, value in QUIET_BLAS.items():
        os.environ.setdefault(name, value)
