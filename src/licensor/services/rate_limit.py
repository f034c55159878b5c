"""Rate limits on failed License API attempts, so license keys and passwords cannot be guessed.

Failures that reveal a guess are counted in fixed windows: ``license_not_found`` and
``invalid_credentials`` per client address, ``invalid_credentials`` (a wrong password) also per
license identity (company + product + key or username); a bucket
over its limit gets 429 ``too_many_requests`` with ``Retry-After`` (seconds to the window's end)
for every request, right or wrong, until the window ends. Counters live in the database (one
atomic upsert per failure), so the limits hold across server processes and machines.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from licensor.core.errors import RateLimited
from licensor.settings import Settings
from licensor.store import repository

# Answers that tell a guesser "wrong" count against the client address; a wrong password also
# against the license it was tried on (an unknown key is no license: only its sender counts).
COUNTED = frozenset({"license_not_found", "invalid_credentials"})
COUNTED_PER_LICENSE = frozenset({"invalid_credentials"})
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Policy:
    window_seconds: int
    per_client: int  # failures per client address and window; 0 = no limit
    per_license: int  # failures per license identity and window; 0 = no limit

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.rate_limit_window_seconds,
            settings.rate_limit_client_failures,
            settings.rate_limit_license_failures,
        )

    def window_start(self, now: datetime) -> datetime:
        elapsed = (now - _EPOCH).total_seconds()
        return _EPOCH + timedelta(seconds=elapsed - elapsed % self.window_seconds)


def buckets(
    policy: Policy, client: str | None, company_id: int, product: str, identity: str | None
) -> list[tuple[str, int]]:
    """(bucket, limit) pairs for a request. A license identity is one company's (another
    company's failures on the same key text must not lock it) and hashed (never stored in
    clear); a client address is one bucket whatever the company."""
    found: list[tuple[str, int]] = []
    if policy.per_client > 0 and client:
        found.append(("client:" + client[:80], policy.per_client))
    if policy.per_license > 0 and identity:
        found.append((identity_bucket(company_id, product, identity), policy.per_license))
    return found


def identity_bucket(company_id: int, product: str, identity: str) -> str:
    digest = hashlib.sha256(f"{company_id}\0{product}\0{identity}".encode()).hexdigest()[:40]
    return "license:" + digest


def count(session: Session, policy: Policy, found: list[tuple[str, int]], now: datetime) -> None:
    """Count one event in every bucket of ``found`` (e.g. an authorization code sent)."""
    start = policy.window_start(now)
    for bucket, _ in found:
        repository.count_failure(session, bucket, start)


def ensure_allowed(
    session: Session, policy: Policy, found: list[tuple[str, int]], now: datetime
) -> None:
    if not found:
        return
    rows = repository.rate_counters(session, [bucket for bucket, _ in found])
    counters = {bucket: (row.window_start, row.failures) for bucket, row in rows.items()}
    refused = refusal(policy, found, counters, now)
    if refused is not None:
        raise refused


def refusal(
    policy: Policy,
    found: list[tuple[str, int]],
    counters: dict[str, tuple[datetime, int]],
    now: datetime,
) -> RateLimited | None:
    """The 429 for a request whose buckets' counters (bucket -> (window start, failures)) are
    over their limits in the current window, if any."""
    start = policy.window_start(now)
    for bucket, limit in found:
        counter = counters.get(bucket)
        if counter is not None and counter[0] == start and counter[1] >= limit:
            remaining = (start + timedelta(seconds=policy.window_seconds) - now).total_seconds()
            return RateLimited(max(1, math.ceil(remaining)))
    return None


def record_failure(
    session: Session, policy: Policy, found: list[tuple[str, int]], now: datetime, code: str
) -> None:
    """Count a refusal with ``code`` in the buckets it counts in."""
    if code not in COUNTED:
        return
    start = policy.window_start(now)
    for bucket, _ in found:
        if bucket.startswith("client:") or code in COUNTED_PER_LICENSE:
            repository.count_failure(session, bucket, start)
    if random.random() < 0.01:  # now and then, drop the counters of long-gone windows
        repository.forget_rate_counters(session, start - timedelta(days=1))
