"""Licensing rules as pure functions: no I/O, no clock (``now`` is an argument).

Evaluation order follows the License API (v4 §4.3): enabled → blacklist → business rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from licensor.core.errors import LicensorError
from licensor.protocol.signing import iso_ms_z


class LicenseType(StrEnum):
    PERPETUAL = "perpetual"
    TIME_LIMITED = "time-limited"
    SUBSCRIPTION = "subscription"
    CONSUMPTION = "consumption"


class AuthorizationMethod(StrEnum):
    LICENSE_KEY = "license-key"
    USER = "user"


TRANSFERS_UNLIMITED = 0
TRANSFERS_PREVENTED = -1


@dataclass(frozen=True, slots=True)
class LicenseTerms:
    """What the rules need to know about a license (a snapshot, taken under the license's lock)."""

    license_type: LicenseType
    enabled: bool
    is_trial: bool
    trial_days: int | None
    validity_period: datetime | None
    validity_days: int | None
    start_date: datetime | None
    allow_grace_period: bool
    grace_period_hours: int
    maintenance_period: datetime | None
    max_activations: int
    allow_unlimited_activations: bool
    times_activated: int
    max_transfers: int
    transfer_count: int
    last_deactivated_hardware_id: str | None
    prevent_vm: bool
    version_spec: str | None
    # QLM-style limits (DECISIONS §5): 0 = no per-system limit; -1 = unlimited releases;
    # 0 days = every release ever made counts.
    max_activations_per_system: int = 0
    per_system_limit_vm_only: bool = False
    max_release_count: int = -1
    max_release_period_days: int = 0
    allow_offline_activation: bool = True
    # floating cloud (core.floating)
    is_floating_cloud: bool = False
    floating_users: int = 0
    floating_timeout_minutes: int = 5
    can_borrow: bool = False
    max_borrow_hours: int = 0


@dataclass(frozen=True, slots=True)
class UserTerms:
    max_activations: int
    allow_unlimited_activations: bool
    total_activations: int


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    hardware_id: str
    is_vm: bool
    app_ver: str | None
    app_release_date: datetime | None  # release date of app_ver, when the product knows it
    activation_count: int = 0  # earlier activations of this license on this computer


@dataclass(frozen=True, slots=True)
class ActivationDecision:
    validity_period: datetime | None  # possibly fixed now (trial days / validity days)
    counts_transfer: bool
    takes_seat: bool = True  # False: re-activation of a computer that already holds a seat


def validity_at_activation(terms: LicenseTerms, now: datetime) -> datetime | None:
    """The validity period once the license is activated.

    An explicit ``validity_period`` wins; otherwise a trial's ``trial_days`` or a
    ``validity_days`` duration starts counting at the first activation.
    """
    if terms.validity_period is not None:
        return terms.validity_period
    if terms.is_trial and terms.trial_days:
        return now + timedelta(days=terms.trial_days)
    if terms.validity_days and terms.license_type != LicenseType.PERPETUAL:
        return now + timedelta(days=terms.validity_days)
    return None


def expires_at(terms: LicenseTerms, validity_period: datetime | None) -> datetime | None:
    """When the license stops being valid, grace period included; ``None`` = never."""
    if validity_period is None:
        return None
    if terms.license_type == LicenseType.PERPETUAL and not terms.is_trial:
        return None
    if terms.allow_grace_period and terms.grace_period_hours > 0:
        return validity_period + timedelta(hours=terms.grace_period_hours)
    return validity_period


def is_expired(terms: LicenseTerms, validity_period: datetime | None, now: datetime) -> bool:
    end = expires_at(terms, validity_period)
    return end is not None and now > end


def version_supported(
    spec: str | None,
    maintenance_period: datetime | None,
    app_ver: str | None,
    app_release_date: datetime | None,
) -> bool:
    """Is ``app_ver`` inside the allowed range and released before maintenance ended?"""
    if app_ver is None or app_ver == "":
        return True
    if spec:
        try:
            if Version(app_ver) not in SpecifierSet(spec, prereleases=True):
                return False
        except (InvalidVersion, InvalidSpecifier):
            return False
    return not (
        maintenance_period is not None
        and app_release_date is not None
        and app_release_date > maintenance_period
    )


def valid_version_spec(spec: str) -> bool:
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        return False
    return True


def decide_offline_activation(terms: LicenseTerms) -> None:
    """Whether the license may be activated with a request file (v4 §3.5: trial, perpetual,
    time-limited and consumption licenses; not subscriptions, which renew online), or the
    refusal."""
    if terms.is_floating_cloud:
        raise LicensorError("offline_floating_cloud_not_supported")
    if not terms.allow_offline_activation:
        raise LicensorError("offline_activation_not_allowed")
    if terms.license_type == LicenseType.SUBSCRIPTION:
        raise LicensorError(
            "offline_activation_not_allowed",
            "Subscription licenses cannot be activated offline: activate online",
        )


def decide_activation(
    terms: LicenseTerms,
    *,
    device: DeviceFacts,
    device_active: bool,
    blacklisted: bool,
    user: UserTerms | None,
    now: datetime,
    allow_reactivation: bool = False,
    counts_activation: bool = True,
) -> ActivationDecision:
    """May this device take a seat on this license now? Raises the wire error if not.

    ``allow_reactivation``: an already active device is re-activated without a new seat (QLM
    style) instead of refused with ``license_device_exists`` (License API style).
    ``counts_activation``: this activation counts against ``max_activations_per_system``.
    """
    if not terms.enabled:
        raise LicensorError("license_not_enabled")
    if blacklisted:
        raise LicensorError("blacklisted")
    if terms.prevent_vm and device.is_vm:
        raise LicensorError("vm_not_allowed")
    if terms.start_date is not None and now < terms.start_date:
        raise LicensorError(
            "license_start_date_error",
            "This license cannot be activated before start date: " + iso_ms_z(terms.start_date),
        )
    validity = validity_at_activation(terms, now)
    if is_expired(terms, validity, now):
        raise LicensorError("trial_expired" if terms.is_trial else "license_expired")
    if not version_supported(
        terms.version_spec, terms.maintenance_period, device.app_ver, device.app_release_date
    ):
        raise LicensorError("product_version_not_supported")
    if device_active and not allow_reactivation:
        raise LicensorError("license_device_exists")
    if counts_activation and per_system_limit_reached(terms, device):
        raise LicensorError("license_exceeded_max_activations_per_system")
    if device_active:
        return ActivationDecision(validity_period=validity, counts_transfer=False, takes_seat=False)
    counts_transfer = (
        terms.last_deactivated_hardware_id is not None
        and terms.last_deactivated_hardware_id != device.hardware_id
    )
    if counts_transfer:
        if terms.max_transfers == TRANSFERS_PREVENTED or (
            terms.max_transfers > 0 and terms.transfer_count >= terms.max_transfers
        ):
            raise LicensorError("license_transferred_max_times")
    if not terms.allow_unlimited_activations and terms.times_activated >= terms.max_activations:
        raise LicensorError("license_activated_max_times")
    if (
        user is not None
        and not user.allow_unlimited_activations
        and user.total_activations >= user.max_activations
    ):
        raise LicensorError("license_user_activated_max_times")
    return ActivationDecision(validity_period=validity, counts_transfer=counts_transfer)


def per_system_limit_reached(terms: LicenseTerms, device: DeviceFacts) -> bool:
    """QLM's maxActivationsPerSystem: how often one computer may activate (defeats VM clones)."""
    limit = terms.max_activations_per_system
    if limit <= 0 or (terms.per_system_limit_vm_only and not device.is_vm):
        return False
    return device.activation_count >= limit


def release_window_start(terms: LicenseTerms, now: datetime) -> datetime | None:
    """Releases made since this moment count against ``max_release_count`` (None = all)."""
    if terms.max_release_period_days <= 0:
        return None
    return now - timedelta(days=terms.max_release_period_days)


def decide_release(terms: LicenseTerms, *, releases_in_window: int) -> None:
    """QLM's MaxReleaseCount within MaxReleasePeriodInDays; raises when the limit is reached."""
    if terms.max_release_count >= 0 and releases_in_window >= terms.max_release_count:
        raise LicensorError("license_exceeded_max_releases")


def decide_device_access(terms: LicenseTerms, *, device_active: bool, blacklisted: bool) -> None:
    """Rules shared by check, deactivate and device variables: the device must hold a seat."""
    if not terms.enabled:
        raise LicensorError("license_not_enabled")
    if blacklisted:
        raise LicensorError("blacklisted")
    if not device_active:
        if terms.times_activated == 0:
            raise LicensorError("license_not_active")
        raise LicensorError("device_not_found")
