"""What an application gets back: the license, read from a verified answer at a trusted time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from licensor.client._errors import LicenseDisabled, LicenseExpired, UntrustedResponse
from licensor.protocol.auth import parse_http_date
from licensor.protocol.signing import parse_iso_datetime

LicenseStatus = Literal["active", "grace_period", "expired"]


class Feature(NamedTuple):
    """A product feature granted by the license."""

    code: str
    name: str
    expires_at: datetime | None
    raw: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Feature(code={self.code!r}, name={self.name!r}, expires_at={self.expires_at!r})"


class License(NamedTuple):
    """A verified license, evaluated at a trusted time.

    ``status`` is ``"active"``, ``"grace_period"`` (past ``expires_at`` but inside the grace period)
    or ``"expired"`` (only from :meth:`LicenseClient.check`; :meth:`validate` raises instead).
    """

    status: LicenseStatus
    product: str
    license_key: str | None
    username: str | None
    license_type: str
    is_trial: bool
    expires_at: datetime | None
    grace_ends_at: datetime | None
    days_left: int | None
    features: tuple[Feature, ...]
    custom_fields: Mapping[str, Any]
    metadata: Mapping[str, Any]
    hardware_id: str
    device_id: int | None
    max_activations: int | None
    times_activated: int | None
    server_time: datetime
    last_online_check: datetime
    checked_online: bool
    offline_reason: str | None
    raw: Mapping[str, Any]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in self._asdict().items() if name != "raw"
        )
        return f"License({shown})"

    @property
    def is_valid(self) -> bool:
        return self.status != "expired"

    def has_feature(self, code: str) -> bool:
        return any(feature.code == code for feature in self.features)


class DeviceVariable(NamedTuple):
    variable: str
    value: Any
    device_id: int | None
    created_at: Any


class ProductDetails(NamedTuple):
    product_id: Any
    product_name: str
    short_code: str
    authorization_method: str
    allow_trial: bool
    trial_days: int | None
    raw: Mapping[str, Any]

    @property
    def user_based(self) -> bool:
        return self.authorization_method == "user"


class Trial(NamedTuple):
    """A trial issued by the server: activate it with ``activate(license_key=...)``."""

    license_key: str | None
    username: str | None
    password: str | None
    trial_days: int | None
    raw: Mapping[str, Any]


def _optional_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise UntrustedResponse(f"not a timestamp: {value!r}")
    try:
        return parse_iso_datetime(value)
    except ValueError as exc:
        raise UntrustedResponse(f"not a timestamp: {value!r}") from exc


def server_date(body: Mapping[str, Any]) -> datetime:
    """The server's signed clock reading (RFC 7231) carried in a license answer."""
    value = body.get("date")
    if not isinstance(value, str):
        raise UntrustedResponse("the license answer carries no signed server date")
    try:
        return parse_http_date(value)
    except ValueError as exc:
        raise UntrustedResponse("the license answer's date is not an RFC 7231 date") from exc


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _features(body: Mapping[str, Any], now: datetime) -> tuple[Feature, ...]:
    features: list[Feature] = []
    raw_features = body.get("product_features") or []
    if not isinstance(raw_features, list):
        return ()
    for item in raw_features:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            continue
        expires_at = _optional_datetime(item.get("expiry_date"))
        if expires_at is not None and expires_at <= now:
            continue  # a cached answer still re-checks expiry locally
        name = item.get("name")
        features.append(
            Feature(item["code"], name if isinstance(name, str) else "", expires_at, item)
        )
    return tuple(features)


def feature_from(data: Any) -> Feature:
    """The ``check_license_feature`` answer as a ``Feature``."""
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        from licensor.client._errors import UntrustedResponse

        raise UntrustedResponse("unexpected feature answer")
    name = data.get("name")
    return Feature(
        data["code"],
        name if isinstance(name, str) else "",
        _optional_datetime(data.get("expiry_date")),
        data,
    )


class Release(NamedTuple):
    """A version of the product the license covers (``versions()``)."""

    version: str
    release_date: datetime | None


class InstallationFile(NamedTuple):
    """Where to download a version the license covers (``installation_file()``)."""

    url: str | None
    version: str
    environment: str
    hash_md5: str | None
    size: str | None
    release_date: datetime | None
    raw: Mapping[str, Any]


def _untrusted(what: str) -> Exception:
    from licensor.client._errors import UntrustedResponse

    return UntrustedResponse(f"unexpected {what} answer")


def releases_from(data: Any) -> list[Release]:
    """The ``versions`` answer."""
    if not isinstance(data, list) or not all(
        isinstance(item, dict) and isinstance(item.get("version"), str) for item in data
    ):
        raise _untrusted("versions")
    return [Release(item["version"], _optional_datetime(item.get("release_date"))) for item in data]


def installation_file_from(data: Any) -> InstallationFile:
    """The ``installation_file`` answer."""
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise _untrusted("installation file")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    return InstallationFile(
        url=text("installation_file"),
        version=data["version"],
        environment=text("environment") or "",
        hash_md5=text("hash_md5"),
        size=text("size"),
        release_date=_optional_datetime(data.get("release_date")),
        raw=data,
    )


class UserLicense(NamedTuple):
    """A license a license user holds (``user_licenses()``): what a picker shows."""

    id: int
    license_type: str
    enabled: bool
    validity_period: datetime | None
    max_activations: int
    total_activations: int  # (this user's, on this license)
    user_max_activations: int
    raw: Mapping[str, Any]


