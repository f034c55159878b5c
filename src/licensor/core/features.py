"""Product features: defined on a product, attached to licenses with per-license overrides.

Both sides are JSON held on their rows (``products.features``: a list of definitions;
``licenses.features``: attached codes -> overrides), so the License API lists a license's
features from the two rows it already loaded, without another query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from licensor.core.consumption import PERIODS, ConsumptionTerms, current_total, next_period_start
from licensor.core.errors import LicensorError
from licensor.core.floating import DEFAULT_TIMEOUT_MINUTES, FeatureFloating
from licensor.protocol.signing import iso_ms_z, parse_iso_datetime

FEATURE_TYPES = ("activation", "consumption")
# What a license may override of its product's definition.
OVERRIDES = ("expiry_date", "max_consumption", "floating_users", "metadata")
# What a license's attachment records besides its overrides: the feature's consumption total
# and when it was last counted (ISO, for the periodic reset).
COUNTERS = ("total_consumptions", "counted_at")
MAX_CODE = 100
MAX_NAME = 200
MAX_CONSUMPTION = 2_000_000_000
MAX_FLOATING_USERS = 1_000_000
MAX_TIMEOUT_MINUTES = 525_600  # a year
MAX_BORROW_HOURS = 8_760  # a year
# The settings of a definition that are true or false, and the whole numbers with their ranges.
FLAGS = (
    "allow_unlimited_consumptions",
    "allow_overages",
    "allow_negative_consumptions",
    "reset_consumption",
    "is_floating_cloud",
    "can_borrow",
)
NUMBERS = {
    "max_consumption": MAX_CONSUMPTION,
    "max_overages": MAX_CONSUMPTION,
    "floating_users": MAX_FLOATING_USERS,
    "max_borrow_time": MAX_BORROW_HOURS,
}


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


def period(feature: Mapping[str, Any]) -> str | None:
    """The period after which the feature's total starts again from 0 (``None``: never)."""
    if feature.get("reset_consumption") and feature.get("consumption_period") in PERIODS:
        return str(feature["consumption_period"])
    return None


def any_floating(definitions: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether one of a product's features is a floating one (its devices may hold slots)."""
    return any(bool(d.get("is_floating_cloud")) for d in definitions or [])


def consumption_terms(feature: Mapping[str, Any]) -> ConsumptionTerms:
    """A consumption feature's terms, for ``core.consumption.decide_consumption``."""
    return ConsumptionTerms(
        max_consumptions=int(feature.get("max_consumption") or 0),
        allow_unlimited=bool(feature.get("allow_unlimited_consumptions", False)),
        allow_overages=bool(feature.get("allow_overages", False)),
        max_overages=int(feature.get("max_overages") or 0),
        allow_negative=bool(feature.get("allow_negative_consumptions", False)),
        period=period(feature),
    )


def floating_terms(feature: Mapping[str, Any]) -> FeatureFloating:
    """A feature's floating settings, for ``core.floating``."""
    return FeatureFloating(
        is_floating_cloud=bool(feature.get("is_floating_cloud", False)),
        floating_users=int(feature.get("floating_users") or 0),
        floating_timeout_minutes=int(feature.get("floating_timeout") or DEFAULT_TIMEOUT_MINUTES),
        can_borrow=bool(feature.get("can_borrow", False)),
        max_borrow_hours=int(feature.get("max_borrow_time") or 0),
    )


def feature_object(feature: Mapping[str, Any], total_consumptions: int = 0) -> dict[str, Any]:
    """One element of ``product_features``: the fields of a check_license_feature answer."""
    expiry = _expiry(feature.get("expiry_date"))
    floating = bool(feature.get("is_floating_cloud", False))
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
        "allow_negative_consumptions": bool(feature.get("allow_negative_consumptions", False)),
        "allow_overages": bool(feature.get("allow_overages", False)),
        "max_overages": int(feature.get("max_overages") or 0),
        "reset_consumption": period(feature) is not None,
        "consumption_period": period(feature),
        "is_floating": False,
        "is_floating_cloud": floating,
        "floating_users": int(feature.get("floating_users") or 0) if floating else 0,
        "floating_timeout": int(feature.get("floating_timeout") or DEFAULT_TIMEOUT_MINUTES)
        if floating
        else None,
    }


