"""The audit log of the ORM use cases (management, catalogue, QLM customers). The activation
and deactivation statements write their audit rows themselves (``store/activation.py``), in the
same transaction: what announces a change (webhooks' outbox) belongs beside each of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.store.models import AuditEntry


@dataclass(frozen=True, slots=True)
class Change:
    company_id: int
    actor: str
    action: str  # dotted, e.g. ``license.disable``
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


def record(
    session: Session,
    *,
    company_id: int,
    actor: str,
    action: str,
    object_type: str,
    object_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Change:
    change = Change(
        company_id,
        actor,
        action,
        object_type,
        str(object_id),
        before,
        after,
        now or datetime.now(UTC),
    )
    session.add(
        AuditEntry(
            company_id=company_id,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=change.object_id,
            before=before,
            after=after,
            created_at=change.at,
        )
    )
    return change
