"""GeoReport v2's two formats: JSON and XML with the standard's element names, both UTF-8 and declared so.

Every Open311 route answers in the format its path ends with (``services.xml``, ``requests/{id}.json``); errors too
(:func:`error_body`). The XML is built with the standard library's ElementTree, which escapes text; characters
XML 1.0 cannot carry at all (most control characters) are written as U+FFFD rather than making the document invalid.
"""

from __future__ import annotations

import enum
import re
import xml.etree.ElementTree as ET
from typing import Any

from fastapi.responses import JSONResponse, Response

JSON_MEDIA = "application/json; charset=utf-8"
XML_MEDIA = "text/xml; charset=utf-8"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# A list under a key holds elements named so (the standard's names: <services><service>, <attributes><attribute>...)
ITEM_TAGS = {"services": "service", "service_requests": "request", "attributes": "attribute", "values": "value",
             "endpoints": "endpoint", "formats": "format", "errors": "error",
             "service_request_updates": "request_update"}  # fmt: skip
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Format(enum.StrEnum):
    json = "json"
    xml = "xml"


class Utf8JSONResponse(JSONResponse):
    """JSON that says its charset: GeoReport v2 wants UTF-8 declared in every response."""

    media_type = JSON_MEDIA


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list):
        tag = ITEM_TAGS.get(element.tag, "item")
        for item in value:
            _fill(ET.SubElement(element, tag), item)
    else:
        element.text = _text(value)


def to_xml(root: str, value: Any) -> bytes:
    """``value`` as a UTF-8 XML document whose root element is ``root``; a list's items take ITEM_TAGS' name."""
    element = ET.Element(root)
    _fill(element, value)
    return XML_DECLARATION + ET.tostring(element, encoding="utf-8")


def respond(
    fmt: Format | str, root: str, value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``value`` in the asked format; ``root`` names the XML document's root element (JSON has none)."""
    if fmt == Format.xml:
        return Response(to_xml(root, value), status_code=status, media_type=XML_MEDIA, headers=headers)
    return Utf8JSONResponse(value, status_code=status, headers=headers)


def format_of_path(path: str) -> Format:
    """The format an Open311 path asks for: XML when it ends with ``.xml``, else JSON."""
    return Format.xml if path.lower().endswith(".xml") else Format.json


def error_body(status: int, message: str) -> list[dict[str, Any]]:
    """GeoReport v2's errors: a list of ``{code, description}`` (``<errors><error>`` in XML)."""
    return [{"code": status, "description": message}]
