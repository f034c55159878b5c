"""Product features: defined on a product, attached to licenses with per-license overrides.

Both sides are JSON held on their rows (``products.features``: a list of definitions;
``licenses.features``: attached codes -> overrides), so the License API lists a license's
features from the two rows it already loaded, without another query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from licensor.core.errors import LicensorError
from licensor.protocol.signing import iso_ms_z, parse_iso_datetime

FEATURE_TYPES = ("activation", "consumption")
# What a license may override of its product's definition.
OVERRIDES = ("expiry_date", "max_consumption", "metadata")
MAX_CODE = 100
MAX_NAME = 200
MAX_CONSUMPTION = 2_000_000_000


def _expiry(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return parse_iso_datetime(str(value))
    except ValueError:
        return None


def _effective(definition: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(definition)
    for name in OVERRIDES:
        if override.get(name) is not None:
            merged[name] = override[name]
    return merged


def is_expired(feature: Mapping[str, Any], now: datetime) -> bool:
    expiry = _expiry(feature.get("expiry_date"))
    return expiry is not None and expiry <= now


def feature_object(feature: Mapping[str, Any], total_consumptions: int = 0) -> dict[str, Any]:
    """One element of ``product_features``: the fields of a check_license_feature answer."""
    expiry = _expiry(feature.get("expiry_date"))
    return {
        "id": feature.get("id"),
        "code": feature.get("code", ""),
        "name": feature.get("name", ""),
        "feature_type": feature.get("feature_type", "activation"),
        "expiry_date": iso_ms_z(expiry) if expiry is not None else None,
        "metadata": feature.get("metadata") or {},
        "max_consumption": int(feature.get("max_consumption") or 0),
        "total_consumptions": total_consumptions,
        "allow_unlimited_consumptions": bool(feature.get("allow_unlimited_consumptions", False)),
        "allow_negative_consumptions": False,
        "allow_overages": False,
        "max_overages": 0,
        "reset_consumption": False,
        "consumption_period": None,
        "is_floating": False,
        "is_floating_cloud": False,
        "floating_users": 0,
        "floating_timeout": None,
    }


def attached_features(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The license's features with its overrides applied, in the product's order. Codes the
    product no longer defines are ignored."""
    attached = attached or {}
    found = []
    for definition in definitions or []:
        override = attached.get(str(definition.get("code", "")))
        if isinstance(override, Mapping):
            merged = _effective(definition, override)
            merged["total_consumptions"] = int(override.get("total_consumptions") or 0)
            found.append(merged)
    return found


def next_expiry(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
    now: datetime,
) -> datetime | None:
    """The next instant after ``now`` at which one of the license's features expires."""
    ends = [
        expiry
        for feature in attached_features(definitions, attached)
        if (expiry := _expiry(feature.get("expiry_date"))) is not None and expiry > now
    ]
    return min(ends, default=None)


def product_features(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
    now: datetime,
    *,
    include_expired: bool = False,
) -> list[dict[str, Any]]:
    """``product_features`` of a License API answer: attached, overridden; expired ones left out
    unless ``include_expired`` (the ``include_expired_features`` query parameter)."""
    return [
        feature_object(feature, feature["total_consumptions"])
        for feature in attached_features(definitions, attached)
        if include_expired or not is_expired(feature, now)
    ]


# -- validation (management side) ---------------------------------------------------------------


def _fail(field: str, message: str) -> LicensorError:
    return LicensorError("validation_error", f"{field}: {message}")


def checked_expiry(value: Any, field: str = "expiry_date") -> str | None:
    """An expiry given as a date or an ISO 8601 time, stored as ISO (UTC, ms, ``Z``)."""
    if value in (None, ""):
        return None
    expiry = _expiry(value)
    if expiry is None:
        raise _fail(field, f"{value!r} is not a date (YYYY-MM-DD or ISO 8601)")
    return iso_ms_z(expiry)


def checked_max_consumption(value: Any, field: str = "max_consumption") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, "must be a whole number")
    if not 0 <= value <= MAX_CONSUMPTION:
        raise _fail(field, f"between 0 and {MAX_CONSUMPTION}")
    return value


