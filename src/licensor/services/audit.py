"""The audit log, and the one place every change is announced (webhooks will listen here)."""

from __future__ import annotations

from collections.abc import Callable
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


Listener = Callable[[Session, Change], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Register a listener called inside the same transaction as the change (e.g. webhooks)."""
    _listeners.append(listener)


def has_listeners() -> bool:
    """Whether a listener wants each change with its session (paths without one must not
    write changes then: ``services/fast_activation.py`` hands those requests on)."""
    return bool(_listeners)


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
    for listener in _listeners:
        listener(session, change)
    return change
