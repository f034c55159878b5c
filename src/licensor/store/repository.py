"""All SQL lives here. Repositories fetch and write; they never decide licensing rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from licensor.core.keys import bundle_key_lookup
from licensor.store.models import (
    ApiKey,
    AuthorizationCode,
    Company,
    ConsumptionEvent,
    Customer,
    CustomerAccount,
    Device,
    FloatingSlot,
    License,
    LicenseUser,
    OAuthClient,
    Product,
    ProductRelease,
    RateLimitCounter,
)

# -- credentials -------------------------------------------------------------------------------


def api_key_by_key(session: Session, api_key: str) -> ApiKey | None:
    return session.scalars(select(ApiKey).where(ApiKey.api_key == api_key)).one_or_none()


def oauth_client_by_client_id(session: Session, client_id: str) -> OAuthClient | None:
    return session.scalars(
        select(OAuthClient).where(OAuthClient.client_id == client_id)
    ).one_or_none()


def company(session: Session, company_id: int) -> Company | None:
    return session.get(Company, company_id)


def company_by_name(session: Session, name: str) -> Company | None:
    return session.scalars(select(Company).where(Company.name == name)).first()


def companies(session: Session) -> Sequence[Company]:
    return session.scalars(select(Company).order_by(Company.id)).all()


# -- catalogue ---------------------------------------------------------------------------------


def product_by_code(session: Session, company_id: int, short_code: str) -> Product | None:
    return session.scalars(
        select(Product).where(Product.company_id == company_id, Product.short_code == short_code)
    ).one_or_none()


def products(session: Session, company_id: int) -> Sequence[Product]:
    return session.scalars(
        select(Product).where(Product.company_id == company_id).order_by(Product.id)
    ).all()


def latest_release_id(product_id: Any) -> Any:
    """The id of a product's latest enabled release, as a scalar subquery (``product_id``: a
    value or a column of an enclosing statement, as store/snapshot.py and store/activation.py
    use it)."""
    return (
        select(ProductRelease.id)
        .where(ProductRelease.product_id == product_id, ProductRelease.enabled.is_(True))
        .order_by(ProductRelease.release_date.desc(), ProductRelease.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def releases(
    session: Session,
    product_id: int,
    *,
    env: str | None,
    channel: str | None,
    released_by: datetime | None,
) -> Sequence[ProductRelease]:
    """A product's enabled releases, newest first: of one environment and channel if given,
    published at or before ``released_by`` if given."""
    query = select(ProductRelease).where(
        ProductRelease.product_id == product_id, ProductRelease.enabled.is_(True)
    )
    if env:
        query = query.where(ProductRelease.environment == env)
    if channel:
        query = query.where(ProductRelease.channel == channel)
    if released_by is not None:
        query = query.where(ProductRelease.release_date <= released_by)
    order = (ProductRelease.release_date.desc(), ProductRelease.id.desc())
    return session.scalars(query.order_by(*order)).all()


def latest_release(session: Session, product_id: int) -> ProductRelease | None:
    return session.scalars(
        select(ProductRelease).where(ProductRelease.id == latest_release_id(product_id))
    ).first()


def customer(session: Session, customer_id: int | None) -> Customer | None:
    return session.get(Customer, customer_id) if customer_id is not None else None


def customer_by_email(session: Session, company_id: int, email: str) -> Customer | None:
    return session.scalars(
        select(Customer).where(Customer.company_id == company_id, Customer.email == email)
    ).one_or_none()


# -- licenses ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LicenseScope:
    """Which licenses a caller may reach: its company and product, maybe narrowed further."""

    company_id: int
    product_id: int
    customer_id: int | None = None
    license_id: int | None = None
    pinned_id: int | None = None  # the request's own license_id

    def apply(self, statement: Any) -> Any:
        statement = statement.where(
            License.company_id == self.company_id, License.product_id == self.product_id
        )
        if self.customer_id is not None:
            statement = statement.where(License.customer_id == self.customer_id)
        for license_id in (self.license_id, self.pinned_id):
            if license_id is not None:
                statement = statement.where(License.id == license_id)
        return statement


def license_by_key(
    session: Session, scope: LicenseScope, key_lookup: str, *, lock: bool = False
) -> License | None:
    statement = scope.apply(select(License).where(License.key_lookup == key_lookup))
    if lock:
        statement = statement.with_for_update()
    result: License | None = session.scalars(statement).one_or_none()
    return result


def sub_licenses(session: Session, bundle: License, bundle_product: Product) -> Sequence[License]:
    """The sub-licenses of a bundle license (``core.keys.bundle_key_lookup``), in the bundle's
    product order."""
    if bundle_product.bundle_items is None or not bundle.key_lookup:
        return []
    lookups = [
        bundle_key_lookup(bundle.key_lookup, bundle_product.short_code, code)
        for code in bundle_product.bundle_items
    ]
    found = session.scalars(
        select(License).where(
            License.company_id == bundle.company_id, License.key_lookup.in_(lookups)
        )
    ).all()
    order = {lookup: i for i, lookup in enumerate(lookups)}
    return sorted(found, key=lambda row: order[row.key_lookup or ""])


def lock_license(session: Session, license_id: int) -> License:
    """Re-read a license under a row lock (PostgreSQL; SQLite's write transaction is already
    exclusive), so every seat decision sees the latest counters."""
    session.expire_all()
    return session.scalars(select(License).where(License.id == license_id).with_for_update()).one()


def trial_license(session: Session, product_id: int, hardware_id: str) -> License | None:
    return session.scalars(
        select(License).where(
            License.product_id == product_id, License.trial_hardware_id == hardware_id
        )
    ).one_or_none()


def license_users(session: Session, license_id: int) -> Sequence[LicenseUser]:
    return session.scalars(
        select(LicenseUser).where(LicenseUser.license_id == license_id).order_by(LicenseUser.id)
    ).all()


def licenses(
    session: Session, company_id: int, *, product_id: int | None = None, limit: int = 100
) -> Sequence[License]:
    statement = select(License).where(License.company_id == company_id)
    if product_id is not None:
        statement = statement.where(License.product_id == product_id)
    return session.scalars(statement.order_by(License.id).limit(limit)).all()


# -- devices -----------------------------------------------------------------------------------


def devices(session: Session, license_id: int) -> Sequence[Device]:
    return session.scalars(
        select(Device).where(Device.license_id == license_id).order_by(Device.id)
    ).all()


def floating_slots(session: Session, license_id: int) -> Sequence[tuple[FloatingSlot, Device]]:
    """A license's slot rows (held or not) with their devices."""
    rows = session.execute(
        select(FloatingSlot, Device)
        .join(Device, Device.id == FloatingSlot.device_id)
        .where(FloatingSlot.license_id == license_id)
        .order_by(FloatingSlot.taken_at)
    ).all()
    return [(slot, device) for slot, device in rows]


