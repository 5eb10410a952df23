"""Gateways: protocols other programs already speak, served on top of the client library.

``gridfs.gateways.s3`` is the S3 API (boto3, the aws cli, s3cmd, rclone, s3fs).
Gateways are stateless: everything they know lives in the grid.

SPDX-License-Identifier: AGPL-3.0-or-later
"""
