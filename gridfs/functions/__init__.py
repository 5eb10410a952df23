"""User functions on events (OpenIO's "Grid for Apps").

This package owns everything about functions: their registry in the grid (``registry``:
who may register what, validated and signed under the namespace secret), the dispatch
from the event agent to the node that holds an object's data (``dispatch``), the
per-node runner service (``python -m gridfs.functions``) that runs each call in a
subprocess under a time and a memory limit (``sandbox``, ``runner``), the bounded call
log (``calllog``), and example functions (``examples``). Delivery, retries and dead
letters stay the event agent's (:mod:`gridfs.events`): a function is one more handler.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
