"""The reverse index per volume (OpenIO's rdir): for every storage volume, the chunks it
holds and the object each belongs to, kept from the directory's events; plus, per volume,
the state of a rebuild or drain job and the scrubber's findings.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
