"""Events: consumers of the directory's outboxes.

Every meta1 and meta2 database has an outbox, an events table written in the same
transaction as each change (container and content created, deleted, updated). The event
agent drains the outboxes of every meta1 and meta2 service the conscience lists (at least
once, so handlers are idempotent) and passes each event to the handlers subscribed to its
type: deleting the chunks no record points to any more, keeping the reverse index, repairs,
S3 bucket notifications POSTed to the operator's webhooks (``notify``, ``webhooks``),
in-process handlers named in grid.toml (``[events.handlers]``), and the user functions
registered in the grid (:mod:`gridfs.functions`: sandboxed, run on the node of the data).
A handler that fails is retried with growing delays, then kept as a dead letter that
``grid events --dead`` shows and ``grid events --retry`` replays.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
