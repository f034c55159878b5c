"""What every ``licensor`` command shares: settings, the database transaction, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.keyring import Keyring
from licensor.protocol.signing import parse_iso_datetime
from licensor.secrets_at_rest import MasterKey
from licensor.settings import Settings
from licensor.store import migrate
from licensor.store.db import Database

out = Console()
err = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# The usage terms of a license or a policy: consumption and floating seats (``usage_terms``).
MaxConsumptionsOption = Annotated[
    int | None, typer.Option(min=0, help="Units a consumption license may count")
]
UnlimitedConsumptionsFlag = Annotated[bool, typer.Option("--unlimited-consumptions")]
OveragesOption = Annotated[
    int | None, typer.Option(min=0, help="Allow this many units past the maximum (0: no limit)")
]
NegativeConsumptionsFlag = Annotated[
    bool, typer.Option("--negative-consumptions", help="Accept refunds (negative reports)")
]
ConsumptionPeriodOption = Annotated[
    str | None,
    typer.Option(help="Reset the total: daily | weekly | monthly | annually (00:00 UTC)"),
]
FloatingUsersOption = Annotated[
    int | None, typer.Option(min=1, help="A floating cloud license: at most N computers at once")
]
FloatingTimeoutOption = Annotated[
    int | None, typer.Option(min=1, help="Minutes a seat stays held without a check [5]")
]
MaxBorrowHoursOption = Annotated[
    int | None, typer.Option(min=1, help="Allow borrowing a seat for up to N hours")
]


def usage_terms(
    *,
    max_consumptions: int | None,
    unlimited_consumptions: bool,
    overages: int | None,
    negative_consumptions: bool,
    consumption_period: str | None,
    floating_users: int | None,
    floating_timeout: int | None,
    max_borrow_hours: int | None,
) -> dict[str, Any]:
    """The fields those options give (None: not given: the policy's or the product's)."""
    return {
        "max_consumptions": max_consumptions,
        "allow_unlimited_consumptions": True if unlimited_consumptions else None,
        "allow_overages": True if overages is not None else None,
        "max_overages": overages,
        "allow_negative_consumptions": True if negative_consumptions else None,
        "consumption_period": consumption_period,
        "is_floating_cloud": True if floating_users is not None else None,
        "floating_users": floating_users,
        "floating_timeout": floating_timeout,
        "can_borrow": True if max_borrow_hours is not None else None,
        "max_borrow_time": max_borrow_hours,
    }


CompanyOption = Annotated[
    str | None, typer.Option("--company", help="Company name or id (default: the only one).")
]
ServerOption = Annotated[
    str | None,
    typer.Option(help="Through this server's management API (token: LICENSOR_ADMIN_TOKEN)."),
]


def settings() -> Settings:
    return Settings()


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def transaction(current: Settings) -> Iterator[Session]:
    current.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(current.resolved_database_url)
    db = Database(current.resolved_database_url)
    try:
        with db.transaction(write=True) as session:
            yield session
    except LicensorError as exc:
        raise fail(exc.message) from None
    finally:
        db.dispose()


def master_key(current: Settings) -> MasterKey:
    return MasterKey.load_or_create(current.data_dir, current.master_key)


def emit(as_json: bool, data: Any, human: str | Table) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        out.print(human)


def parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso_datetime(value)
    except ValueError:
        raise fail(f"{name}: {value!r} is not a date (use YYYY-MM-DD or ISO 8601)") from None


def prepare(current: Settings) -> Keyring:
    """Data directory, migrations, master key and signing keys: everything a server needs."""
    current.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(current.resolved_database_url)
    master_key(current)
    return Keyring.load_or_create(current.resolved_keys_dir, rsa_key_size=current.rsa_key_size)