def consumption_events(
    session: Session, license_id: int, *, before: int | None, limit: int
) -> Sequence[ConsumptionEvent]:
    """A license's consumption reports, newest first, older than ``before`` (an id) if given."""
    query = select(ConsumptionEvent).where(ConsumptionEvent.license_id == license_id)
    if before is not None:
        query = query.where(ConsumptionEvent.id < before)
    return session.scalars(query.order_by(ConsumptionEvent.id.desc()).limit(limit)).all()


def licenses_by_ids(session: Session, ids: Sequence[int]) -> Sequence[License]:
    rows: list[License] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows.extend(session.scalars(select(License).where(License.id.in_(chunk))).all())
    rows.sort(key=lambda row: row.id)
    return rows


# -- QLM-style activation ----------------------------------------------------------------------


def product_in_company(session: Session, company_id: int, product_id: int) -> Product | None:
    found = session.get(Product, product_id)
    return found if found is not None and found.company_id == company_id else None


def license_in_company(session: Session, company_id: int, license_id: int) -> License | None:
    found = session.get(License, license_id)
    return found if found is not None and found.company_id == company_id else None


def license_by_key_in_company(session: Session, company_id: int, key_lookup: str) -> License | None:
    """Keys are unique per company, so a key alone names its product (QLM calls omit it)."""
    return session.scalars(
        select(License).where(License.company_id == company_id, License.key_lookup == key_lookup)
    ).one_or_none()


def companies_of_key(session: Session, key_lookup: str, limit: int = 2) -> Sequence[int]:
    """The companies that have a license with this key (keys are unique per company only)."""
    return session.scalars(
        select(License.company_id).where(License.key_lookup == key_lookup).limit(limit)
    ).all()


def organization_customers(session: Session, company_id: int) -> Sequence[Customer]:
    return session.scalars(
        select(Customer)
        .where(Customer.company_id == company_id, Customer.allow_organization_users.is_(True))
        .order_by(Customer.id)
    ).all()


def licenses_of_customers(
    session: Session,
    company_id: int,
    customer_ids: Sequence[int],
    product_ids: Sequence[int],
    *,
    only_customer_id: int | None = None,
    only_license_id: int | None = None,
) -> Sequence[License]:
    if not customer_ids or not product_ids:
        return []
    statement = select(License).where(
        License.company_id == company_id,
        License.customer_id.in_(customer_ids),
        License.product_id.in_(product_ids),
        License.key_lookup.is_not(None),
    )
    if only_customer_id is not None:
        statement = statement.where(License.customer_id == only_customer_id)
    if only_license_id is not None:
        statement = statement.where(License.id == only_license_id)
    return session.scalars(statement.order_by(License.id)).all()


LOOKUP_COLUMNS = {"orderid": License.order_store_id, "receiptid": License.receipt_id}


def licenses_by_field(
    session: Session, scope: LicenseScope, field: str, value: str
) -> Sequence[tuple[License, Customer | None]]:
    """Licenses whose ``field`` (``orderid`` or ``receiptid``) equals ``value``, with customers."""
    statement = scope.apply(
        select(License, Customer)
        .outerjoin(Customer, Customer.id == License.customer_id)
        .where(LOOKUP_COLUMNS[field] == value, License.key_lookup.is_not(None))
        .order_by(License.id)
    )
    return [(row[0], row[1]) for row in session.execute(statement).all()]


