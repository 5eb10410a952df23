"""Data protection: storage policies, striping of metachunks and erasure codecs.

Owns the arithmetic of how an object becomes chunks and back: which policy applies,
how big each chunk is, how a byte range maps to chunk ranges, and Reed-Solomon
encode/decode. No I/O happens here.

SPDX-License-Identifier: LGPL-3.0-or-later
"""
