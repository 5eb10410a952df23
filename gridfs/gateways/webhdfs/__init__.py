"""The WebHDFS gateway: Hadoop's WebHDFS REST API over the grid (``/webhdfs/v1/BUCKET/KEY?op=...``).

For everything that speaks WebHDFS: Hadoop's ``webhdfs://`` file system (FsShell,
DistCp, Spark), fsspec's ``webhdfs`` and the ``hdfs`` (HdfsCLI) package. Stateless: each
call is one or a few grid calls through ``GridClient``; data streams through.

Modules: ``errors`` (RemoteException answers), ``paths`` (paths as bucket and key,
validated), ``auth`` (``user.name``, accounts, secret and tokens), ``status``
(FileStatus, Hadoop attributes kept as object properties), ``checksum``
(GETFILECHECKSUM as HDFS computes it), ``namespace`` (the file-system semantics over
buckets and objects), ``app`` (routing), ``server`` (the worker processes).

SPDX-License-Identifier: AGPL-3.0-or-later
"""
