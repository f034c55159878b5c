"""Consumption rules (License API v4 §3.9, §5.7): how many units a license may count, and when
its total starts again from zero. Pure functions: ``now`` is an argument.

The acceptance rule: a report of ``n`` takes the total to ``total + n``. Unlimited licenses
accept any positive report; others accept it while the new total stays within
``max_consumptions`` plus, with ``allow_overages``, ``max_overages`` (``max_overages`` 0 with
overages allowed: no limit, "no restrictions" in the vendor's words). A negative report (a
refund) needs ``allow_negative_consumptions`` and never takes the total below 0.

A request may *ask* for fewer overages than the license allows (its ``allow_overages: false``
or a smaller ``max_overages``), never for more: the vendor's terms are the ceiling.

Periodic reset: with a ``consumption_period`` the total counts from the start of the current
period -- 00:00 UTC each day, Monday 00:00 UTC each week, the 1st 00:00 UTC each month, 1
January 00:00 UTC each year -- judged when read (no timer): a total last counted before the
current period started is 0 now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from licensor.core.errors import LicensorError

PERIODS = ("daily", "weekly", "monthly", "annually")
# the largest total and the largest single report (a 32-bit column, with room to spare)
MAX_TOTAL = 2_000_000_000
MAX_REPORT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ConsumptionTerms:
    max_consumptions: int
    allow_unlimited: bool
    allow_overages: bool
    max_overages: int
    allow_negative: bool
    period: str | None  # one of PERIODS, or None: never reset


def period_start(period: str, now: datetime) -> datetime:
    """The start of the period of ``now`` (UTC)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    if period == "annually":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown consumption period {period!r}")


def next_period_start(period: str, now: datetime) -> datetime:
    """When the period after the one of ``now`` starts (the next reset)."""
    start = period_start(period, now)
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    if period == "monthly":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


def current_total(
    total: int, counted_at: datetime | None, period: str | None, now: datetime
) -> int:
    """The total as it stands at ``now``: 0 when it was last counted before the current
    period started."""
    if period is None or counted_at is None:
        return total
    return 0 if counted_at < period_start(period, now) else total


def effective_terms(
    terms: ConsumptionTerms, allow_overages: bool | None, max_overages: int | None
) -> ConsumptionTerms:
    """The license's terms narrowed by what the request asks for (never widened)."""
    allow = terms.allow_overages and allow_overages is not False
    limit = terms.max_overages
    if allow and max_overages is not None:
        if max_overages == 0:  # (asks for none)
            allow = False
        else:  # (the license's 0 means no limit: then the request's own applies)
            limit = max_overages if limit == 0 else min(limit, max_overages)
    return ConsumptionTerms(
        terms.max_consumptions,
        terms.allow_unlimited,
        allow,
        limit,
        terms.allow_negative,
        terms.period,
    )


def decide_consumption(terms: ConsumptionTerms, total: int, count: int, *, code: str) -> int:
    """The new total after a report of ``count`` on ``total`` (the current one), or the
    refusal: ``negative_consumptions_not_allowed``, or ``code`` (the not-enough code of a
    license or of a feature) when it would go past the limit."""
    if not -MAX_REPORT <= count <= MAX_REPORT:
        raise LicensorError(
            "validation_error", f"consumptions: between -{MAX_REPORT} and {MAX_REPORT}"
        )
    if count < 0:
        if not terms.allow_negative:
            raise LicensorError("negative_consumptions_not_allowed")
        if total + count < 0:
            raise LicensorError(
                "negative_consumptions_not_allowed",
                f"Negative consumptions cannot take the total below 0 (it is {total})",
            )
        return total + count
    new_total = total + count
    if new_total > MAX_TOTAL:
        raise LicensorError(
            code, f"Not enough consumptions left (the total is at most {MAX_TOTAL})"
        )
    if terms.allow_unlimited or count == 0:
        return new_total
    if terms.allow_overages and terms.max_overages == 0:
        return new_total
    limit = terms.max_consumptions + (terms.max_overages if terms.allow_overages else 0)
    if new_total > limit:
        raise LicensorError(code)
    return new_total
