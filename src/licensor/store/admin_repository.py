"""SQL for the vendor side (management API and CLI). Every query is scoped to one company."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from licensor.store.models import (
    AdminToken,
    ApiKey,
    AuditEntry,
    BlacklistEntry,
    Customer,
    Device,
    License,
    LicensePolicy,
    LicenseUser,
    OAuthClient,
    Product,
    ProductRelease,
)

LICENSE_SORTS = {
    "id": License.id,
    "created_at": License.created_at,
    "validity_period": License.validity_period,
    "times_activated": License.times_activated,
}


@dataclass(frozen=True, slots=True)
class LicenseFilter:
    product_id: int | None = None
    customer_id: int | None = None
    enabled: bool | None = None
    order_id: str | None = None
    expires_before: datetime | None = None


def _literal(text: str) -> str:
    """``text`` for a LIKE pattern, its ``%`` and ``_`` matching themselves (escape ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def admin_token_by_hash(session: Session, token_hash: str) -> AdminToken | None:
    return session.scalars(
        select(AdminToken).where(AdminToken.token_hash == token_hash)
    ).one_or_none()


def admin_tokens(session: Session, company_id: int) -> Sequence[AdminToken]:
    return session.scalars(
        select(AdminToken).where(AdminToken.company_id == company_id).order_by(AdminToken.id)
    ).all()


def owned(session: Session, model: Any, company_id: int, object_id: int) -> Any:
    """An object by id, only if it belongs to the company (else ``None``: it does not exist)."""
    found = session.get(model, object_id)
    if found is None or getattr(found, "company_id", None) != company_id:
        return None
    return found


def device_of_company(session: Session, company_id: int, device_id: int) -> Device | None:
    return session.scalars(
        select(Device)
        .join(License, License.id == Device.license_id)
        .where(Device.id == device_id, License.company_id == company_id)
    ).one_or_none()


def license_user_of_company(session: Session, company_id: int, user_id: int) -> LicenseUser | None:
    return session.scalars(
        select(LicenseUser)
        .join(License, License.id == LicenseUser.license_id)
        .where(LicenseUser.id == user_id, License.company_id == company_id)
    ).one_or_none()


def license_page(
    session: Session,
    company_id: int,
    where: LicenseFilter,
    *,
    offset: int,
    limit: int,
    sort: str,
) -> tuple[Sequence[License], int]:
    statement = select(License).where(License.company_id == company_id)
    if where.product_id is not None:
        statement = statement.where(License.product_id == where.product_id)
    if where.customer_id is not None:
        statement = statement.where(License.customer_id == where.customer_id)
    if where.enabled is not None:
        statement = statement.where(License.enabled.is_(where.enabled))
    if where.order_id:
        statement = statement.where(License.order_store_id == where.order_id)
    if where.expires_before is not None:
        statement = statement.where(License.validity_period < where.expires_before)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    column = LICENSE_SORTS[sort.lstrip("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    rows = session.scalars(
        statement.order_by(order, License.id.asc()).offset(offset).limit(limit)
    ).all()
    return rows, int(total)


def products_by_id(session: Session, ids: set[int]) -> dict[int, Product]:
    if not ids:
        return {}
    return {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(ids))).all()}


def customers_by_id(session: Session, ids: set[int]) -> dict[int, Customer]:
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids))).all()}


def customer_page(
    session: Session, company_id: int, search: str | None, *, offset: int, limit: int
) -> tuple[Sequence[Customer], int]:
    statement = select(Customer).where(Customer.company_id == company_id)
    if search:
        pattern = f"%{_literal(search.lower())}%"
        statement = statement.where(
            or_(
                func.lower(Customer.email).like(pattern, escape="\\"),
                func.lower(Customer.last_name).like(pattern, escape="\\"),
                func.lower(Customer.company_name).like(pattern, escape="\\"),
            )
        )
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(statement.order_by(Customer.id).offset(offset).limit(limit)).all()
    return rows, int(total)


def blacklist(session: Session, company_id: int) -> Sequence[BlacklistEntry]:
    return session.scalars(
        select(BlacklistEntry)
        .where(BlacklistEntry.company_id == company_id)
        .order_by(BlacklistEntry.id)
    ).all()


