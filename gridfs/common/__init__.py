"""Shared by every part: the namespace configuration, name validation, the error
vocabulary spoken on the wire, and the namespace-secret check for internal APIs.

SPDX-License-Identifier: LGPL-3.0-or-later
"""
