"""Events: consumers of the directory's durable change log.

The directory appends an event for every change after its commit (container and
content created, deleted, updated). The event agent tails that log with a durable
cursor (delivery is at least once, so handlers are idempotent) and passes each event
to the handlers subscribed to its type: deleting the chunks no record points to any
more, and user functions named in the namespace config.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
