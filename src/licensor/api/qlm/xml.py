"""``<QuickLicenseManager>`` documents, built with ``xml.etree``: escaped and well-formed for any
text. XML 1.0 cannot carry most control characters (nor lone surrogates): they become U+FFFD."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime

ROOT = "QuickLicenseManager"
BOM = b"\xef\xbb\xbf"
REPLACEMENT = "\ufffd"
# Everything outside XML 1.0's Char production (§2.2).
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Elements = Iterable[tuple[str, object]]


def xml_text(value: object) -> str:
    """The text of an element: ``None`` is empty, booleans are ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return qlm_datetime(value)
    return _NOT_XML_CHAR.sub(REPLACEMENT, str(value))


def qlm_datetime(moment: datetime, *, minutes_only: bool = False) -> str:
    """QLM's ``yyyy-MM-dd HH:mm:ss`` (UTC); ``yyyy-MM-dd HH:mm`` for expiry dates."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.strftime("%Y-%m-%d %H:%M" if minutes_only else "%Y-%m-%d %H:%M:%S")


def document(elements: Elements, *, bom: bool = False) -> bytes:
    root = ET.Element(ROOT)
    for name, value in elements:
        ET.SubElement(root, name).text = xml_text(value)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return BOM + body if bom else body


def error_document(message: str, server_error_code: int, *, bom: bool = False) -> bytes:
    """QLM's ``<error>`` plus Licensor's numeric ``<errorCode>`` (an EServerErrorCode)."""
    return document([("error", message), ("errorCode", server_error_code)], bom=bom)
