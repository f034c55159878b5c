"""Floating cloud rules (License API v4 §3.4, §3.11-3.12, §5.5): at most ``floating_users``
activated devices of a license hold a slot at once. Pure functions: ``now`` is an argument.

A device takes a slot with a check (or a borrow) and keeps it by checking again: a slot is
held while its ``expires_at`` -- the last refresh plus ``floating_timeout`` minutes -- or its
``borrowed_until`` is in the future, judged when read (no timer frees it). The server records a
refresh at most once per ``refresh_interval`` (a quarter of the timeout, at most a minute), so a
device that checks at least once every ``timeout - refresh_interval`` never loses its slot,
and a slot is free at most ``floating_timeout`` after the device's last check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from licensor.core.errors import LicensorError

DEFAULT_TIMEOUT_MINUTES = 5


class FloatingTerms(Protocol):
    """The floating settings of a license (``core.licensing.LicenseTerms``) or of one of its
    features (``FeatureFloating``): the rules below read only these."""

    @property
    def is_floating_cloud(self) -> bool: ...
    @property
    def floating_users(self) -> int: ...
    @property
    def floating_timeout_minutes(self) -> int: ...
    @property
    def can_borrow(self) -> bool: ...
    @property
    def max_borrow_hours(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FeatureFloating:
    """A floating feature's settings (``core.features.floating_terms``): its slots are held
    apart from the license's, ``floating_users`` devices at once."""

    is_floating_cloud: bool
    floating_users: int
    floating_timeout_minutes: int
    can_borrow: bool
    max_borrow_hours: int


@dataclass(frozen=True, slots=True)
class Slot:
    device_id: int
    taken_at: datetime
    refreshed_at: datetime
    expires_at: datetime
    borrowed_until: datetime | None


def held(slot: Slot | None, now: datetime) -> bool:
    """Whether ``slot`` is held at ``now`` (not timed out, or borrowed)."""
    if slot is None:
        return False
    return slot.expires_at > now or (slot.borrowed_until is not None and slot.borrowed_until > now)


def borrowed(slot: Slot | None, now: datetime) -> bool:
    return slot is not None and slot.borrowed_until is not None and slot.borrowed_until > now


def timeout(terms: FloatingTerms) -> timedelta:
    return timedelta(minutes=terms.floating_timeout_minutes or DEFAULT_TIMEOUT_MINUTES)


def refresh_interval(terms: FloatingTerms) -> timedelta:
    """How often a holder's checks record a refresh (the others are answered as they are)."""
    return min(timedelta(minutes=1), timeout(terms) / 4)


def refresh_due(slot: Slot | None, terms: FloatingTerms, now: datetime) -> bool:
    """Whether a check at ``now`` must write: to take the slot, or to refresh it."""
    return not held(slot, now) or now >= slot.refreshed_at + refresh_interval(terms)  # type: ignore[union-attr]


def decide_take(terms: FloatingTerms, mine: Slot | None, others_held: int, now: datetime) -> None:
    """May this device hold a slot at ``now`` (``others_held``: slots other devices hold)?
    ``floating_not_available`` when every slot is taken."""
    if held(mine, now):
        return
    if others_held >= terms.floating_users:
        raise LicensorError("floating_not_available")


def borrow_until(terms: FloatingTerms, asked: datetime | None, now: datetime) -> datetime:
    """Until when a borrow asked for ``asked`` (``None``: as long as allowed) keeps the slot;
    ``license_borrow_not_allowed`` or ``borrow_until_not_valid`` (in the past, or beyond
    ``max_borrow_time`` hours)."""
    if not terms.can_borrow or terms.max_borrow_hours <= 0:
        raise LicensorError("license_borrow_not_allowed")
    longest = now + timedelta(hours=terms.max_borrow_hours)
    if asked is None:
        return longest
    if asked <= now or asked > longest:
        raise LicensorError(
            "borrow_until_not_valid",
            f"Borrow until must be after now and at most {terms.max_borrow_hours} hours ahead",
        )
    return asked
