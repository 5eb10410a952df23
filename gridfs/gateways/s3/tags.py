"""Tags: the one validation of a tag set (objects and buckets alike, as AWS checks them), and bucket tagging.

A tag set is at most 10 tags on an object and 50 on a bucket; a key is 1 to 128 characters, a value up to
256, both of letters, digits, spaces and ``+ - = . _ : / @``; keys are unique and none starts with ``aws:``
(AWS keeps those for itself). Anything else is InvalidTag, and nothing is stored. A bucket's tags are the
bucket property ``s3.tags`` (JSON), changed by its owner only.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import parse_qsl

from aiohttp import web

from gridfs.gateways.s3 import xmlio
from gridfs.gateways.s3.context import Ctx, set_bucket_props
from gridfs.gateways.s3.errors import S3Error

TAGS_PROP = "s3.tags"  # objects and buckets keep their tags under the same property name
MAX_OBJECT_TAGS, MAX_BUCKET_TAGS = 10, 50
MAX_KEY, MAX_VALUE = 128, 256
EXTRA_CHARACTERS = set(" +-=._:/@")


def _allowed(text: str) -> bool:
    # Letters, numbers and separators in any script (AWS: "\p{L}\p{Z}\p{N}"), and a few marks.
    return all(c in EXTRA_CHARACTERS or unicodedata.category(c)[0] in "LNZ" for c in text)


def check_tags(pairs: list[tuple[str, str]], limit: int, what: str = "Object") -> dict[str, str]:
    """The tags ``pairs`` name, in order; InvalidTag for anything AWS refuses."""
    if len(pairs) > limit:
        raise S3Error("InvalidTag", f"{what} tags cannot be greater than {limit}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", TagKey=key)
        if not key or len(key) > MAX_KEY or not _allowed(key):
            raise S3Error("InvalidTag", f"The TagKey you have provided is invalid (1 to {MAX_KEY} letters, digits, "
                          "spaces and + - = . _ : / @)", TagKey=key)
        if len(value) > MAX_VALUE or not _allowed(value):
            raise S3Error("InvalidTag", f"The TagValue you have provided is invalid (up to {MAX_VALUE} letters, "
                          "digits, spaces and + - = . _ : / @)", TagKey=key)
        if key.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "System tags cannot be added/updated by requester", TagKey=key)
        tags[key] = value
    return tags


def parse_tag_header(text: str, limit: int = MAX_OBJECT_TAGS) -> dict[str, str]:
    """``x-amz-tagging`` (and a POST form's tags): URL query syntax, ``k1=v1&k2=v2``."""
    return check_tags(parse_qsl(text, keep_blank_values=True), limit)


def parse_tag_document(body: bytes, limit: int, what: str = "Object") -> dict[str, str]:
    """A ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...`` document."""
    doc = xmlio.parse(body, "Tagging")
    tag_set = doc.find("TagSet")
    if tag_set is None:
        raise S3Error("MalformedXML", "a Tagging document needs a TagSet")
    pairs = []
    for tag in tag_set.findall("Tag"):
        if tag.find("Key") is None:
            raise S3Error("MalformedXML", "every Tag needs a Key")
        pairs.append((xmlio.text(tag, "Key"), xmlio.text(tag, "Value")))
    return check_tags(pairs, limit, what)


def tagging_response(tags: dict[str, str]) -> web.Response:
    return xmlio.response("Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}})


# -- bucket tagging: GET, PUT, DELETE ?tagging on a bucket ------------------------------------------


async def bucket_tagging(ctx: Ctx) -> web.Response:
    """The bucket's owner only: ``load_bucket`` lets nobody else reach a bucket's ``?tagging``, and
    ``set_bucket_props`` checks ownership again for the changes."""
    assert ctx.container is not None
    method = ctx.request.method
    if method == "GET":
        tags = json.loads(ctx.container.properties.get(TAGS_PROP) or "{}")
        if not tags:
            raise S3Error("NoSuchTagSet", "The TagSet does not exist", BucketName=ctx.bucket)
        return tagging_response(tags)
    if method == "PUT":
        tags = parse_tag_document(await xmlio.read(ctx.request), MAX_BUCKET_TAGS, "Bucket")
        return await set_bucket_props(ctx, {TAGS_PROP: json.dumps(tags)}, status=204)
    if method == "DELETE":
        return await set_bucket_props(ctx, {TAGS_PROP: None}, status=204)
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.")
