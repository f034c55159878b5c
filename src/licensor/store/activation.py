"""Prepared statements for the use cases on a license and a device -- activation,
deactivation and check (``services/seats.py``, ``activation.py``, ``check.py``): one statement
reads everything the decision and the answer need (``seat_rows``: the product, the license,
the device, the blacklist, the rate-limit counters, the customer and releases, an
Idempotency-Key's record, a license user, the API key), under the license's lock but for
checks, and a few write the outcome. Every case of these use cases reads and writes here.

Every statement is compiled once per dialect (SQLAlchemy Core: the same tables, types and bind
and result conversions as the ORM) and run on the DBAPI cursor with bound parameters only: an
ORM activation ran about eighteen statements in three transactions, each built, cache-keyed
and flushed anew, about 4 ms of CPU before the framework's share.

Rows come back as read-only views with the mapped classes' attribute names (plain namespaces:
nothing can be written through them). The writes are plain ``UPDATE``/``INSERT`` statements with
every column given (the ORM's Python-side defaults do not run on a DBAPI cursor); on PostgreSQL
all the writes of one activation or deactivation go in one statement (data-modifying CTEs, each
hanging on the guarded ``UPDATE``), since every round trip costs there.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol, cast

from sqlalchemy import (
    Boolean,
    Dialect,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    true,
    update,
    values,
)
from sqlalchemy import cast as cast_to
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ClauseElement

from licensor.store import native, repository
from licensor.store.models import (
    ApiKey,
    AuditEntry,
    BlacklistEntry,
    Company,
    ConsumptionEvent,
    Customer,
    Device,
    DeviceVariable,
    FloatingSlot,
    IdempotencyRecord,
    License,
    LicenseEvent,
    LicenseRelease,
    LicenseUser,
    OAuthClient,
    OfflineRequest,
    Product,
    ProductRelease,
    RateLimitCounter,
)


class DbapiConnection(Protocol):
    """What the statements need of a DBAPI connection (sqlite3 or psycopg)."""

    def cursor(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Credential:
    api_key: ApiKey
    oauth_required: bool


@dataclass(frozen=True, slots=True)
class SeatRows:
    """The rows of one activation or deactivation; ``None`` where an outer join found nothing.
    ``customer``, ``release``, ``app_release_date`` and ``idempotency`` are read for
    activations only, ``user`` for user-based licenses only."""

    product: Product
    license: License
    device: Device | None
    user: LicenseUser | None
    blacklisted: bool
    customer: Customer | None
    release: ProductRelease | None  # latest enabled release (rendered in the answer)
    app_release_date: datetime | None  # release date of the request's app_ver, if known
    idempotency: IdempotencyRecord | None  # the record of the request's Idempotency-Key
    rate_counters: dict[str, tuple[datetime, int]]  # bucket -> (window start, failures)
    credential: Credential | None = None  # when asked for (``seat_rows(api_key=...)``)
    slot: FloatingSlot | None = None  # the device's floating slot (checks, release, borrow)
    # checks: a digest of the row as read, but for the device's "last seen" time and the
    # counters: two reads with the same fingerprint found the same data (the answer cache of
    # api/v4/check.py)
    fingerprint: bytes = b""


@dataclass(frozen=True, slots=True)
class ProductRows:
    """What names a refusal when no seat rows were found."""

    product: Product | None
    rate_counters: dict[str, tuple[datetime, int]]


def _view(values: dict[str, Any]) -> Any:
    # A read-only stand-in with the mapped class's attribute names (see the module docstring).
    return SimpleNamespace(**values)


class _Prepared:
    """A statement compiled once for a dialect, with its bind and result conversions (through
    the column types' public ``bind_processor`` / ``result_processor``)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, names: Sequence[str]) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = list(compiled.positiontup or [])
        if native.uses_native(dialect):  # (run on a RawCursor: see store/native.py)
            self.sql, self.order = native.native_placeholders(self.sql)
            self.positional = True
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        self.bind_processors = {name: p for name, p in processors.items() if p is not None}
        fixed = dict(compiled.construct_params(dict.fromkeys(names, None)) or {})
        for name in names:
            fixed.pop(name, None)
        self.fixed = {name: self._bound(name, value) for name, value in fixed.items()}
        columns: list[Any] = (
            list(statement.selected_columns) if isinstance(statement, Select) else []
        )
        result_processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.width = len(columns)
        self.ignored: list[int] = []  # (columns a fingerprint leaves out: ``seat_rows``)
        self.converting = [(i, p) for i, p in enumerate(result_processors) if p is not None]

    def _bound(self, name: str, value: Any) -> Any:
        processor = self.bind_processors.get(name)
        # (None too: a JSON column stores it as 'null', as the ORM does)
        return value if processor is None else processor(value)

    def parameters(self, values: dict[str, Any]) -> Any:
        merged = dict(self.fixed)
        for name, value in values.items():
            merged[name] = self._bound(name, value)
        return [merged[name] for name in self.order] if self.positional else merged

    def convert(self, raw: Sequence[Any]) -> list[Any]:
        row = list(raw)
        assert len(row) == self.width
        for index, processor in self.converting:
            value = row[index]
            if value is not None:
                row[index] = processor(value)
        return row

    def execute(self, cursor: Any, values: dict[str, Any]) -> Any:
        cursor.execute(self.sql, self.parameters(values))
        return cursor


def _attributes(model: type[Any]) -> list[str]:
    return [attr.key for attr in inspect(model).column_attrs]


# -- the credential ------------------------------------------------------------------------


def _credential_statement() -> ClauseElement:
    return (
        select(
            *(getattr(ApiKey, key) for key in _attributes(ApiKey)),
            Company.oauth_required,
        )
        .join(Company, Company.id == ApiKey.company_id)
        .where(ApiKey.api_key == bindparam("api_key"))
    )


# -- one read under the license's lock -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeatRead:
    """Which read of a license and a device: for which use case, how the license is found and
    which conditions narrow it (each variant is one statement, compiled once per dialect when
    first used)."""

    use: str  # "activate", "deactivate", "check", "consume" or "float" (release, borrow)
    # the API key's row too, of the company given (a key the process has seen: its company)
    with_credential: bool
    by_user: bool  # by a license user's e-mail (user-based products), else by license key
    customer_scoped: bool  # an OAuth client limited to one customer
    license_scoped: bool  # an OAuth client limited to one license
    pinned: bool  # the request's own ``license_id``
    # the license's id only, locked: PostgreSQL's first statement of a seat read (``seat_rows``)
    lock_only: bool = False

    @property
    def answers(self) -> bool:
        """Whether the answer is a license (its customer and latest release are read)."""
        return self.use in ("activate", "check")

    @property
    def with_slot(self) -> bool:
        """Whether the device's floating slot is read (``floating_slots``)."""
        return self.use in ("check", "float")

    @property
    def idempotent(self) -> bool:
        """Whether the request may carry an Idempotency-Key (its record is read)."""
        return self.use in ("activate", "consume")


def _seat_statement(read: SeatRead) -> tuple[ClauseElement, list[tuple[str, list[str]]], list[str]]:
    p, lic = aliased(Product, name="p"), aliased(License, name="l")
    k = aliased(ApiKey, name="k")
    d, c = aliased(Device, name="d"), aliased(Customer, name="c")
    r = aliased(ProductRelease, name="r")
    u = aliased(LicenseUser, name="u")
    i = aliased(IdempotencyRecord, name="i")
    rc1 = aliased(RateLimitCounter, name="rc1")
    rc2 = aliased(RateLimitCounter, name="rc2")
    fs = aliased(FloatingSlot, name="fs")
    activating = read.use == "activate"
    entities: list[tuple[str, type[Any], Any]] = [("p", Product, p), ("l", License, lic)]
    entities.append(("d", Device, d))
    if read.by_user:
        entities.append(("u", LicenseUser, u))
    if read.with_credential:
        entities.append(("k", ApiKey, k))
    if read.answers:
        entities += [("c", Customer, c), ("r", ProductRelease, r)]
    if read.idempotent:
        entities.append(("i", IdempotencyRecord, i))
    if read.with_slot:
        entities.append(("s", FloatingSlot, fs))
    columns: list[Any] = []
    layout: list[tuple[str, list[str]]] = []
    for prefix, model, alias in entities:
        names = _attributes(model)  # (the primary key first: a missing outer-joined row)
        columns += [getattr(alias, key).label(f"{prefix}__{key}") for key in names]
        layout.append((prefix, names))
    company_id: BindParameter[int] = bindparam("company_id")
    hardware_id: BindParameter[str] = bindparam("hardware_id")
    blacklisted = exists().where(
        BlacklistEntry.company_id == company_id,
        BlacklistEntry.hardware_id == hardware_id,
        or_(BlacklistEntry.product_id.is_(None), BlacklistEntry.product_id == p.id),
    )
    extras: list[Any] = [
        blacklisted.label("blacklisted"),
        rc1.bucket.label("rc1_bucket"),
        rc1.window_start.label("rc1_start"),
        rc1.failures.label("rc1_failures"),
        rc2.bucket.label("rc2_bucket"),
        rc2.window_start.label("rc2_start"),
        rc2.failures.label("rc2_failures"),
    ]
    if activating:
        # the first-dated release of this version (any environment)
        app_release = (
            select(ProductRelease.release_date)
            .where(
                ProductRelease.product_id == p.id,
                ProductRelease.version == bindparam("app_ver"),
            )
            .order_by(ProductRelease.release_date)
            .limit(1)
            .scalar_subquery()
        )
        extras.append(app_release.label("app_release_date"))
    if read.with_credential:
        extras.append(Company.oauth_required.label("oauth_required"))
    conditions = [lic.company_id == company_id, lic.product_id == p.id]
    if not read.by_user:
        conditions.append(lic.key_lookup == bindparam("key_lookup"))
    if read.customer_scoped:
        conditions.append(lic.customer_id == bindparam("scope_customer_id"))
    if read.license_scoped:
        conditions.append(lic.id == bindparam("scope_license_id"))
    if read.pinned:
        conditions.append(lic.id == bindparam("pinned_id"))
    product = and_(p.company_id == company_id, p.short_code == bindparam("product"))
    if read.lock_only:
        lock = select(lic.id).select_from(p).join(lic, and_(*conditions)).where(product)
        if read.by_user:
            lock = lock.join(u, and_(u.license_id == lic.id, u.email == bindparam("email")))
            lock = lock.order_by(lic.id).limit(1)
        return lock.with_for_update(of=lic), [], []
    statement = select(*columns, *extras).select_from(p).join(lic, and_(*conditions))
    statement = statement.where(product)
    if read.with_credential:
        # the API key (of the company it belonged to on an earlier request) and its company
        statement = statement.join(
            k, and_(k.api_key == bindparam("api_key"), k.company_id == company_id)
        ).join(Company, Company.id == company_id)
    if read.by_user:
        # the user's first license (by id) in scope
        statement = statement.join(
            u, and_(u.license_id == lic.id, u.email == bindparam("email"))
        ).order_by(lic.id)
    statement = (
        statement.outerjoin(d, and_(d.license_id == lic.id, d.hardware_id == hardware_id))
        .outerjoin(rc1, rc1.bucket == bindparam("client_bucket"))
        .outerjoin(rc2, rc2.bucket == bindparam("identity_bucket"))
    )
    if read.answers:
        latest_release = repository.latest_release_id(p.id)
        statement = statement.outerjoin(c, c.id == lic.customer_id).outerjoin(
            r, r.id == latest_release
        )
    if read.idempotent:
        statement = statement.outerjoin(
            i, and_(i.company_id == company_id, i.key == bindparam("idempotency_key"))
        )
    if read.with_slot:
        statement = statement.outerjoin(fs, and_(fs.device_id == d.id, fs.feature == ""))
    if read.by_user:
        statement = statement.limit(1)
    if read.use == "check":
        return statement, layout, [e.name for e in extras]  # (a read: no lock)
    # PostgreSQL: the license row stays locked until the transaction ends, so every seat
    # decision sees the latest counters (SQLite: the write transaction is already exclusive).
    return statement.with_for_update(of=lic), layout, [e.name for e in extras]


def _seat_parameters(read: SeatRead) -> list[str]:
    names = ["company_id", "product"]
    if not read.lock_only:
        names += ["hardware_id", "client_bucket", "identity_bucket"]
    names += ["email"] if read.by_user else ["key_lookup"]
    if read.use == "activate" and not read.lock_only:
        names.append("app_ver")
    if read.idempotent and not read.lock_only:
        names.append("idempotency_key")
    if read.with_credential and not read.lock_only:
        names.append("api_key")
    if read.customer_scoped:
        names.append("scope_customer_id")
    if read.license_scoped:
        names.append("scope_license_id")
    if read.pinned:
        names.append("pinned_id")
    return names


def _product_statement() -> ClauseElement:
    """What names a refusal when the seat read found nothing: the product (if any) and the
    request's rate-limit counters, in one row whatever exists."""
    one = select(literal(1).label("one")).subquery("one")
    p = aliased(Product, name="p")
    rc1 = aliased(RateLimitCounter, name="rc1")
    rc2 = aliased(RateLimitCounter, name="rc2")
    return (
        select(
            *(getattr(p, key).label(f"p__{key}") for key in _attributes(Product)),
            rc1.bucket,
            rc1.window_start,
            rc1.failures,
            rc2.bucket,
            rc2.window_start,
            rc2.failures,
        )
        .select_from(one)
        .outerjoin(
            p,
            and_(p.company_id == bindparam("company_id"), p.short_code == bindparam("product")),
        )
        .outerjoin(rc1, rc1.bucket == bindparam("client_bucket"))
        .outerjoin(rc2, rc2.bucket == bindparam("identity_bucket"))
    )


# -- writes --------------------------------------------------------------------------------


def _insert_all(model: type[Any], *, returning_id: bool = False) -> tuple[ClauseElement, list[str]]:
    """INSERT with every column but the id bound as ``b_<column>``."""
    table = cast(Table, model.__table__)
    names = [c.name for c in table.columns if c.name != "id"]
    statement: Any = insert_into(table).values(
        {name: bindparam("b_" + name, type_=table.c[name].type) for name in names}
    )
    if returning_id:
        statement = statement.returning(table.c.id)
    return statement, ["b_" + name for name in names]


def _take_seat_statement(limited: bool) -> ClauseElement:
    # The guarded increment (never past max_activations), with the license's other new values.
    statement = (
        update(License)
        .where(License.id == bindparam("b_id"))
        .values(
            times_activated=License.times_activated + 1,
            transfer_count=bindparam("b_transfer_count"),
            last_deactivated_hardware_id=None,
            validity_period=bindparam("b_validity_period"),
            first_activated_at=bindparam("b_first_activated_at"),
            updated_at=bindparam("b_updated_at"),
        )
    )
    if limited:
        statement = statement.where(License.times_activated < License.max_activations)
    return statement


_TAKE_SEAT_PARAMETERS = (
    "b_id",
    "b_transfer_count",
    "b_validity_period",
    "b_first_activated_at",
    "b_updated_at",
)


def _free_seat_statement() -> ClauseElement:
    # the seat freed (never below zero) and the last deactivated device, in one UPDATE
    return (
        update(License)
        .where(License.id == bindparam("b_id"))
        .values(
            times_activated=case(
                (License.times_activated > 0, License.times_activated - 1),
                else_=License.times_activated,
            ),
            last_deactivated_hardware_id=bindparam("b_hardware_id"),
            updated_at=bindparam("b_updated_at"),
        )
    )


def _release_device_statement() -> ClauseElement:
    return (
        update(Device)
        .where(Device.id == bindparam("b_id"), Device.active.is_(True))
        .values(active=False, deactivated_at=bindparam("b_deactivated_at"))
    )


# The columns a re-activation of a known device sets (licensing._activate_resolved).
_REACTIVATED = (
    "license_user_id",
    "is_vm",
    "vm_info",
    "os_ver",
    "hostname",
    "ip",
    "ip_local",
    "app_ver",
    "sdk_ver",
    "mac_address",
    "computer_type",
    "affiliate_id",
    "user_data",
    "last_activated_at",
    "deactivated_at",
    "activation_count",
    "license_signature",
)


def _reactivate_device_statement() -> ClauseElement:
    # Guarded: only a device that is (still) inactive.
    return (
        update(Device)
        .where(Device.id == bindparam("b_id"), Device.active.is_(False))
        .values(active=True, **{name: bindparam("b_" + name) for name in _REACTIVATED})
    )


def _refresh_device_statement() -> ClauseElement:
    # A device that holds its seat activated again (QLM's reactivation): no seat taken.
    return (
        update(Device)
        .where(Device.id == bindparam("b_id"))
        .values(**{name: bindparam("b_" + name) for name in _REACTIVATED})
    )


def _user_activations_statement() -> ClauseElement:
    # a license user's activations, + or - 1 (never below zero)
    total = LicenseUser.total_activations + bindparam("b_delta", type_=Integer)
    return (
        update(LicenseUser)
        .where(LicenseUser.id == bindparam("b_id"))
        .values(total_activations=case((total < 0, 0), else_=total))
    )


def _set_variable_statement() -> ClauseElement:
    return (
        update(DeviceVariable)
        .where(
            DeviceVariable.device_id == bindparam("b_device_id"),
            DeviceVariable.variable == bindparam("b_variable"),
        )
        .values(value=bindparam("b_value"), created_at=bindparam("b_created_at"))
    )


def _release_count_statement(windowed: bool) -> ClauseElement:
    statement = (
        select(func.count())
        .select_from(LicenseRelease)
        .where(LicenseRelease.license_id == bindparam("license_id"))
    )
    if windowed:
        statement = statement.where(LicenseRelease.released_at >= bindparam("since"))
    return statement


def _slots_held_statement() -> ClauseElement:
    # the slots of a license held at :now, but the device :other's (0: none is left out)
    now: BindParameter[datetime] = bindparam("now", type_=FloatingSlot.expires_at.type)
    return (
        select(func.count())
        .select_from(FloatingSlot)
        .where(
            FloatingSlot.license_id == bindparam("license_id"),
            FloatingSlot.feature == bindparam("feature"),
            FloatingSlot.device_id != bindparam("other"),
            or_(FloatingSlot.expires_at > now, FloatingSlot.borrowed_until > now),
        )
    )


_SLOT_COLUMNS = [
    "license_id",
    "device_id",
    "feature",
    "taken_at",
    "refreshed_at",
    "expires_at",
    "borrowed_until",
]
_SLOT_PARAMETERS = ["b_" + name for name in _SLOT_COLUMNS]


def _keep_slot_statement(dialect: Dialect) -> ClauseElement:
    # a device's slot row written again: refreshed, taken again, borrowed (a plain UPDATE: on
    # PostgreSQL an INSERT ... ON CONFLICT fires the statement's INSERT trigger -- a change
    # notification to every server process -- even when it updates)
    table = cast(Table, FloatingSlot.__table__)
    return (
        update(table)
        .where(
            table.c.device_id == bindparam("b_device_id", type_=table.c.device_id.type),
            table.c.feature == bindparam("b_feature", type_=table.c.feature.type),
        )
        .values(
            {
                name: bindparam("b_" + name, type_=table.c[name].type)
                for name in _SLOT_COLUMNS
                if name not in ("device_id", "feature")
            }
        )
    )


def _count_consumption_statement() -> ClauseElement:
    # (the license row is locked by the seat read: the total was decided on its latest value)
    return (
        update(License)
        .where(License.id == bindparam("b_id"))
        .values(
            total_consumptions=bindparam("b_total_consumptions"),
            consumption_counted_at=bindparam("b_consumption_counted_at"),
            updated_at=bindparam("b_updated_at"),
        )
    )


def _offline_taken_statement() -> ClauseElement:
    # a request file of this request id and device, taken on any of the company's licenses
    return (
        select(func.count())
        .select_from(OfflineRequest)
        .join(License, License.id == OfflineRequest.license_id)
        .where(
            License.company_id == bindparam("company_id"),
            OfflineRequest.request_id == bindparam("request_id"),
            OfflineRequest.hardware_id == bindparam("hardware_id"),
        )
    )


def _take_offline_statement(dialect: Dialect) -> ClauseElement:
    # recorded once: the unique (license_id, request_id) decides between concurrent copies
    insert = postgresql_insert if dialect.name == "postgresql" else sqlite_insert
    table = cast(Table, OfflineRequest.__table__)
    names = [c.name for c in table.columns if c.name != "id"]
    return (
        insert(table)
        .values({name: bindparam("b_" + name, type_=table.c[name].type) for name in names})
        .on_conflict_do_nothing(index_elements=["license_id", "request_id"])
        .returning(table.c.id)
    )


_OFFLINE_REQUEST_PARAMETERS = [
    "b_" + c.name for c in cast(Table, OfflineRequest.__table__).columns if c.name != "id"
]


def _forget_idempotency_statement() -> ClauseElement:
    return delete(IdempotencyRecord).where(IdempotencyRecord.id == bindparam("b_id"))


def _variables_statement() -> ClauseElement:
    return (
        select(*(getattr(DeviceVariable, key) for key in _attributes(DeviceVariable)))
        .where(DeviceVariable.device_id == bindparam("device_id"))
        .order_by(DeviceVariable.variable)
    )


def _binds(table: Table, prefix: str, names: Sequence[str]) -> list[Any]:
    return [bindparam(prefix + name, type_=table.c[name].type) for name in names]


def _activation_cte(known: bool) -> tuple[ClauseElement, list[str]]:
    """take the seat; insert the device (or re-activate the ``known`` one); its events (one
    activation, then a transfer when ``b_events`` is 2) and its audit row -- each step only if
    the one before wrote a row. Returns the device's id (no row: a guard refused)."""
    licenses = cast(Table, License.__table__)
    devices = cast(Table, Device.__table__)
    events = cast(Table, LicenseEvent.__table__)
    audit_log = cast(Table, AuditEntry.__table__)
    seat = (
        update(licenses)
        .where(
            licenses.c.id == bindparam("b_id", type_=licenses.c.id.type),
            or_(
                bindparam("b_unlimited", type_=Boolean),
                licenses.c.times_activated < licenses.c.max_activations,
            ),
        )
        .values(
            times_activated=licenses.c.times_activated + 1,
            transfer_count=bindparam("b_transfer_count", type_=Integer),
            last_deactivated_hardware_id=None,
            validity_period=bindparam("b_validity_period", type_=licenses.c.validity_period.type),
            first_activated_at=bindparam(
                "b_first_activated_at", type_=licenses.c.first_activated_at.type
            ),
            updated_at=bindparam("b_updated_at", type_=licenses.c.updated_at.type),
        )
        .returning(licenses.c.id)
        .cte("seat")
    )
    names = ["b_id", "b_unlimited", "b_transfer_count", "b_validity_period"]
    names += ["b_first_activated_at", "b_updated_at"]
    device: Any
    if known:
        device = (
            update(devices)
            .where(
                devices.c.id == bindparam("d_id", type_=devices.c.id.type),
                devices.c.active.is_(False),
                exists(select(seat.c.id)),
            )
            .values(
                active=True,
                **{
                    name: bindparam("d_" + name, type_=devices.c[name].type)
                    for name in _REACTIVATED
                },
            )
        )
        names += ["d_id", *("d_" + name for name in _REACTIVATED)]
    else:
        columns = [c.name for c in devices.columns if c.name != "id"]
        device = insert_into(devices).from_select(
            columns, select(*_binds(devices, "d_", columns)).select_from(seat)
        )
        names += ["d_" + name for name in columns]
    device = device.returning(devices.c.id).cte("dev")
    kinds = values(column("event", String), column("n", Integer), name="e").data(
        [("activation", 1), ("transfer", 2)]
    )
    new_events = insert_into(events).from_select(
        ["license_id", "device_id", "hardware_id", "event", "created_at"],
        select(
            bindparam("b_id", type_=events.c.license_id.type),
            device.c.id,
            bindparam("e_hardware_id", type_=events.c.hardware_id.type),
            kinds.c.event,
            bindparam("e_created_at", type_=events.c.created_at.type),
        )
        .select_from(device.join(kinds, true()))
        .where(kinds.c.n <= bindparam("b_events", type_=Integer))
        .order_by(kinds.c.n),
    )
    names += ["e_hardware_id", "e_created_at", "b_events"]
    audited = [c.name for c in audit_log.columns if c.name not in ("id", "object_id")]
    new_audit = insert_into(audit_log).from_select(
        [*audited, "object_id"],
        select(*_binds(audit_log, "a_", audited), cast_to(device.c.id, String)).select_from(device),
    )
    names += ["a_" + name for name in audited]
    statement = select(device.c.id).add_cte(new_events.cte("ev"), new_audit.cte("au"))
    return statement, names


def _deactivation_cte() -> tuple[ClauseElement, list[str]]:
    """release the device (guarded: still active); free the seat and remember the device;
    the deactivation event, the release and the audit row -- each only if the device was
    released. Returns the device's id (no row: it was not active)."""
    licenses = cast(Table, License.__table__)
    devices = cast(Table, Device.__table__)
    events = cast(Table, LicenseEvent.__table__)
    releases = cast(Table, LicenseRelease.__table__)
    audit_log = cast(Table, AuditEntry.__table__)
    released = (
        update(devices)
        .where(
            devices.c.id == bindparam("d_id", type_=devices.c.id.type), devices.c.active.is_(True)
        )
        .values(
            active=False,
            deactivated_at=bindparam("d_deactivated_at", type_=devices.c.deactivated_at.type),
        )
        .returning(devices.c.id)
        .cte("rel")
    )
    freed = (
        update(licenses)
        .where(
            licenses.c.id == bindparam("b_id", type_=licenses.c.id.type),
            exists(select(released.c.id)),
        )
        .values(
            times_activated=case(
                (licenses.c.times_activated > 0, licenses.c.times_activated - 1),
                else_=licenses.c.times_activated,
            ),
            last_deactivated_hardware_id=bindparam(
                "b_hardware_id", type_=licenses.c.last_deactivated_hardware_id.type
            ),
            updated_at=bindparam("b_updated_at", type_=licenses.c.updated_at.type),
        )
    )
    names = ["d_id", "d_deactivated_at", "b_id", "b_hardware_id", "b_updated_at"]
    rows: list[Any] = []
    for table, prefix in ((events, "e_"), (releases, "r_"), (audit_log, "a_")):
        columns = [c.name for c in table.columns if c.name != "id"]
        rows.append(
            insert_into(table).from_select(
                columns, select(*_binds(table, prefix, columns)).select_from(released)
            )
        )
        names += [prefix + name for name in columns]
    statement = select(released.c.id).add_cte(
        freed.cte("fs"), *(row.cte(f"w{i}") for i, row in enumerate(rows))
    )
    return statement, names


class _Statements:
    """Every statement of this module, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.credential = _Prepared(_credential_statement(), dialect, ["api_key"])
        self.credential_names = _attributes(ApiKey)
        self.oauth_client_names = _attributes(OAuthClient)
        self.oauth_client = _Prepared(
            select(*(getattr(OAuthClient, key) for key in self.oauth_client_names)).where(
                OAuthClient.client_id == bindparam("client_id")
            ),
            dialect,
            ["client_id"],
        )
        self.dialect = dialect
        self._reads: dict[SeatRead, tuple[_Prepared, list[tuple[str, list[str]]], list[str]]]
        self._reads = {}
        self.product = _Prepared(
            _product_statement(),
            dialect,
            ["company_id", "product", "client_bucket", "identity_bucket"],
        )
        self.product_names = _attributes(Product)
        self.refresh_device = _Prepared(
            _refresh_device_statement(), dialect, ["b_id", *("b_" + n for n in _REACTIVATED)]
        )
        self.user_activations = _Prepared(
            _user_activations_statement(), dialect, ["b_id", "b_delta"]
        )
        self.set_variable = _Prepared(
            _set_variable_statement(),
            dialect,
            ["b_device_id", "b_variable", "b_value", "b_created_at"],
        )
        self.release_count = {
            windowed: _Prepared(
                _release_count_statement(windowed),
                dialect,
                ["license_id", *(["since"] if windowed else [])],
            )
            for windowed in (False, True)
        }
        self.forget_idempotency = _Prepared(_forget_idempotency_statement(), dialect, ["b_id"])
        self.offline_taken = _Prepared(
            _offline_taken_statement(), dialect, ["company_id", "request_id", "hardware_id"]
        )
        self.take_offline = _Prepared(
            _take_offline_statement(dialect), dialect, _OFFLINE_REQUEST_PARAMETERS
        )
        self.take_seat = {
            limited: _Prepared(_take_seat_statement(limited), dialect, _TAKE_SEAT_PARAMETERS)
            for limited in (True, False)
        }
        self.free_seat = _Prepared(
            _free_seat_statement(), dialect, ["b_id", "b_hardware_id", "b_updated_at"]
        )
        self.release_device = _Prepared(
            _release_device_statement(), dialect, ["b_id", "b_deactivated_at"]
        )
        self.reactivate_device = _Prepared(
            _reactivate_device_statement(),
            dialect,
            ["b_id", *("b_" + name for name in _REACTIVATED)],
        )
        self.count_consumption = _Prepared(
            _count_consumption_statement(),
            dialect,
            ["b_id", "b_total_consumptions", "b_consumption_counted_at", "b_updated_at"],
        )
        self.count_feature_consumption = _Prepared(
            update(License)
            .where(License.id == bindparam("b_id"))
            .values(features=bindparam("b_features"), updated_at=bindparam("b_updated_at")),
            dialect,
            ["b_id", "b_features", "b_updated_at"],
        )
        self.lock_license = _Prepared(
            select(License.id).where(License.id == bindparam("id")).with_for_update(),
            dialect,
            ["id"],
        )
        self.slot = _Prepared(
            select(*(getattr(FloatingSlot, k) for k in _attributes(FloatingSlot))).where(
                FloatingSlot.device_id == bindparam("device_id"),
                FloatingSlot.feature == bindparam("feature"),
            ),
            dialect,
            ["device_id", "feature"],
        )
        self.slot_names = _attributes(FloatingSlot)
        self.slots_held = _Prepared(
            _slots_held_statement(), dialect, ["license_id", "feature", "now", "other"]
        )
        self.keep_slot = _Prepared(_keep_slot_statement(dialect), dialect, _SLOT_PARAMETERS)
        statement, names = _insert_all(FloatingSlot)
        self.take_slot = _Prepared(statement, dialect, names)
        self.free_slot = _Prepared(
            delete(FloatingSlot)
            .where(
                FloatingSlot.device_id == bindparam("device_id"),
                FloatingSlot.feature == bindparam("feature"),
            )
            .returning(FloatingSlot.id),
            dialect,
            ["device_id", "feature"],
        )
        self.free_slots = _Prepared(
            delete(FloatingSlot).where(FloatingSlot.device_id == bindparam("device_id")),
            dialect,
            ["device_id"],
        )
        self.variables = _Prepared(_variables_statement(), dialect, ["device_id"])
        self.variable_names = _attributes(DeviceVariable)
        self.inserts: dict[type[Any], _Prepared] = {}
        for model in (
            Device,
            LicenseEvent,
            AuditEntry,
            LicenseRelease,
            IdempotencyRecord,
            DeviceVariable,
            ConsumptionEvent,
        ):
            statement, names = _insert_all(model, returning_id=model is Device)
            self.inserts[model] = _Prepared(statement, dialect, names)
        # PostgreSQL: the writes of one activation or deactivation in one statement (one
        # round trip instead of four or five; each costs ~35 us of this process's CPU and
        # ~75 us of wall time here), data-modifying CTEs that all hang on the guarded UPDATE.
        self.one_statement = dialect.name == "postgresql"
        if self.one_statement:
            self.activation_cte = {
                known: _Prepared(statement, dialect, names)
                for known in (False, True)
                for statement, names in [_activation_cte(known)]
            }
            statement, names = _deactivation_cte()
            self.deactivation_cte = _Prepared(statement, dialect, names)

    def read(self, read: SeatRead) -> tuple[_Prepared, list[tuple[str, list[str]]], list[str]]:
        found = self._reads.get(read)
        if found is None:
            statement, layout, extras = _seat_statement(read)
            prepared = _Prepared(statement, self.dialect, _seat_parameters(read))
            names = [column.name for column in statement.selected_columns]  # type: ignore[attr-defined]
            prepared.ignored = [
                index
                for index, name in enumerate(names)
                if name == "d__last_check_at" or name.startswith("rc")
            ]
            found = (prepared, layout, extras)
            self._reads[read] = found
        return found


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    found = _STATEMENTS.get(dialect.name)
    if found is None:
        found = _STATEMENTS[dialect.name] = _Statements(dialect)
    return found


@contextmanager
def _cursor(connection: DbapiConnection, dialect: Dialect) -> Iterator[Any]:
    cursor = native.raw_cursor(connection) if native.uses_native(dialect) else connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


# -- the public functions ------------------------------------------------------------------


def oauth_client(
    connection: DbapiConnection, dialect: Dialect, client_id: str
) -> OAuthClient | None:
    """The OAuth client of ``client_id`` (a read-only view), or ``None`` (offline request
    files in OAuth mode name it)."""
    prepared = _statements(dialect)
    with _cursor(connection, dialect) as cursor:
        raw = prepared.oauth_client.execute(cursor, {"client_id": client_id}).fetchone()
    if raw is None:
        return None
    row = prepared.oauth_client.convert(raw)
    return cast(OAuthClient, _view(dict(zip(prepared.oauth_client_names, row, strict=True))))


def credential(connection: DbapiConnection, dialect: Dialect, api_key: str) -> Credential | None:
    """The API key (with its company's ``oauth_required``), or ``None``."""
    prepared = _statements(dialect)
    with _cursor(connection, dialect) as cursor:
        raw = prepared.credential.execute(cursor, {"api_key": api_key}).fetchone()
    if raw is None:
        return None
    row = prepared.credential.convert(raw)
    names = prepared.credential_names
    return Credential(
        api_key=_view(dict(zip(names, row[: len(names)], strict=True))),
        oauth_required=bool(row[len(names)]),
    )


def _split(buckets: Sequence[str]) -> tuple[str | None, str | None]:
    client_bucket = identity_bucket = None
    for bucket in buckets:
        if bucket.startswith("client:"):
            client_bucket = bucket
        else:
            identity_bucket = bucket
    return client_bucket, identity_bucket


def _counters(raw: Sequence[Any]) -> dict[str, tuple[datetime, int]]:
    """bucket -> (window start, failures) of (bucket, start, failures, bucket, ...)."""
    counters = {}
    for index in range(0, len(raw), 3):
        bucket, window_start, failures = raw[index : index + 3]
        if bucket is not None:
            counters[bucket] = (window_start, int(failures))
    return counters


def seat_rows(
    connection: DbapiConnection,
    dialect: Dialect,
    *,
    use: str,
    company_id: int,
    product: str,
    hardware_id: str,
    key_lookup: str | None = None,
    email: str | None = None,
    scope_customer_id: int | None = None,
    scope_license_id: int | None = None,
    pinned_id: int | None = None,
    app_ver: str = "",
    idempotency_key: str | None = None,
    buckets: Sequence[str] = (),
    api_key: str | None = None,
) -> SeatRows | None:
    """The rows a ``use`` ("activate", "deactivate", "check", "consume") decides on -- the license row
    locked (PostgreSQL) but for checks: the license of ``key_lookup``, or the first in scope
    of the license user ``email``; with ``api_key`` that key's row (of ``company_id``) and
    its company's ``oauth_required``.
    ``None`` when the product, the license or the API key does not match (``product_rows``
    then tells which)."""
    read = SeatRead(
        use=use,
        with_credential=api_key is not None,
        by_user=email is not None,
        customer_scoped=scope_customer_id is not None,
        license_scoped=scope_license_id is not None,
        pinned=pinned_id is not None,
    )
    prepared, layout, extra_names = _statements(dialect).read(read)
    client_bucket, identity_bucket = _split(buckets)
    values: dict[str, Any] = {
        "company_id": company_id,
        "product": product,
        "hardware_id": hardware_id,
        "client_bucket": client_bucket,
        "identity_bucket": identity_bucket,
    }
    if read.by_user:
        values["email"] = email
    else:
        values["key_lookup"] = key_lookup
    if use == "activate":
        values["app_ver"] = app_ver
    if read.idempotent:
        values["idempotency_key"] = idempotency_key
    optional = {
        "api_key": api_key,
        "scope_customer_id": scope_customer_id,
        "scope_license_id": scope_license_id,
        "pinned_id": pinned_id,
    }
    values.update({name: value for name, value in optional.items() if value is not None})
    if use != "check" and dialect.name == "postgresql":
        # Read committed: a statement that waits for a row lock sees the locked row as it is
        # now but every other row (the device, an Idempotency-Key's record) as it was when
        # the statement began, before the holder committed. So the lock is taken first and
        # the rows read by the next statement, which begins once the lock is held; both go
        # in one round trip (a pipeline). Measured: ~0.1 ms of this process's CPU and ~0.07 ms
        # of wall time per activation or deactivation (two statements in turn: as much CPU,
        # ~0.15 ms of wall time).
        lock, _, _ = _statements(dialect).read(replace(read, lock_only=True))
        with _cursor(connection, dialect) as locking, _cursor(connection, dialect) as cursor:
            with connection.pipeline():  # type: ignore[attr-defined]
                lock.execute(locking, values)
                prepared.execute(cursor, values)
            raw = cursor.fetchone()
    else:
        with _cursor(connection, dialect) as cursor:
            raw = prepared.execute(cursor, values).fetchone()
    if raw is None:
        return None
    row = prepared.convert(raw)
    views: dict[str, Any] = {}
    start = 0
    for prefix, names in layout:
        found = row[start : start + len(names)]
        start += len(names)
        views[prefix] = None if found[0] is None else _view(dict(zip(names, found, strict=True)))
    extra = dict(zip(extra_names, row[start:], strict=True))
    counters = _counters(
        [extra[f"rc{n}_{part}"] for n in (1, 2) for part in ("bucket", "start", "failures")]
    )
    return SeatRows(
        product=views["p"],
        license=views["l"],
        device=views["d"],
        user=views.get("u"),
        blacklisted=bool(extra["blacklisted"]),
        customer=views.get("c"),
        release=views.get("r"),
        app_release_date=extra.get("app_release_date"),
        idempotency=views.get("i"),
        rate_counters=counters,
        credential=Credential(views["k"], bool(extra["oauth_required"]))
        if read.with_credential
        else None,
        slot=views.get("s"),
        fingerprint=_fingerprint(raw, prepared.ignored) if use == "check" else b"",
    )


def _fingerprint(raw: Sequence[Any], ignored: Sequence[int]) -> bytes:
    """A digest of the values as the driver returned them, but for the ``ignored`` columns
    (a device's "last seen" and the rate-limit counters). (pickle: ~2 us against ~11 for
    repr. Equal rows can pickle differently -- shared objects are memoised -- which only costs
    an answer made anew; different rows never pickle the same.)"""
    values = list(raw)
    for index in ignored:
        values[index] = None
    return hashlib.blake2b(pickle.dumps(values, 5), digest_size=16).digest()


def product_rows(
    connection: DbapiConnection,
    dialect: Dialect,
    *,
    company_id: int,
    product: str,
    buckets: Sequence[str] = (),
) -> ProductRows:
    """The product of this code (if the company has one) and the rate-limit counters."""
    statements = _statements(dialect)
    prepared, names = statements.product, statements.product_names
    client_bucket, identity_bucket = _split(buckets)
    with _cursor(connection, dialect) as cursor:
        raw = prepared.execute(
            cursor,
            {
                "company_id": company_id,
                "product": product,
                "client_bucket": client_bucket,
                "identity_bucket": identity_bucket,
            },
        ).fetchone()
    row = prepared.convert(raw)
    found = row[: len(names)]
    return ProductRows(
        product=None if found[0] is None else _view(dict(zip(names, found, strict=True))),
        rate_counters=_counters(row[len(names) :]),
    )


@dataclass(frozen=True, slots=True)
class Seat:
    """A license's new values when a device takes a seat (``times_activated`` + 1)."""

    license_id: int
    unlimited: bool
    transfer_count: int
    validity_period: datetime | None
    first_activated_at: datetime | None
    updated_at: datetime


def record_activation(
    connection: DbapiConnection,
    dialect: Dialect,
    seat: Seat,
    device: dict[str, Any],
    *,
    known: bool,
    events: Sequence[dict[str, Any]],
    audit: dict[str, Any],
) -> int | None:
    """Take the seat (guarded: never past ``max_activations``) and write the device -- a new
    row, or the ``_REACTIVATED`` columns of a ``known`` inactive one (guarded: still
    inactive) --, its ``events`` (an activation, maybe then a transfer) and its ``audit`` row,
    which get the device's id. Returns the device's id, or ``None`` when a guard refused (the
    caller must then roll back)."""
    statements = _statements(dialect)
    kinds = [event["event"] for event in events]
    assert kinds in (["activation"], ["activation", "transfer"])
    seat_values = {
        "b_id": seat.license_id,
        "b_transfer_count": seat.transfer_count,
        "b_validity_period": seat.validity_period,
        "b_first_activated_at": seat.first_activated_at,
        "b_updated_at": seat.updated_at,
    }
    if known:
        device_values = {"d_" + name: device[name] for name in ("id", *_REACTIVATED)}
    else:
        device_values = {"d_" + name: value for name, value in device.items() if name != "id"}
    with _cursor(connection, dialect) as cursor:
        if statements.one_statement:
            found = (
                statements.activation_cte[known]
                .execute(
                    cursor,
                    {
                        **seat_values,
                        "b_unlimited": seat.unlimited,
                        **device_values,
                        "e_hardware_id": events[0]["hardware_id"],
                        "e_created_at": events[0]["created_at"],
                        "b_events": len(events),
                        **_prefixed(audit, "a_"),
                    },
                )
                .fetchone()
            )
            return None if found is None else int(found[0])
        statements.take_seat[not seat.unlimited].execute(cursor, seat_values)
        if cursor.rowcount != 1:
            return None
        if known:
            device_id = int(device["id"])
            statements.reactivate_device.execute(
                cursor, {"b_" + k[2:]: v for k, v in device_values.items()}
            )
            if cursor.rowcount != 1:
                return None
        else:
            inserted = statements.inserts[Device].execute(cursor, _prefixed(device, skip=("id",)))
            device_id = int(inserted.fetchone()[0])
        for event in events:
            statements.inserts[LicenseEvent].execute(
                cursor, _prefixed({**event, "device_id": device_id})
            )
        statements.inserts[AuditEntry].execute(
            cursor, _prefixed({**audit, "object_id": str(device_id)})
        )
    return device_id


def _prefixed(
    values: dict[str, Any], prefix: str = "b_", skip: Sequence[str] = ()
) -> dict[str, Any]:
    return {prefix + name: value for name, value in values.items() if name not in skip}


def record_deactivation(
    connection: DbapiConnection,
    dialect: Dialect,
    *,
    license_id: int,
    device_id: int,
    hardware_id: str,
    now: datetime,
    updated_at: datetime,
    release: dict[str, Any] | None,
    audit: dict[str, Any] | None,
) -> bool:
    """Mark an active device inactive (guarded: still active), free its seat (never below
    zero) and remember it as the license's last deactivated device, and write the
    deactivation event, the ``release`` and the ``audit`` rows (when given: a vendor's release
    writes neither here). ``False`` when the device was
    not active any more (the caller must then roll back)."""
    statements = _statements(dialect)
    event = {
        "license_id": license_id,
        "device_id": device_id,
        "hardware_id": hardware_id,
        "event": "deactivation",
        "created_at": now,
    }
    with _cursor(connection, dialect) as cursor:
        if statements.one_statement and release is not None and audit is not None:
            found = statements.deactivation_cte.execute(
                cursor,
                {
                    "d_id": device_id,
                    "d_deactivated_at": now,
                    "b_id": license_id,
                    "b_hardware_id": hardware_id,
                    "b_updated_at": updated_at,
                    **_prefixed(event, "e_"),
                    **_prefixed(release, "r_"),
                    **_prefixed(audit, "a_"),
                },
            ).fetchone()
            return found is not None
        statements.release_device.execute(cursor, {"b_id": device_id, "b_deactivated_at": now})
        if cursor.rowcount != 1:
            return False
        statements.free_seat.execute(
            cursor, {"b_id": license_id, "b_hardware_id": hardware_id, "b_updated_at": updated_at}
        )
        statements.inserts[LicenseEvent].execute(cursor, _prefixed(event))
        if release is not None:
            statements.inserts[LicenseRelease].execute(cursor, _prefixed(release))
        if audit is not None:
            statements.inserts[AuditEntry].execute(cursor, _prefixed(audit))
    return True


def variables(connection: DbapiConnection, dialect: Dialect, device_id: int) -> list[Any]:
    """A device's variables (views of ``DeviceVariable``), by name."""
    statements = _statements(dialect)
    prepared, names = statements.variables, statements.variable_names
    with _cursor(connection, dialect) as cursor:
        rows = prepared.execute(cursor, {"device_id": device_id}).fetchall()
    return [_view(dict(zip(names, prepared.convert(raw), strict=True))) for raw in rows]


def lock_license(connection: DbapiConnection, dialect: Dialect, license_id: int) -> None:
    """Lock the license's row until the transaction ends (PostgreSQL; SQLite's write
    transaction is exclusive already)."""
    if dialect.name != "postgresql":
        return
    with _cursor(connection, dialect) as cursor:
        _statements(dialect).lock_license.execute(cursor, {"id": license_id}).fetchone()


def floating_slot(
    connection: DbapiConnection, dialect: Dialect, device_id: int, feature: str = ""
) -> Any:
    """The device's slot of its license (``feature`` '') or of one of its floating features
    as it is now (a read-only view), or ``None``."""
    statements = _statements(dialect)
    with _cursor(connection, dialect) as cursor:
        raw = statements.slot.execute(
            cursor, {"device_id": device_id, "feature": feature}
        ).fetchone()
    if raw is None:
        return None
    return _view(dict(zip(statements.slot_names, statements.slot.convert(raw), strict=True)))


def slots_held(
    connection: DbapiConnection,
    dialect: Dialect,
    license_id: int,
    now: datetime,
    *,
    feature: str = "",
    other: int = 0,
) -> int:
    """How many of the license's slots (``feature``: of that floating feature) are held at
    ``now``, the device ``other``'s left out."""
    values = {"license_id": license_id, "feature": feature, "now": now, "other": other}
    with _cursor(connection, dialect) as cursor:
        raw = _statements(dialect).slots_held.execute(cursor, values).fetchone()
    return int(raw[0])


def keep_slot(
    connection: DbapiConnection, dialect: Dialect, values: dict[str, Any], *, known: bool
) -> None:
    """Write the device's slot (every column of ``FloatingSlot`` but the id): its row again
    when ``known`` (read under the license's lock), else a new one."""
    statements = _statements(dialect)
    with _cursor(connection, dialect) as cursor:
        (statements.keep_slot if known else statements.take_slot).execute(cursor, _prefixed(values))


def free_slot(
    connection: DbapiConnection, dialect: Dialect, device_id: int, feature: str = ""
) -> bool:
    """Delete the device's slot row of its license (``feature`` '') or of a floating feature;
    whether it had one."""
    values = {"device_id": device_id, "feature": feature}
    with _cursor(connection, dialect) as cursor:
        return _statements(dialect).free_slot.execute(cursor, values).fetchone() is not None


def free_slots(connection: DbapiConnection, dialect: Dialect, device_id: int) -> None:
    """Delete every slot row of the device (its license's and its features': a seat freed)."""
    with _cursor(connection, dialect) as cursor:
        _statements(dialect).free_slots.execute(cursor, {"device_id": device_id})


def record_consumption(
    connection: DbapiConnection,
    dialect: Dialect,
    *,
    license_id: int,
    total: int,
    now: datetime,
    event: dict[str, Any],
) -> None:
    """A consumption report counted: the license's new total (counted at ``now``) and its
    ``event`` (the columns of ``ConsumptionEvent`` but the id)."""
    statements = _statements(dialect)
    values = {
        "b_id": license_id,
        "b_total_consumptions": total,
        "b_consumption_counted_at": now,
        "b_updated_at": now,
    }
    with _cursor(connection, dialect) as cursor:
        statements.count_consumption.execute(cursor, values)
        statements.inserts[ConsumptionEvent].execute(cursor, _prefixed(event))


def record_feature_consumption(
    connection: DbapiConnection,
    dialect: Dialect,
    *,
    license_id: int,
    features: dict[str, Any],
    now: datetime,
    event: dict[str, Any],
) -> None:
    """A feature's consumption report counted: the license's attached features with the new
    total (decided under the license's lock) and the report's ``event``."""
    statements = _statements(dialect)
    values = {"b_id": license_id, "b_features": features, "b_updated_at": now}
    with _cursor(connection, dialect) as cursor:
        statements.count_feature_consumption.execute(cursor, values)
        statements.inserts[ConsumptionEvent].execute(cursor, _prefixed(event))


def record_idempotency(
    connection: DbapiConnection, dialect: Dialect, values: dict[str, Any]
) -> None:
    """The answer to replay for an Idempotency-Key (every column of ``IdempotencyRecord``)."""
    with _cursor(connection, dialect) as cursor:
        _statements(dialect).inserts[IdempotencyRecord].execute(cursor, _prefixed(values))


def record_reactivation(
    connection: DbapiConnection,
    dialect: Dialect,
    device: dict[str, Any],
    *,
    event: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    """A device that holds its seat activated again: its ``_REACTIVATED`` columns, the
    reactivation event and the audit row (no seat taken)."""
    statements = _statements(dialect)
    with _cursor(connection, dialect) as cursor:
        statements.refresh_device.execute(
            cursor, {"b_" + name: device[name] for name in ("id", *_REACTIVATED)}
        )
        statements.inserts[LicenseEvent].execute(cursor, _prefixed(event))
        statements.inserts[AuditEntry].execute(cursor, _prefixed(audit))


def count_user_activation(
    connection: DbapiConnection, dialect: Dialect, user_id: int, delta: int
) -> None:
    """A license user's ``total_activations`` + ``delta`` (never below zero)."""
    with _cursor(connection, dialect) as cursor:
        _statements(dialect).user_activations.execute(cursor, {"b_id": user_id, "b_delta": delta})


def set_variables(
    connection: DbapiConnection,
    dialect: Dialect,
    device_id: int,
    values: dict[str, str],
    now: datetime,
) -> None:
    """Set a device's variables: new names added, known ones replaced, the others kept."""
    statements = _statements(dialect)
    known = {v.variable for v in variables(connection, dialect, device_id)}
    with _cursor(connection, dialect) as cursor:
        for name, value in values.items():
            row = {"device_id": device_id, "variable": name, "value": value, "created_at": now}
            if name in known:
                statements.set_variable.execute(cursor, _prefixed(row))
            else:
                statements.inserts[DeviceVariable].execute(cursor, _prefixed(row))


def release_count(
    connection: DbapiConnection, dialect: Dialect, license_id: int, *, since: datetime | None
) -> int:
    """How many times a license released a seat (since ``since``, if given)."""
    prepared = _statements(dialect).release_count[since is not None]
    parameters: dict[str, Any] = {"license_id": license_id}
    if since is not None:
        parameters["since"] = since
    with _cursor(connection, dialect) as cursor:
        raw = prepared.execute(cursor, parameters).fetchone()
    return int(raw[0] or 0)


def offline_request_taken(
    connection: DbapiConnection,
    dialect: Dialect,
    company_id: int,
    request_id: str,
    hardware_id: str,
) -> bool:
    """Whether a request file with ``request_id`` for ``hardware_id`` was taken already, on
    any of the company's licenses."""
    values = {"company_id": company_id, "request_id": request_id, "hardware_id": hardware_id}
    with _cursor(connection, dialect) as cursor:
        raw = _statements(dialect).offline_taken.execute(cursor, values).fetchone()
    return bool(raw[0])


def take_offline_request(
    connection: DbapiConnection, dialect: Dialect, values: dict[str, Any]
) -> bool:
    """Record a request file's ``request_id`` for its license (every column of
    ``OfflineRequest``); ``False`` when it was recorded already."""
    with _cursor(connection, dialect) as cursor:
        found = _statements(dialect).take_offline.execute(cursor, _prefixed(values)).fetchone()
    return found is not None


def forget_idempotency(connection: DbapiConnection, dialect: Dialect, record_id: int) -> None:
    """Delete an Idempotency-Key's record (past its time to live)."""
    with _cursor(connection, dialect) as cursor:
        _statements(dialect).forget_idempotency.execute(cursor, {"b_id": record_id})


_DEVICE_FACTS: dict[frozenset[str], dict[str, _Prepared]] = {}


def record_device_facts(
    connection: DbapiConnection, dialect: Dialect, device_id: int, values: dict[str, Any]
) -> None:
    """Set some of a device's columns (a check's new facts, its "last seen" time)."""
    names = frozenset(values)
    by_dialect = _DEVICE_FACTS.setdefault(names, {})
    prepared = by_dialect.get(dialect.name)
    if prepared is None:
        statement = (
            update(Device)
            .where(Device.id == bindparam("b_id"))
            .values({name: bindparam("b_" + name) for name in sorted(names)})
        )
        prepared = by_dialect[dialect.name] = _Prepared(
            statement, dialect, ["b_id", *("b_" + name for name in sorted(names))]
        )
    with _cursor(connection, dialect) as cursor:
        prepared.execute(cursor, {"b_id": device_id, **_prefixed(values)})
