"""S3's XML: parsing request bodies (namespace-agnostic) and writing answers.

Request bodies are parsed by defusedxml, which refuses DTDs (so entities, internal or external, and
their expansion) whatever the body's encoding: a filter on the bytes sees ``<!DOCTYPE`` only in
ASCII-compatible encodings, and a UTF-16 body once had its entities expanded 100-fold.

SPDX-License-Identifier: AGPL-3.0-or-later
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import defusedxml
import defusedxml.ElementTree

from gridfs.gateways.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML = 2 * 1024 * 1024


def _too_large() -> S3Error:
    return S3Error("MaxMessageLengthExceeded", f"Your request was too big: an XML body is at most {MAX_XML} bytes.")


async def read(request: Any) -> bytes:
    """The body of a request that carries XML (an aiohttp request), refused past ``MAX_XML`` bytes.

    A declared length over the limit is refused before a byte is read; a chunked body is read up to the
    server's request limit at most (aiohttp's ``client_max_size``, whose own error would be a 500)."""
    from aiohttp import web

    if request.content_length is not None and request.content_length > MAX_XML:
        raise _too_large()
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large() from exc
    if len(body) > MAX_XML:
        raise _too_large()
    return body


def parse(body: bytes, root: str) -> ET.Element:
    """The root element of a request body, with namespaces stripped; MalformedXML otherwise."""
    if len(body) > MAX_XML:
        raise _too_large()
    try:
        tree = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise S3Error("MalformedXML", "DTDs, entities and external references are not accepted") from exc
    except ET.ParseError as exc:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate against our "
                      "published schema.") from exc
    for el in tree.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    if tree.tag != root:
        raise S3Error("MalformedXML", f"expected a <{root}> document, got <{tree.tag}>")
    return tree


def text(el: ET.Element, name: str, default: str = "") -> str:
    child = el.find(name)
    return (child.text or "").strip() if child is not None else default


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _add(parent: ET.Element, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            _add(parent, name, item)
        return
    child = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("@"):  # an attribute: {"@xsi:type": "Group"}
                child.set(k[1:], str(v))
            else:
                _add(child, k, v)
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = str(value)


def document(root: str, content: dict[str, Any]) -> bytes:
    """``{"Name": "x", "Contents": [{...}, {...}]}`` -> XML; lists repeat their element."""
    el = ET.Element(root, xmlns=NS)
    for k, v in content.items():
        _add(el, k, v)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el)


def response(root: str, content: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """An S3 XML answer (200) with ``document(root, content)`` as its body."""
    from aiohttp import web

    return web.Response(body=document(root, content), content_type="application/xml", headers=headers)
