"""The date of license answers (services/payload.answer_date): stepped per device."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from licensor.services.payload import answer_date, next_step


def test_the_date_is_never_ahead_and_at_most_one_step_behind() -> None:
    rng = random.Random(4)
    start = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    for _ in range(2000):
        now = start + timedelta(seconds=rng.uniform(0, 86_400))
        device = f"hw-{rng.randrange(10_000)}"
        dated = answer_date(now, device, 60)
        assert now - timedelta(seconds=60) < dated <= now
        assert dated.microsecond == 0
        assert dated <= now < next_step(dated, 60)


def test_one_date_for_the_whole_step_and_never_backwards() -> None:
    device = "A53F-0CBC"
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    dates = [answer_date(now + timedelta(seconds=s / 4), device, 60) for s in range(4 * 300)]
    assert dates == sorted(dates)  # whichever process answers, a device's date only goes on
    assert len(set(dates)) in (5, 6)  # one per minute over five minutes
    first = dates[0]
    assert all(d == first for d in dates if d < next_step(first, 60))


def test_steps_end_at_different_times_for_different_devices() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    offsets = {answer_date(now, f"hw-{i}", 60).second for i in range(1000)}
    assert len(offsets) > 50  # spread over the minute, not all re-signed at once


def test_step_zero_is_the_exact_second() -> None:
    now = datetime(2026, 12, 1, 12, 0, 7, 900_000, tzinfo=UTC)
    assert answer_date(now, "any", 0) == now.replace(microsecond=0)