def latest_authorization_code(
    session: Session,
    company_id: int,
    *,
    email: str | None,
    hardware_id: str | None,
    product_id: int | None,
) -> AuthorizationCode | None:
    """The newest code for this e-mail (else this computer), under a row lock."""
    statement = select(AuthorizationCode).where(AuthorizationCode.company_id == company_id)
    if email is not None:
        statement = statement.where(AuthorizationCode.email == email)
    elif hardware_id is not None:
        statement = statement.where(AuthorizationCode.hardware_id == hardware_id)
    else:
        return None
    if product_id is not None:
        statement = statement.where(AuthorizationCode.product_id == product_id)
    statement = statement.order_by(AuthorizationCode.id.desc()).limit(1).with_for_update()
    return session.scalars(statement).first()


def expire_authorization_codes(
    session: Session, company_id: int, email: str, product_id: int, now: datetime
) -> None:
    """A new code replaces the pending ones of the same e-mail and product."""
    session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.company_id == company_id,
            AuthorizationCode.email == email,
            AuthorizationCode.product_id == product_id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
        .values(expires_at=now)
    )


def use_authorization_code(session: Session, code_id: int, now: datetime) -> bool:
    """Guarded single use: only one request can mark a pending code used."""
    result = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id, AuthorizationCode.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def count_failed_authorization_code(session: Session, code_id: int) -> None:
    session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id)
        .values(failed_attempts=AuthorizationCode.failed_attempts + 1)
    )


# -- single sign-on ----------------------------------------------------------------------------


def customer_account_by_code(
    session: Session, company_id: int, code: str
) -> CustomerAccount | None:
    return session.scalars(
        select(CustomerAccount).where(
            CustomerAccount.company_id == company_id, CustomerAccount.code == code
        )
    ).one_or_none()


def license_user_on_license(session: Session, license_id: int, email: str) -> LicenseUser | None:
    return session.scalars(
        select(LicenseUser).where(LicenseUser.license_id == license_id, LicenseUser.email == email)
    ).one_or_none()


USERS_PER_EMAIL = 100  # (the licenses one user may hold in one company: read at most this many)


def users_by_email(
    session: Session,
    company_id: int,
    email: str,
    *,
    product_id: int | None = None,
    customer_id: int | None = None,
    license_id: int | None = None,
    lock: bool = False,
) -> Sequence[tuple[LicenseUser, License]]:
    """The license-user rows of ``email`` in the company (of a product's, a customer's or one
    license's licenses when given), with their licenses, oldest first."""
    statement = (
        select(LicenseUser, License)
        .join(License, License.id == LicenseUser.license_id)
        .where(License.company_id == company_id, LicenseUser.email == email)
    )
    if product_id is not None:
        statement = statement.where(License.product_id == product_id)
    if customer_id is not None:
        statement = statement.where(License.customer_id == customer_id)
    if license_id is not None:
        statement = statement.where(License.id == license_id)
    statement = statement.order_by(License.id).limit(USERS_PER_EMAIL)
    if lock:
        statement = statement.with_for_update(of=LicenseUser)
    return [(user, license_) for user, license_ in session.execute(statement)]


def users_of_customer(
    session: Session, product_id: int, customer_id: int, *, license_id: int | None = None
) -> Sequence[tuple[LicenseUser, License]]:
    """The license users of the customer's licenses of a product, with their licenses."""
    statement = (
        select(LicenseUser, License)
        .join(License, License.id == LicenseUser.license_id)
        .where(License.product_id == product_id, License.customer_id == customer_id)
    )
    if license_id is not None:
        statement = statement.where(License.id == license_id)
    statement = statement.order_by(License.id, LicenseUser.id)
    return [(user, license_) for user, license_ in session.execute(statement)]


# -- rate limits -------------------------------------------------------------------------------


def rate_counters(session: Session, buckets: Sequence[str]) -> dict[str, RateLimitCounter]:
    rows = session.scalars(
        select(RateLimitCounter).where(RateLimitCounter.bucket.in_(list(buckets)))
    ).all()
    return {row.bucket: row for row in rows}


def count_failure(session: Session, bucket: str, window_start: datetime) -> None:
    """One more failure in ``bucket``'s window (a new window starts over at 1). One atomic
    upsert, so concurrent processes never lose a count."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(RateLimitCounter).values(
        bucket=bucket, window_start=window_start, failures=1
    )
    table = RateLimitCounter.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.bucket],
        set_={
            "failures": case((table.c.window_start == window_start, table.c.failures + 1), else_=1),
            "window_start": window_start,
        },
    )
    session.execute(statement)


def forget_rate_counters(session: Session, before: datetime) -> None:
    session.execute(delete(RateLimitCounter).where(RateLimitCounter.window_start < before))
