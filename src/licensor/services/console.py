"""The web console's people and sessions: console users (an e-mail, an Argon2id password, one
of the management API's roles on one company), signing in and out, and the reads the console's
pages need beyond the management use cases (which they call as the management API does: the
console holds no rule of its own).

A session is a random token in an HttpOnly cookie, kept in the database only as a keyed hash
(``MasterKey.hash_secret``), with a form token of its own that every form of the session sends
back (compared in constant time). Wrong passwords are counted by the rate limits as the License
API's wrong guesses are (per client address and per e-mail).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from licensor.core import passwords
from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.secrets_at_rest import MasterKey
from licensor.services.licensing import password_hasher
from licensor.services.management import ROLES, Admin
from licensor.store.models import (
    AuditEntry,
    ConsoleSession,
    ConsoleUser,
    Customer,
    License,
    Product,
)

SESSION_HOURS = 12
PAGE = 50
MAX_CUSTOMERS = 200  # customers whose e-mail starts with a search text, at most
# verified for an unknown e-mail, so a wrong address takes as long as a wrong password
_DUMMY_HASH = password_hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A console session: who, with which rights, and the form token of its forms."""

    user_id: int
    email: str
    admin: Admin
    csrf_token: str

    @property
    def role(self) -> str:
        return self.admin.role

    def may(self, permission: str) -> bool:
        try:
            self.admin.require(permission)
        except LicensorError:
            return False
        return True


def create_user(
    session: Session, company_id: int, email: str, password: str, role: str
) -> ConsoleUser:
    """A console user of ``company_id`` (``role``: admin, support or read-only)."""
    email = email.strip().lower()
    if role not in ROLES:
        raise LicensorError("validation_error", "role: admin, support or read-only")
    if "@" not in email or len(email) > 320:
        raise LicensorError("validation_error", "email: an e-mail address")
    passwords.check_length(password, minimum=passwords.CONSOLE_USER_MIN)
    if session.scalars(select(ConsoleUser).where(ConsoleUser.email == email)).first():
        raise LicensorError("validation_error", f"email: {email} has a console user already")
    user = ConsoleUser(
        company_id=company_id,
        email=email,
        password_hash=password_hasher.hash(password),
        role=role,
        disabled=False,
    )
    session.add(user)
    session.flush()
    return user


def sign_in(
    session: Session, master_key: MasterKey, email: str, password: str, *, now: datetime
) -> tuple[str, SignedIn]:
    """A new session of the user ``email`` (its cookie token, and the session), or
    ``invalid_credentials``."""
    user = session.scalars(
        select(ConsoleUser).where(ConsoleUser.email == email.strip().lower())
    ).first()
    try:
        password_hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise LicensorError("invalid_credentials") from None
    if user is None or user.disabled:
        raise LicensorError("invalid_credentials")
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            user_id=user.id,
            token_hash=master_key.hash_secret(token),
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    user.last_login_at = now
    # (sessions that ended are forgotten as new ones begin)
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    session.flush()
    return token, _signed_in(user, csrf)


def _signed_in(user: ConsoleUser, csrf: str) -> SignedIn:
    admin = Admin(user.company_id, f"console:{user.email}", user.role)  # type: ignore[arg-type]
    return SignedIn(user.id, user.email, admin, csrf)