def user_licenses_from(data: Any) -> list[UserLicense]:
    """The ``user_licenses`` answer."""
    if not isinstance(data, list):
        raise _untrusted("user licenses")
    found = []
    for item in data:
        license_ = item.get("license") if isinstance(item, dict) else None
        user = item.get("user") if isinstance(item, dict) else None
        if not isinstance(license_, dict) or not isinstance(user, dict):
            raise _untrusted("user licenses")
        if not isinstance(license_.get("id"), int) or isinstance(license_.get("id"), bool):
            raise _untrusted("user licenses")
        found.append(
            UserLicense(
                id=license_["id"],
                license_type=str(license_.get("license_type", "")),
                enabled=bool(license_.get("license_enabled", False)),
                validity_period=_optional_datetime(license_.get("validity_period")),
                max_activations=int(license_.get("max_activations") or 0),
                total_activations=int(user.get("total_activations") or 0),
                user_max_activations=int(user.get("max_activations") or 0),
                raw=item,
            )
        )
    return found


def _custom_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    raw = body.get("custom_fields") or []
    if isinstance(raw, dict):
        return dict(raw)
    fields: dict[str, Any] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                fields[item["name"]] = item.get("value")
    return fields


def evaluate(
    body: Mapping[str, Any],
    *,
    product: str,
    now: datetime,
    last_online_check: datetime,
    checked_online: bool,
    offline_reason: str | None = None,
    allow_expired: bool = False,
) -> License:
    """Read a verified license answer at the trusted time ``now``.

    Raises ``LicenseExpired`` (past validity and grace) unless ``allow_expired``, and
    ``LicenseDisabled`` when the signed answer says the license is disabled.
    """
    if body.get("license_enabled") is False or body.get("license_active") is False:
        raise LicenseDisabled("the license is disabled or inactive on the server")
    expires_at = _optional_datetime(body.get("validity_period"))
    grace_hours = body.get("grace_period")
    grace_ends_at: datetime | None = None
    if (
        expires_at is not None
        and body.get("allow_grace_period") is True
        and isinstance(grace_hours, int | float)
        and not isinstance(grace_hours, bool)
        and grace_hours > 0
    ):
        grace_ends_at = expires_at + timedelta(hours=grace_hours)
    status: LicenseStatus = "active"
    if expires_at is not None and now >= expires_at:
        status = "grace_period" if grace_ends_at is not None and now < grace_ends_at else "expired"
    elif body.get("is_expired") is True:
        # The server's signed verdict wins over a local clock that may be behind.
        status = "expired"
    if status == "expired" and not allow_expired:
        raise LicenseExpired(
            "the license has expired" + (f" on {expires_at:%Y-%m-%d}" if expires_at else ""),
            expired_at=grace_ends_at or expires_at,
        )
    end = grace_ends_at if status == "grace_period" else expires_at
    days_left = None
    if end is not None:
        days_left = max(0, math.floor((end - now) / timedelta(days=1)))
    user = body.get("user")
    username = body.get("username")
    if not isinstance(username, str) and isinstance(user, dict):
        username = user.get("email")
    license_key = body.get("license_key")
    metadata = body.get("metadata")
    license_type = body.get("license_type")
    hardware_id = body.get("hardware_id")
    return License(
        status=status,
        product=product,
        license_key=license_key if isinstance(license_key, str) else None,
        username=username if isinstance(username, str) else None,
        license_type=license_type if isinstance(license_type, str) else "",
        is_trial=body.get("is_trial") is True,
        expires_at=expires_at,
        grace_ends_at=grace_ends_at,
        days_left=days_left,
        features=_features(body, now),
        custom_fields=_custom_fields(body),
        metadata=metadata if isinstance(metadata, dict) else {},
        hardware_id=hardware_id if isinstance(hardware_id, str) else "",
        device_id=_int_or_none(body.get("device_id")),
        max_activations=_int_or_none(body.get("max_activations")),
        times_activated=_int_or_none(body.get("times_activated")),
        server_time=server_date(body),
        last_online_check=last_online_check,
        checked_online=checked_online,
        offline_reason=offline_reason,
        raw=body,
    )


def product_details_from(data: Any) -> ProductDetails:
    if not isinstance(data, dict):
        raise UntrustedResponse("product_details answer is not an object")
    trial_days = data.get("trial_days")
    return ProductDetails(
        product_id=data.get("product_id"),
        product_name=str(data.get("product_name") or ""),
        short_code=str(data.get("short_code") or ""),
        authorization_method=str(data.get("authorization_method") or "license-key"),
        allow_trial=data.get("allow_trial") is True,
        trial_days=_int_or_none(trial_days),
        raw=data,
    )


def trial_from(data: Any) -> Trial:
    if not isinstance(data, dict):
        raise UntrustedResponse("trial_key answer is not an object")
    user = data.get("user")
    username = data.get("username")
    password = data.get("password")
    if isinstance(user, dict):
        username = username or user.get("email")
        password = password or user.get("initial_password") or user.get("password")
    license_key = data.get("license_key")
    return Trial(
        license_key=license_key if isinstance(license_key, str) else None,
        username=username if isinstance(username, str) else None,
        password=password if isinstance(password, str) else None,
        trial_days=_int_or_none(data.get("trial_days")),
        raw=data,
    )


def variables_from(data: Any) -> list[DeviceVariable]:
    if not isinstance(data, list):
        raise UntrustedResponse("device variables answer is not a list")
    result: list[DeviceVariable] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("variable"), str):
            raise UntrustedResponse("malformed device variable")
        result.append(
            DeviceVariable(
                item["variable"],
                item.get("value"),
                _int_or_none(item.get("device_id")),
                item.get("created_at"),
            )
        )
    return result
