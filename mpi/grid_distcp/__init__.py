"""grid-distcp: the MPI-parallel bulk copy engine (DistCp for the grid).

Owns the copy job and nothing else: listing sources in parallel into a manifest,
planning what to copy against the destination, handing work out dynamically to MPI
ranks, copying through the grid client library (big files split into stripe-aligned
parts and assembled by the directory's multipart commit), checkpoints for resume,
verification, progress and the final report. It talks to the grid only through
``gridfs.client``.

Modules: ``options`` (command line), ``endpoints`` (sources and destinations),
``manifest`` (parallel listing), ``plan`` (what to do per file), ``tasks`` (units of
work), ``coordinator`` (the dynamic work queue), ``transport`` (MPI messaging),
``worker`` (copying), ``journal`` (checkpoints and the JSON log), ``report``
(progress bar and summary), ``main`` (the job).

SPDX-License-Identifier: LGPL-3.0-or-later
"""

from gridfs.common.procenv import quiet_blas

quiet_blas()  # before anything imports numpy (gridfs.common.procenv says why)