def attached_features(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The license's features with its overrides applied, in the product's order, each with
    its ``total_consumptions`` as it stands at ``now`` (0 once its period started again).
    Codes the product no longer defines are ignored."""
    attached = attached or {}
    found = []
    for definition in definitions or []:
        override = attached.get(str(definition.get("code", "")))
        if isinstance(override, Mapping):
            merged = _effective(definition, override)
            merged["total_consumptions"] = current_total(
                int(override.get("total_consumptions") or 0),
                _expiry(override.get("counted_at")),
                period(merged),
                now,
            )
            found.append(merged)
    return found


def license_feature(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
    code: str,
    now: datetime,
    *,
    include_expired: bool,
) -> dict[str, Any]:
    """The license's feature ``code`` with its overrides and total, or the refusal:
    ``invalid_license_feature_code`` (not attached to the license, or not defined), and
    ``license_feature_expired`` for an expired one unless ``include_expired``."""
    for feature in attached_features(definitions, attached, now):
        if feature.get("code") == code:
            if not include_expired and is_expired(feature, now):
                raise LicensorError("license_feature_expired")
            return feature
    raise LicensorError(
        "invalid_license_feature_code",
        f"License feature code: '{code}' is invalid or not assigned to the license.",
    )


def counted(attachment: Mapping[str, Any] | None, total: int, now: datetime) -> dict[str, Any]:
    """A license's attachment of a feature with a new consumption total counted at ``now``."""
    return {**(attachment or {}), "total_consumptions": total, "counted_at": iso_ms_z(now)}


def next_expiry(
    definitions: Sequence[Mapping[str, Any]] | None,
    attached: Mapping[str, Any] | None,
    now: datetime,
) -> datetime | None:
    """The next instant after ``now`` at which what the license's features answer changes by
    itself: one of them expires, or a total starts again from 0 (its period's end)."""
    ends = []
    for feature in attached_features(definitions, attached, now):
        expiry = _expiry(feature.get("expiry_date"))
        if expiry is not None and expiry > now:
            ends.append(expiry)
        reset = period(feature)
        if reset is not None and feature["total_consumptions"]:
            ends.append(next_period_start(reset, now))
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
        for feature in attached_features(definitions, attached, now)
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


def checked_number(value: Any, field: str, largest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field, "must be a whole number")
    if not 0 <= value <= largest:
        raise _fail(field, f"between 0 and {largest}")
    return value


def checked_max_consumption(value: Any, field: str = "max_consumption") -> int:
    return checked_number(value, field, MAX_CONSUMPTION)


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
        "allow_overages": False,
        "max_overages": 0,
        "allow_negative_consumptions": False,
        "reset_consumption": False,
        "consumption_period": None,
        "is_floating_cloud": False,
        "floating_users": 0,
        "floating_timeout": None,
        "can_borrow": False,
        "max_borrow_time": 0,
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
    for name in FLAGS:
        if name in changes:
            if not isinstance(changes[name], bool):
                raise _fail(name, "must be true or false")
            updated[name] = changes[name]
    for name, largest in NUMBERS.items():
        if name in changes:
            updated[name] = checked_number(changes[name], name, largest)
    if "floating_timeout" in changes:
        value = changes["floating_timeout"]
        updated["floating_timeout"] = (
            None
            if value is None
            else checked_number(value, "floating_timeout", MAX_TIMEOUT_MINUTES)
        )
    if "consumption_period" in changes:
        value = changes["consumption_period"]
        if value not in (None, *PERIODS):
            raise _fail("consumption_period", f"one of {', '.join(PERIODS)}, or null")
        updated["consumption_period"] = value
    if "expiry_date" in changes:
        updated["expiry_date"] = checked_expiry(changes["expiry_date"])
    if "metadata" in changes:
        updated["metadata"] = checked_metadata(changes["metadata"])
    if updated["feature_type"] == "activation":
        for name in ("max_consumption", "max_overages"):
            if updated.get(name):
                raise _fail(name, "only consumption features count consumptions")
        for name in ("allow_overages", "allow_negative_consumptions", "reset_consumption"):
            if updated.get(name):
                raise _fail(name, "only consumption features count consumptions")
    if updated.get("reset_consumption") and updated.get("consumption_period") is None:
        raise _fail("consumption_period", "a reset needs a period (daily, weekly, ...)")
    if updated.get("is_floating_cloud") and int(updated.get("floating_users") or 0) < 1:
        raise _fail("floating_users", "a floating feature needs at least 1")
    if updated.get("can_borrow") and not updated.get("is_floating_cloud"):
        raise _fail("can_borrow", "only floating features can be borrowed")
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
        unknown = sorted(set(override) - set(OVERRIDES) - set(COUNTERS))
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
        if override.get("floating_users") is not None:
            if not known[code].get("is_floating_cloud"):
                raise _fail(f"{field}.{code}.floating_users", "only floating features have them")
            clean["floating_users"] = checked_number(
                override["floating_users"], f"{field}.{code}.floating_users", MAX_FLOATING_USERS
            )
            if clean["floating_users"] < 1:
                raise _fail(f"{field}.{code}.floating_users", "at least 1")
        if override.get("metadata") is not None:
            clean["metadata"] = checked_metadata(override["metadata"], f"{field}.{code}.metadata")
        if override.get("total_consumptions") is not None:
            clean["total_consumptions"] = int(override["total_consumptions"])
        if override.get("counted_at") is not None:
            clean["counted_at"] = str(override["counted_at"])
        attached[code] = clean
    return attached