def blacklist_entry(
    session: Session, company_id: int, hardware_id: str, product_code: str | None
) -> BlacklistEntry | None:
    """The entry for this hardware id: of one product by short code, else the company-wide one."""
    statement = select(BlacklistEntry).where(
        BlacklistEntry.company_id == company_id, BlacklistEntry.hardware_id == hardware_id
    )
    if product_code:
        statement = statement.join(Product, Product.id == BlacklistEntry.product_id).where(
            Product.short_code == product_code
        )
    else:
        statement = statement.where(BlacklistEntry.product_id.is_(None))
    return session.scalars(statement.limit(1)).first()


def api_keys(session: Session, company_id: int) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.company_id == company_id).order_by(ApiKey.id)
    ).all()


def oauth_clients(session: Session, company_id: int) -> Sequence[OAuthClient]:
    return session.scalars(
        select(OAuthClient).where(OAuthClient.company_id == company_id).order_by(OAuthClient.id)
    ).all()


def audit_page(
    session: Session,
    company_id: int,
    *,
    object_type: str | None,
    object_id: str | None,
    action: str | None,
    offset: int,
    limit: int,
) -> tuple[Sequence[AuditEntry], int]:
    statement = select(AuditEntry).where(AuditEntry.company_id == company_id)
    if object_type:
        statement = statement.where(AuditEntry.object_type == object_type)
    if object_id:
        statement = statement.where(AuditEntry.object_id == object_id)
    if action:
        prefix = _literal(action.rstrip("*")) + "%"
        statement = statement.where(AuditEntry.action.like(prefix, escape="\\"))
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows = session.scalars(
        statement.order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
    ).all()
    return rows, int(total)


def licenses_by_order(session: Session, company_id: int, order_id: str) -> Sequence[License]:
    return session.scalars(
        select(License)
        .where(License.company_id == company_id, License.order_store_id == order_id)
        .order_by(License.id)
    ).all()


def product_releases(session: Session, product_id: int) -> Sequence[ProductRelease]:
    return session.scalars(
        select(ProductRelease)
        .where(ProductRelease.product_id == product_id)
        .order_by(ProductRelease.release_date, ProductRelease.id)
    ).all()


def product_release(
    session: Session, product_id: int, version: str, environment: str
) -> ProductRelease | None:
    return session.scalars(
        select(ProductRelease).where(
            ProductRelease.product_id == product_id,
            ProductRelease.version == version,
            ProductRelease.environment == environment,
        )
    ).first()


def lock_product(session: Session, product_id: int) -> Product:
    """Re-read a product under a row lock: its JSON lists are read, changed and written back."""
    return session.scalars(
        select(Product)
        .where(Product.id == product_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def license_values_of_product(
    session: Session, product_id: int, column: Any
) -> list[tuple[int, Any]]:
    """``(license id, value of a JSON column)`` for every license of a product (JSON columns
    cannot be compared portably in SQL, so callers filter)."""
    rows = session.execute(
        select(License.id, column).where(License.product_id == product_id).order_by(License.id)
    ).all()
    return [(int(row[0]), row[1]) for row in rows]


def set_license_value(session: Session, license_id: int, column: Any, value: Any) -> None:
    session.execute(update(License).where(License.id == license_id).values({column: value}))


def license_policies(session: Session, product_id: int) -> Sequence[LicensePolicy]:
    return session.scalars(
        select(LicensePolicy)
        .where(LicensePolicy.product_id == product_id)
        .order_by(LicensePolicy.id)
    ).all()


def license_policy(session: Session, product_id: int, code: str) -> LicensePolicy | None:
    return session.scalars(
        select(LicensePolicy).where(
            LicensePolicy.product_id == product_id, LicensePolicy.code == code
        )
    ).one_or_none()


def default_license_policy(session: Session, product_id: int) -> LicensePolicy | None:
    return session.scalars(
        select(LicensePolicy).where(
            LicensePolicy.product_id == product_id, LicensePolicy.is_default.is_(True)
        )
    ).one_or_none()


def forget_policy(session: Session, policy_id: int) -> None:
    """Licenses issued from a deleted policy keep their terms, not the reference."""
    session.execute(update(License).where(License.policy_id == policy_id).values(policy_id=None))
