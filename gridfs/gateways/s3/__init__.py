"""The S3 API gateway: a stateless HTTP front end over ``gridfs.client``.

Owns S3's wire protocol and nothing else: SigV4 authentication (headers, presigned
URLs, aws-chunked streaming with signed chunks or checksum trailers), users and
bucket ownership, the S3 operations mapped onto grid buckets and objects, and S3's
XML answers and errors. Data streams through: no request or response body is held
whole in memory.

Modules, by job:

- wire: ``errors`` (S3 error codes), ``sigv4`` (signatures and aws-chunked bodies), ``checksums`` (CRC32,
  CRC32C, SHA1, SHA256, MD5 ETags), ``xmlio`` (request and response bodies), ``streams`` (aiohttp <-> the
  synchronous client), ``server`` (the worker processes), ``app`` (the routing table), ``context`` (the
  request context and the helpers every operation shares).
- operations: ``buckets``, ``bucket_list`` (ListBuckets), ``objects``, ``multipart``, ``attributes``
  (GetObjectAttributes), ``conditional`` (If-Match / If-None-Match writes), ``markers`` (delete markers),
  ``post_upload`` (browser POST), ``tags``, ``cors``, ``lifecycle`` (its ``?lifecycle`` documents; the
  worker is ``gridfs.lifecycle``), ``objectlock`` and ``versionlock`` (object lock).
- access control: ``access`` (who may do what), ``acl`` and ``grants`` (ACLs), ``policy`` and
  ``policy_conditions`` (bucket policies), ``access_settings`` (policy, PublicAccessBlock, ObjectOwnership).
- keys and secrets: ``masterkey`` (the grid's master key), ``credentials`` and ``users`` (sealed access keys),
  ``owners`` (sealed bucket owners), ``sealed`` (sealed bucket ACLs and policies), ``admin`` (the operator's
  commands), ``cipher`` and ``sse`` (SSE-S3 and SSE-C), ``bucket_encryption`` (default encryption).

SPDX-License-Identifier: AGPL-3.0-or-later
"""