def checked_metadata(value: Any, field: str = "metadata") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "must be a JSON object")
    return value


def checked_definition(
    fields: Mapping[str, Any], existing: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """A new feature definition, validated; its id is one more than the product's largest."""
    code = str(fields.get("code") or "").strip()
    if not code or len(code) > MAX_CODE or any(ch.isspace() or ch == "\x00" for ch in code):
        raise _fail("code", f"1-{MAX_CODE} characters, no spaces")
    if any(d.get("code") == code for d in existing):
        raise LicensorError(
            "validation_error", f"code: feature {code!r} already exists", status=409
        )
    definition = {
        "id": max((int(d.get("id") or 0) for d in existing), default=0) + 1,
        "code": code,
        "name": "",
        "feature_type": "activation",
        "max_consumption": 0,
        "allow_unlimited_consumptions": False,
        "expiry_date": None,
        "metadata": {},
    }
    return checked_changes(definition, {**fields, "name": fields.get("name") or code})


def checked_changes(definition: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A definition with ``changes`` applied (the code never changes)."""
    updated = dict(definition)
    if "name" in changes:
        name = str(changes["name"] or "").strip()
        if not name or len(name) > MAX_NAME or "\x00" in name:
            raise _fail("name", f"1-{MAX_NAME} characters")
        updated["name"] = name
    if "feature_type" in changes:
        if changes["feature_type"] not in FEATURE_TYPES:
            raise _fail("feature_type", "must be activation or consumption")
        updated["feature_type"] = changes["feature_type"]
    if "max_consumption" in changes:
        updated["max_consumption"] = checked_max_consumption(changes["max_consumption"])
    if "allow_unlimited_consumptions" in changes:
        if not isinstance(changes["allow_unlimited_consumptions"], bool):
            raise _fail("allow_unlimited_consumptions", "must be true or false")
        updated["allow_unlimited_consumptions"] = changes["allow_unlimited_consumptions"]
    if "expiry_date" in changes:
        updated["expiry_date"] = checked_expiry(changes["expiry_date"])
    if "metadata" in changes:
        updated["metadata"] = checked_metadata(changes["metadata"])
    if updated["feature_type"] == "activation" and updated["max_consumption"]:
        raise _fail("max_consumption", "only consumption features count consumptions")
    return updated


def checked_attachments(
    definitions: Sequence[Mapping[str, Any]], wanted: Mapping[str, Any], field: str = "features"
) -> dict[str, dict[str, Any]]:
    """``{code: overrides}`` for a license (or a policy), every code defined by the product and
    every override valid. An override of ``null``/``{}`` attaches with the product's values."""
    known = {str(d.get("code")): d for d in definitions}
    attached: dict[str, dict[str, Any]] = {}
    for code, override in wanted.items():
        if code not in known:
            raise LicensorError(
                "unknown_feature",
                f"{field}: the product has no feature {code!r}",
                status=400,
            )
        override = override or {}
        if not isinstance(override, Mapping):
            raise _fail(f"{field}.{code}", "must be an object of overrides")
        unknown = sorted(set(override) - set(OVERRIDES) - {"total_consumptions"})
        if unknown:
            raise _fail(f"{field}.{code}.{unknown[0]}", "cannot be overridden on a license")
        clean: dict[str, Any] = {}
        if override.get("expiry_date") is not None:
            clean["expiry_date"] = checked_expiry(
                override["expiry_date"], f"{field}.{code}.expiry_date"
            )
        if override.get("max_consumption") is not None:
            if known[code].get("feature_type") != "consumption":
                raise _fail(
                    f"{field}.{code}.max_consumption", "only consumption features count them"
                )
            clean["max_consumption"] = checked_max_consumption(
                override["max_consumption"], f"{field}.{code}.max_consumption"
            )
        if override.get("metadata") is not None:
            clean["metadata"] = checked_metadata(override["metadata"], f"{field}.{code}.metadata")
        if override.get("total_consumptions") is not None:
            clean["total_consumptions"] = int(override["total_consumptions"])
        attached[code] = clean
    return attached
