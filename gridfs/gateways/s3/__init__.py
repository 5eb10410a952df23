"""The S3 API gateway: a stateless HTTP front end over ``gridfs.client``.

Owns S3's wire protocol and nothing else: SigV4 authentication (headers, presigned
URLs, aws-chunked streaming with signed chunks or checksum trailers), users and
bucket ownership, the S3 operations mapped onto grid buckets and objects, and S3's
XML answers and errors. Data streams through: no request or response body is held
whole in memory.

Modules: ``errors`` (S3 error codes), ``sigv4`` (signatures and aws-chunked bodies),
``checksums`` (CRC32, CRC32C, SHA1, SHA256, MD5 ETags), ``users`` (access keys, kept
in the grid), ``xmlio`` (request and response bodies), ``streams`` (bridging aiohttp
and the synchronous client), ``buckets``, ``objects``, ``multipart`` (operations),
``app`` (routing and access control), ``server`` (the worker processes).

SPDX-License-Identifier: AGPL-3.0-or-later
"""
