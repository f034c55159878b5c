"""Golden answers: what the License API answers, byte for byte, kept in ``golden/*.json``.

Every value as the wire carries it, but for signatures (verified by the tests, then shown as
``<signature>``) and the few values made of the wall clock at setup. ``LICENSOR_UPDATE_GOLDEN=1``
writes them anew (run one worker, ``-n 0``, and review the diff).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from licensor.protocol.signing import compact_json

# An instant the golden answers are made at (their dates, validity and signatures follow).
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
UPDATE = os.environ.get("LICENSOR_UPDATE_GOLDEN") == "1"
# (set by setup at the wall clock's time, not at NOW)
_CLOCK_FIELDS = frozenset({"created_at", "updated_at"})
_SIGNATURES = frozenset({"license_signature", "license_signature_v2", "offline_signature"})


@contextmanager
def golden_book(path: Path) -> Iterator[dict[str, Any]]:
    """The golden answers, written back when ``LICENSOR_UPDATE_GOLDEN=1``."""
    book: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    yield book
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(book, indent=1, ensure_ascii=False, sort_keys=False) + "\n")


def normalized(value: Any, key: str = "") -> Any:
    """The answer as compared with its golden copy (signatures and setup times replaced)."""
    if isinstance(value, dict):
        return {k: normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if key in _SIGNATURES and value:
        return "<signature>"
    if key in _CLOCK_FIELDS and value is not None:
        return "<setup time>"
    return value


def assert_golden(book: dict[str, Any], name: str, status: int, content: bytes) -> Any:
    """The answer is the golden one: status and every value, in the wire's key order."""
    parsed = json.loads(content)
    assert compact_json(parsed) == content  # compact, as the wire carries it
    found = {"status": status, "body": normalized(parsed)}
    if UPDATE:
        book[name] = found
    expected = book.get(name)
    assert expected is not None, f"no golden answer {name!r}: LICENSOR_UPDATE_GOLDEN=1"
    assert found == expected, name
    assert list(_keys(found["body"])) == list(_keys(expected["body"])), name
    return parsed


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)
