"""Custom fields: named values defined on a product (with a default), set per license.

``products.custom_fields`` is a list of ``{"name", "default_value"}``; ``licenses.custom_fields``
maps a defined name to the license's own value (absent = the product's default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from licensor.core.errors import LicensorError

MAX_NAME = 100
MAX_VALUE = 1000


def _fail(field: str, message: str) -> LicensorError:
    return LicensorError("validation_error", f"{field}: {message}")


def checked_value(value: Any, field: str) -> str:
    """Values are text on the wire (``data_type`` null); numbers and booleans become text."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise _fail(field, "must be text, a number or a boolean")
    if len(value) > MAX_VALUE or "\x00" in value:
        raise _fail(field, f"at most {MAX_VALUE} characters, no NUL")
    return value


def checked_name(name: Any) -> str:
    text = str(name or "").strip() if isinstance(name, str) else ""
    if not text or len(text) > MAX_NAME or "\x00" in text:
        raise _fail("name", f"1-{MAX_NAME} characters")
    return text


def checked_definition(
    name: Any, default_value: Any, existing: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    clean = checked_name(name)
    if any(f.get("name") == clean for f in existing):
        raise LicensorError(
            "validation_error", f"name: custom field {clean!r} already exists", status=409
        )
    return {"name": clean, "default_value": checked_value(default_value, "default_value")}


def unknown_field(name: str, field: str = "custom_fields") -> LicensorError:
    return LicensorError(
        "unknown_custom_field",
        f"{field}: the product has no custom field {name!r}; define it on the product first",
        status=400,
    )


def checked_values(
    definitions: Sequence[Mapping[str, Any]] | None,
    values: Mapping[str, Any],
    field: str = "custom_fields",
) -> dict[str, str | None]:
    """License values by name, each name defined by the product; ``None`` clears a value."""
    known = {str(f.get("name")) for f in definitions or []}
    clean: dict[str, str | None] = {}
    for name, value in values.items():
        if name not in known:
            raise unknown_field(name, field)
        clean[name] = None if value is None else checked_value(value, f"{field}.{name}")
    return clean


def merged(current: Mapping[str, Any] | None, changes: Mapping[str, str | None]) -> dict[str, Any]:
    """``current`` with ``changes`` applied: a value sets, ``None`` falls back on the default."""
    result = dict(current or {})
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result
