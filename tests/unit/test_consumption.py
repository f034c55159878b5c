"""Consumption rules (core/consumption.py): limits, overages, negative reports, periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from licensor.core.consumption import (
    ConsumptionTerms,
    current_total,
    decide_consumption,
    effective_terms,
    next_period_start,
    period_start,
)
from licensor.core.errors import LicensorError

CODE = "license_not_enough_consumptions"


def terms(**changes: object) -> ConsumptionTerms:
    values: dict[str, object] = {
        "max_consumptions": 10,
        "allow_unlimited": False,
        "allow_overages": False,
        "max_overages": 0,
        "allow_negative": False,
        "period": None,
    }
    values.update(changes)
    return ConsumptionTerms(**values)  # type: ignore[arg-type]


def refusal(t: ConsumptionTerms, total: int, count: int) -> str:
    with pytest.raises(LicensorError) as raised:
        decide_consumption(t, total, count, code=CODE)
    return raised.value.code


def test_reports_count_up_to_the_maximum_and_no_further() -> None:
    assert decide_consumption(terms(), 0, 10, code=CODE) == 10
    assert decide_consumption(terms(), 9, 1, code=CODE) == 10
    assert refusal(terms(), 10, 1) == CODE
    assert refusal(terms(), 0, 11) == CODE
    assert decide_consumption(terms(), 10, 0, code=CODE) == 10


def test_unlimited_and_overages() -> None:
    assert decide_consumption(terms(allow_unlimited=True), 10, 1000, code=CODE) == 1010
    limited = terms(allow_overages=True, max_overages=5)
    assert decide_consumption(limited, 10, 5, code=CODE) == 15
    assert refusal(limited, 15, 1) == CODE
    # overages without a maximum: no limit
    assert decide_consumption(terms(allow_overages=True), 10, 500, code=CODE) == 510
    # max_overages without allow_overages counts for nothing
    assert refusal(terms(max_overages=5), 10, 1) == CODE


def test_a_request_may_ask_for_fewer_overages_never_more() -> None:
    license_terms = terms(allow_overages=True, max_overages=5)
    assert effective_terms(license_terms, False, None).allow_overages is False
    assert effective_terms(license_terms, True, 3).max_overages == 3
    assert effective_terms(license_terms, True, 50).max_overages == 5
    assert effective_terms(license_terms, None, 0).allow_overages is False
    assert effective_terms(terms(), True, 50).allow_overages is False
    # the license's "no limit" narrowed by the request's own
    assert effective_terms(terms(allow_overages=True), True, 7).max_overages == 7


def test_negative_reports_need_the_license_to_allow_them() -> None:
    assert refusal(terms(), 5, -1) == "negative_consumptions_not_allowed"
    allowed = terms(allow_negative=True)
    assert decide_consumption(allowed, 5, -5, code=CODE) == 0
    assert refusal(allowed, 5, -6) == "negative_consumptions_not_allowed"


def test_huge_reports_are_refused() -> None:
    assert refusal(terms(allow_unlimited=True), 0, 10**12) == "validation_error"
    assert refusal(terms(allow_unlimited=True), 1_999_999_999, 2) == CODE


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("daily", datetime(2026, 12, 9, tzinfo=UTC)),
        ("weekly", datetime(2026, 12, 7, tzinfo=UTC)),  # (a Monday)
        ("monthly", datetime(2026, 12, 1, tzinfo=UTC)),
        ("annually", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods_start_at_midnight_utc(period: str, start: datetime) -> None:
    now = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_start(period, now) == start
    assert current_total(7, start, period, now) == 7  # counted in this period
    assert current_total(7, start - timedelta(seconds=1), period, now) == 0  # the last one
    before = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert current_total(7, before, period, now) == 0
    assert current_total(7, before, None, now) == 7


def test_the_next_period_starts_where_this_one_ends() -> None:
    now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert next_period_start("daily", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_period_start("weekly", now) == datetime(2027, 1, 4, tzinfo=UTC)
    assert next_period_start("monthly", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_period_start("monthly", now.replace(month=1)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert next_period_start("annually", now) == datetime(2027, 1, 1, tzinfo=UTC)
