"""Lifecycle: the rules that expire objects, versions and delete markers and abort old multipart uploads
(``rules``), and the worker that executes them at a bounded rate and logs each action (``worker``),
run as a service by the local grid (``python -m gridfs.lifecycle``) or on demand (``grid lifecycle run``).

SPDX-License-Identifier: AGPL-3.0-or-later
"""
