"""One statement for everything a steady-state ``check_license`` reads (and one to record
that the device was seen).

The ORM path of a check runs seven statements (API key, company, product, license, device,
blacklist, customer, latest release) and builds each one anew: about 4 ms of CPU. This module
builds one SQLAlchemy Core statement once per process (compiled once, bound parameters only)
and turns its single row into read-only views of the rows, with the mapped classes' attribute
names (``metadata_``, ...) and the column types' conversions (dates, JSON) applied by Core.

The views are plain namespaces: they never touch a session, so nothing can be written through
them; callers that decide to write go through the ORM path.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Dialect, and_, bindparam, exists, inspect, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import BindParameter

from licensor.store import native, repository
from licensor.store.models import (
    ApiKey,
    BlacklistEntry,
    Company,
    Customer,
    Device,
    License,
    Product,
    ProductRelease,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CheckSnapshot:
    """The rows of one check; ``None`` where an outer join found nothing."""

    api_key: ApiKey
    oauth_required: bool
    product: Product
    license: License
    device: Device | None
    blacklisted: bool
    customer: Customer | None
    release: ProductRelease | None
    # a digest of the row as read, but for the device's "last seen" time: two reads with the
    # same fingerprint found the same data (the answer cache of api/v4/fast_check.py)
    fingerprint: bytes


_ENTITIES: tuple[tuple[str, type[Any]], ...] = (
    ("k", ApiKey),
    ("p", Product),
    ("l", License),
    ("d", Device),
    ("c", Customer),
    ("r", ProductRelease),
)


def _attributes(model: type[Any]) -> list[tuple[str, str]]:
    """(attribute name, column name) of every column of a mapped class."""
    return [(attr.key, attr.columns[0].name) for attr in inspect(model).column_attrs]


def _statement() -> tuple[Select[Any], list[tuple[str, type[Any], list[str]]]]:
    k, p, lic = aliased(ApiKey, name="k"), aliased(Product, name="p"), aliased(License, name="l")
    d, c = aliased(Device, name="d"), aliased(Customer, name="c")
    r = aliased(ProductRelease, name="r")
    aliases = {"k": k, "p": p, "l": lic, "d": d, "c": c, "r": r}
    columns: list[Any] = []
    layout: list[tuple[str, type[Any], list[str]]] = []
    for prefix, model in _ENTITIES:
        alias = aliases[prefix]
        names = []
        for key, _column in _attributes(model):
            # (the primary key comes first: the loader tells a missing outer-joined row by it)
            columns.append(getattr(alias, key).label(f"{prefix}__{key}"))
            names.append(key)
        layout.append((prefix, model, names))
    hardware_id: BindParameter[str] = bindparam("hardware_id")
    latest_release = repository.latest_release_id(p.id)
    blacklisted = exists().where(
        BlacklistEntry.company_id == k.company_id,
        BlacklistEntry.hardware_id == hardware_id,
        or_(BlacklistEntry.product_id.is_(None), BlacklistEntry.product_id == p.id),
    )
    statement = (
        select(*columns, Company.oauth_required.label("oauth_required"), blacklisted.label("bl"))
        .select_from(k)
        .join(Company, Company.id == k.company_id)
        .join(p, and_(p.company_id == k.company_id, p.short_code == bindparam("product")))
        .join(
            lic,
            and_(
                lic.company_id == k.company_id,
                lic.product_id == p.id,
                lic.key_lookup == bindparam("key_lookup"),
            ),
        )
        .outerjoin(d, and_(d.license_id == lic.id, d.hardware_id == hardware_id))
        .outerjoin(c, c.id == lic.customer_id)
        .outerjoin(r, r.id == latest_release)
        .where(k.api_key == bindparam("api_key"))
    )
    return statement, layout


_STATEMENT, _LAYOUT = _statement()


def _view(model: type[T], values: dict[str, Any]) -> T:
    # A read-only stand-in with the mapped class's attribute names (see the module docstring).
    return cast(T, SimpleNamespace(**values))


class _Prepared:
    """The statement compiled once for a dialect, with its result converters.

    Executing a Core statement recomputes its cache key by walking all ~150 columns (about
    half a millisecond); this runs the compiled SQL on the DBAPI cursor and applies the column
    types' result processors (dates, JSON, booleans) itself, through public type APIs.
    """

    def __init__(self, dialect: Dialect) -> None:
        compiled = _STATEMENT.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = list(compiled.positiontup or [])
        self.native = native.uses_native(dialect)
        if self.native:  # (run on a RawCursor: see store/native.py)
            self.sql, self.order = native.native_placeholders(self.sql)
            self.positional = True
        self.fixed = compiled.construct_params(dict.fromkeys(_PARAMETERS, ""))
        names = [column.name for column in _STATEMENT.selected_columns]
        self.last_seen_index = names.index("d__last_check_at")
        self.processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in _STATEMENT.selected_columns
        ]

    def parameters(self, values: dict[str, Any]) -> Any:
        merged = {**self.fixed, **values}
        return [merged[name] for name in self.order] if self.positional else merged

    def fingerprint(self, raw: Sequence[Any]) -> bytes:
        """A digest of the values as the driver returned them. (pickle: ~2 us against ~11 for
        repr. Equal rows can pickle differently -- shared objects are memoised -- which only
        costs an answer made anew; different rows never pickle the same.)"""
        values = list(raw)
        values[self.last_seen_index] = None
        return hashlib.blake2b(pickle.dumps(values, 5), digest_size=16).digest()

    def convert(self, raw: Sequence[Any]) -> list[Any]:
        return [
            value if processor is None or value is None else processor(value)
            for processor, value in zip(self.processors, raw, strict=True)
        ]


_PREPARED: dict[str, _Prepared] = {}
_PARAMETERS = ("api_key", "product", "key_lookup", "hardware_id")


def check_snapshot(
    connection: Connection, *, api_key: str, product: str, key_lookup: str, hardware_id: str
) -> CheckSnapshot | None:
    """The rows a check reads, or ``None`` when the key, product or license does not match
    (the caller then takes the full path, which names the precise error)."""
    dialect = connection.dialect
    prepared = _PREPARED.get(dialect.name)
    if prepared is None:
        prepared = _PREPARED[dialect.name] = _Prepared(dialect)
    dbapi = connection.connection.dbapi_connection
    cursor = native.raw_cursor(dbapi) if prepared.native else dbapi.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            prepared.sql,
            prepared.parameters(
                {
                    "api_key": api_key,
                    "product": product,
                    "key_lookup": key_lookup,
                    "hardware_id": hardware_id,
                }
            ),
        )
        raw = cursor.fetchone()
    finally:
        cursor.close()
    if raw is None:
        return None
    row = prepared.convert(raw)
    views: dict[str, Any] = {}
    start = 0
    for prefix, model, names in _LAYOUT:
        values = row[start : start + len(names)]
        start += len(names)
        # the first column is the primary key: None when the outer join found no row
        views[prefix] = (
            None if values[0] is None else _view(model, dict(zip(names, values, strict=True)))
        )
    oauth_required, blacklisted = row[start], row[start + 1]
    return CheckSnapshot(
        api_key=views["k"],
        oauth_required=bool(oauth_required),
        product=views["p"],
        license=views["l"],
        device=views["d"],
        blacklisted=bool(blacklisted),
        customer=views["c"],
        release=views["r"],
        fingerprint=prepared.fingerprint(raw),
    )


def touch_devices(connection: Connection, device_ids: Sequence[int], now: datetime) -> bool:
    """Record "last seen" of several devices (autocommit, one statement per 500). Best effort:
    when another writer holds the database it gives up at once (the snapshot engine does not
    wait on SQLite's lock) and later checks try again; no answer depends on it."""
    ids = sorted(set(device_ids))
    try:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            connection.execute(update(Device).where(Device.id.in_(chunk)).values(last_check_at=now))
    except OperationalError:
        return False
    return True