def session_of(
    session: Session, master_key: MasterKey, token: str | None, *, now: datetime
) -> SignedIn | None:
    """The signed-in session of a cookie's ``token`` (``None``: none, ended, or its user
    disabled)."""
    if not token or len(token) > 100:
        return None
    found = session.execute(
        select(ConsoleSession, ConsoleUser)
        .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
        .where(ConsoleSession.token_hash == master_key.hash_secret(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.expires_at <= now or user.disabled:
        return None
    return _signed_in(user, row.csrf_token)


def sign_out(session: Session, master_key: MasterKey, token: str | None) -> None:
    if token:
        session.execute(
            delete(ConsoleSession).where(ConsoleSession.token_hash == master_key.hash_secret(token))
        )


# -- the pages' reads -------------------------------------------------------------------------


def find_licenses(
    session: Session, company_id: int, query: str, *, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the company's licenses, newest first (keyset: ids below ``before``), that
    match ``query``: a license key, an order id, or the start of a customer's e-mail. The
    rows and the ``before`` of the next page (``None``: the last)."""
    # licenses alone, newest first (the primary key's order: a join here could make the
    # planner read and sort every license), then the page's products and customers
    statement = select(License).where(License.company_id == company_id)
    text = query.strip()
    if text:
        statement = statement.where(
            License.id.in_(_matching_ids(session, company_id, text, before=before))
        )
    if before is not None:
        statement = statement.where(License.id < before)
    found = session.scalars(statement.order_by(License.id.desc()).limit(PAGE + 1)).all()
    products = select(Product.id, Product.short_code).where(Product.company_id == company_id)
    codes = {product_id: code for product_id, code in session.execute(products)}
    customer_ids = {row.customer_id for row in found if row.customer_id is not None}
    emails = {
        customer_id: email
        for customer_id, email in session.execute(
            select(Customer.id, Customer.email).where(Customer.id.in_(customer_ids))
        )
    }
    rows = [
        (row, codes.get(row.product_id, ""), emails.get(row.customer_id or 0, "")) for row in found
    ]
    items: list[dict[str, Any]] = [
        {
            "id": license_.id,
            "license_key": license_.license_key,
            "product": code,
            "customer": email or "",
            "license_type": license_.license_type,
            "enabled": license_.enabled,
            "times_activated": license_.times_activated,
            "max_activations": license_.max_activations,
            "unlimited": license_.allow_unlimited_activations,
            "validity_period": license_.validity_period,
            "order_id": license_.order_store_id,
        }
        for license_, code, email in rows[:PAGE]
    ]
    more = len(rows) > PAGE
    return items, (int(items[-1]["id"]) if more and items else None)


def _matching_ids(session: Session, company_id: int, text: str, *, before: int | None) -> list[int]:
    """The ids of the first ``PAGE + 1`` licenses (newest first, below ``before``) with the key
    ``text``, the order id ``text``, or a customer whose e-mail starts with ``text``: one
    index look-up each (an ``OR`` of the three would read every license of the company)."""
    email = text.lower()
    customers = session.scalars(
        select(Customer.id)
        .where(
            Customer.company_id == company_id,
            Customer.email >= email,
            Customer.email < email + "\U0010ffff",
        )
        .limit(MAX_CUSTOMERS)
    ).all()
    conditions = [
        License.key_lookup == normalize_license_key(text),
        License.order_store_id == text,
    ]
    if customers:  # (an IN over none would make the planner read the licenses in id order)
        conditions.append(License.customer_id.in_(customers))
    found: set[int] = set()
    for condition in conditions:
        ids = select(License.id).where(License.company_id == company_id, condition)
        if before is not None:
            ids = ids.where(License.id < before)
        found.update(session.scalars(ids.order_by(License.id.desc()).limit(PAGE + 1)))
    return sorted(found, reverse=True)[: PAGE + 1]


def license_states(session: Session, company_id: int, now: datetime) -> dict[str, int]:
    """How many of the company's licenses are active (a device holds a seat), not activated
    yet, expired or disabled."""
    expired = License.validity_period.is_not(None) & (License.validity_period < now)
    state = (
        select(
            func.count().filter(License.enabled.is_(False)),
            func.count().filter(License.enabled.is_(True) & expired),
            func.count().filter(
                License.enabled.is_(True) & ~expired & (License.times_activated > 0)
            ),
            func.count().filter(
                License.enabled.is_(True) & ~expired & (License.times_activated == 0)
            ),
        )
        .select_from(License)
        .where(License.company_id == company_id)
    )
    disabled, gone, active, waiting = session.execute(state).one()
    return {"active": active, "not activated": waiting, "expired": gone, "disabled": disabled}


def activations_per_day(
    session: Session, company_id: int, now: datetime, days: int = 30
) -> list[tuple[str, int]]:
    """``(YYYY-MM-DD, activations)`` of each of the last ``days`` days, oldest first (from
    the audit log: every activation is recorded there)."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = session.scalars(
        select(AuditEntry.created_at).where(
            AuditEntry.company_id == company_id,
            AuditEntry.action.in_(("device.activate", "device.activate_offline")),
            AuditEntry.created_at >= start,
        )
    ).all()
    counts = {(start + timedelta(days=i)).strftime("%Y-%m-%d"): 0 for i in range(days)}
    for when in rows:
        day = when.strftime("%Y-%m-%d")
        if day in counts:
            counts[day] += 1
    return list(counts.items())


def recent_audit(
    session: Session,
    company_id: int,
    *,
    limit: int = 10,
    action: str = "",
    before: int | None = None,
) -> Sequence[AuditEntry]:
    """The company's latest audit entries (newest first; ``action``: those starting so)."""
    statement = select(AuditEntry).where(AuditEntry.company_id == company_id)
    if action:
        statement = statement.where(AuditEntry.action.startswith(action, autoescape=True))
    if before is not None:
        statement = statement.where(AuditEntry.id < before)
    return session.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit)).all()


def chart_svg(points: list[tuple[str, int]], *, width: int = 720, height: int = 180) -> str:
    """A bar chart of ``points`` as SVG markup (the values are numbers and dates: nothing to
    escape), drawn on the server: no script, no chart library."""
    top = max((value for _, value in points), default=0) or 1
    left, bottom, gap = 36, 24, 2
    bar = (width - left) / max(len(points), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="Activations per day">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
        'stroke="#9aa6ba"/>',
        f'<text x="{left - 6}" y="14" text-anchor="end" font-size="11" fill="#5b6577">{top}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" font-size="11" '
        'fill="#5b6577">0</text>',
    ]
    for i, (day, value) in enumerate(points):
        h = (height - bottom - 16) * value / top
        x = left + i * bar + gap / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar - gap:.1f}" '
            f'height="{h:.1f}" fill="#2457c5"><title>{day}: {value}</title></rect>'
        )
        if (len(points) - 1 - i) % 7 == 0:  # (weekly, ending today)
            parts.append(
                f'<text x="{x + (bar - gap) / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                f'font-size="11" fill="#5b6577">{day[5:]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
