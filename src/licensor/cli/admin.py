"""Vendor commands over the management API (``--server``) or this host's database."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from licensor.cli.backend import Backend, BackendError, choose
from licensor.cli.common import (
    ConsumptionPeriodOption,
    FloatingTimeoutOption,
    FloatingUsersOption,
    JsonFlag,
    MaxBorrowHoursOption,
    MaxConsumptionsOption,
    NegativeConsumptionsFlag,
    OveragesOption,
    UnlimitedConsumptionsFlag,
    err,
    fail,
    out,
    usage_terms,
)
from licensor.protocol.offline import MAX_FILE_BYTES

device_app = typer.Typer(help="Devices of licenses.", no_args_is_help=True)
customer_app = typer.Typer(help="Customers.", no_args_is_help=True)
token_app = typer.Typer(help="Management API tokens.", no_args_is_help=True)
export_app = typer.Typer(help="Export data.", no_args_is_help=True)
import_app = typer.Typer(help="Import data.", no_args_is_help=True)

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Management API of a running server (token: "
        "LICENSOR_ADMIN_TOKEN). Default: this host's database.",
    ),
]
CompanyOption = Annotated[str | None, typer.Option("--company", help="Company (local mode).")]
EXPORT_FIELDS = [
    "id",
    "product",
    "license_key",
    "license_type",
    "enabled",
    "is_trial",
    "trial_days",
    "validity_period",
    "validity_days",
    "start_date",
    "grace_period",
    "maintenance_period",
    "max_activations",
    "allow_unlimited_activations",
    "times_activated",
    "max_transfers",
    "transfer_count",
    "prevent_vm",
    "allow_offline_activation",
    "version_spec",
    "order_id",
    "customer",
    "created_at",
]


def backend(server: str | None, company: str | None) -> Backend:
    try:
        return choose(server, company)
    except BackendError as exc:
        raise _fail(exc) from None


def _fail(exc: BackendError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.message} [dim]({exc.code})[/dim]")
    return typer.Exit(1)


def call(api: Backend, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return api.call(method, path, **kwargs)
    except BackendError as exc:
        raise _fail(exc) from None


@contextmanager
def progress_bar(label: str, total: int, *, hidden: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error (``hidden`` for short jobs); yields ``advance(n)``."""
    with Progress(
        label,
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=hidden,
    ) as bar:
        task = bar.add_task(label.lower(), total=total)
        yield lambda n: bar.advance(task, n)


def emit(as_json: bool, data: Any, render: Any) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render()


def license_id(api: Backend, id_or_key: str) -> int:
    if id_or_key.isdigit():
        return int(id_or_key)
    found = call(api, "GET", f"/licenses/by-key/{id_or_key}")
    return int(found["id"])


def license_table(items: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False, expand=False)
    for column in ("id", "key / user", "product", "type", "seats", "expires", "state"):
        table.add_column(column, no_wrap=column == "key / user", overflow="fold")
    for item in items:
        users = item.get("users") or []
        who = item["license_key"] or (users[0]["email"] if users else "")
        seats = "∞" if item["allow_unlimited_activations"] else str(item["max_activations"])
        state = "enabled" if item["enabled"] else "[red]disabled[/red]"
        table.add_row(
            str(item["id"]),
            who,
            item["product"],
            item["license_type"],
            f"{item['times_activated']}/{seats}",
            (item["validity_period"] or "never")[:10],
            state,
        )
    return table


def show_license(item: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in item.items():
        if name == "users":
            value = ", ".join(u["email"] for u in value) or "-"
        table.add_row(name, "-" if value is None else str(value))
    out.print(table)


def add_license_commands(license_app: typer.Typer) -> None:
    @license_app.command("list")
    def license_list(
        product: Annotated[str | None, typer.Option(help="Product short code")] = None,
        customer: Annotated[str | None, typer.Option(help="Customer e-mail")] = None,
        enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
        order_id: Annotated[str | None, typer.Option(help="Order id")] = None,
        sort: Annotated[
            str,
            typer.Option(
                help="id, created_at, validity_period, times_activated; '-' for descending"
            ),
        ] = "id",
        page: Annotated[int, typer.Option(min=1)] = 1,
        per_page: Annotated[int, typer.Option(min=1, max=500)] = 50,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """List licenses."""
        api = backend(server, company)
        data = call(
            api,
            "GET",
            "/licenses",
            params={
                "product": product,
                "customer": customer,
                "enabled": enabled,
                "order_id": order_id,
                "sort": sort,
                "page": page,
                "per_page": per_page,
            },
        )

        def render() -> None:
            out.print(license_table(data["items"]))
            out.print(f"[dim]page {data['page']}, {len(data['items'])} of {data['total']}[/dim]")

        emit(as_json, data, render)

    @license_app.command("show")
    def license_show(
        id_or_key: str,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Show one license (by id or key)."""
        api = backend(server, company)
        data = call(api, "GET", f"/licenses/{license_id(api, id_or_key)}")
        emit(as_json, data, lambda: show_license(data))

    def state_command(name: str, verb: str, help_text: str) -> None:
        @license_app.command(name, help=help_text)
        def command(
            id_or_key: str,
            server: ServerOption = None,
            company: CompanyOption = None,
            as_json: JsonFlag = False,
        ) -> None:
            api = backend(server, company)
            data = call(api, "POST", f"/licenses/{license_id(api, id_or_key)}/{verb}")
            emit(
                as_json,
                data,
                lambda: out.print(
                    f"License {data['id']}: {name}d ({data['times_activated']} active devices)."
                ),
            )

    state_command("disable", "disable", "Disable a license: activations and checks refused.")
    state_command("enable", "enable", "Enable a disabled license again.")
    state_command("reset", "reset", "Deactivate every device of a license.")

    @license_app.command("extend")
    def license_extend(
        id_or_key: str,
        days: Annotated[int | None, typer.Option(min=1, help="Add days")] = None,
        until: Annotated[str | None, typer.Option(help="New expiry (ISO date)")] = None,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Extend or renew a license's validity."""
        api = backend(server, company)
        data = call(
            api,
            "POST",
            f"/licenses/{license_id(api, id_or_key)}/extend",
            body={"days": days, "until": until},
        )
        emit(
            as_json,
            data,
            lambda: out.print(f"License {data['id']} now valid until {data['validity_period']}."),
        )


def add_usage_commands(license_app: typer.Typer) -> None:
    """``license seats``, ``license release-seat`` and ``license consumptions``."""

    @license_app.command("seats")
    def license_seats(
        id_or_key: str,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Who holds a floating license's seats now."""
        api = backend(server, company)
        data = call(api, "GET", f"/licenses/{license_id(api, id_or_key)}/floating-slots")

        def render() -> None:
            out.print(f"{data['in_use']} of {data['floating_users']} seats in use")
            table = columns("device", "hardware_id", "hostname", "since", "expires", "borrowed")
            for s in data["items"]:
                table.add_row(
                    str(s["device_id"]),
                    s["hardware_id"][:24],
                    s["hostname"] or "",
                    (s["taken_at"] or "")[:19],
                    (s["expires_at"] or "")[:19],
                    (s["borrowed_until"] or "")[:19],
                )
            out.print(table)

        emit(as_json, data, render)

    @license_app.command("release-seat")
    def license_release_seat(
        id_or_key: str,
        device: Annotated[int, typer.Argument(help="Device id (license seats)")],
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Free the floating seat a device holds (a computer that is gone)."""
        api = backend(server, company)
        path = f"/licenses/{license_id(api, id_or_key)}/floating-slots/{device}"
        data = call(api, "DELETE", path)
        emit(as_json, data, lambda: out.print(f"The seat of device {device} is free."))

    @license_app.command("consumptions")
    def license_consumptions(
        id_or_key: str,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """A consumption license's total and its latest reports."""
        api = backend(server, company)
        data = call(
            api,
            "GET",
            f"/licenses/{license_id(api, id_or_key)}/consumptions",
            params={"limit": limit},
        )

        def render() -> None:
            limit_text = (
                "unlimited" if data["allow_unlimited_consumptions"] else data["max_consumptions"]
            )
            out.print(f"{data['total_consumptions']} used of {limit_text}")
            table = columns("when", "device", "feature", "units", "total after", "event")
            for e in data["items"]:
                table.add_row(
                    (e["created_at"] or "")[:19],
                    e["hardware_id"][:24],
                    e["feature"] or "",
                    str(e["consumptions"]),
                    str(e["total_after"]),
                    e["event"],
                )
            out.print(table)

        emit(as_json, data, render)


@device_app.command("list")
def device_list(
    id_or_key: Annotated[str, typer.Argument(help="License id or key")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Devices of a license."""
    api = backend(server, company)
    data = call(api, "GET", f"/licenses/{license_id(api, id_or_key)}/devices")

    def render() -> None:
        table = Table()
        for column in ("id", "hardware_id", "active", "hostname", "os", "last activated"):
            table.add_column(column, overflow="fold")
        for d in data["items"]:
            table.add_row(
                str(d["id"]),
                d["hardware_id"][:24],
                "yes" if d["active"] else "no",
                d["hostname"],
                d["os_ver"],
                (d["last_activated_at"] or "")[:19],
            )
        out.print(table)

    emit(as_json, data, render)


@device_app.command("deactivate")
def device_deactivate(
    device_id: int,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Free a device's seat (the customer can activate another computer)."""
    api = backend(server, company)
    data = call(api, "POST", f"/devices/{device_id}/deactivate")
    emit(as_json, data, lambda: out.print(f"Device {device_id} deactivated."))


@device_app.command("blacklist")
def device_blacklist(
    hardware_id: str,
    product: Annotated[str | None, typer.Option(help="Only this product")] = None,
    reason: str = "",
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Refuse every License API call from a hardware id."""
    api = backend(server, company)
    data = call(
        api,
        "POST",
        "/blacklist",
        body={"hardware_id": hardware_id, "product": product, "reason": reason},
    )
    emit(as_json, data, lambda: out.print(f"Device {hardware_id} blacklisted."))


@customer_app.command("list")
def customer_list(
    search: Annotated[str | None, typer.Option(help="E-mail, name, company")] = None,
    page: int = 1,
    per_page: int = 50,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List customers."""
    api = backend(server, company)
    data = call(
        api, "GET", "/customers", params={"search": search, "page": page, "per_page": per_page}
    )

    def render() -> None:
        table = Table()
        for column in ("id", "email", "name", "company"):
            table.add_column(column, overflow="fold")
        for c in data["items"]:
            table.add_row(
                str(c["id"]),
                c["email"],
                f"{c['first_name']} {c['last_name']}".strip(),
                c["company_name"],
            )
        out.print(table)

    emit(as_json, data, render)


@customer_app.command("show")
def customer_show(
    customer_id: int,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one customer and their licenses."""
    api = backend(server, company)
    data = call(api, "GET", f"/customers/{customer_id}")
    licenses = call(api, "GET", "/licenses", params={"customer": data["email"], "per_page": 500})
    data["licenses"] = licenses["items"]

    def render() -> None:
        out.print(
            f"[bold]{data['email']}[/bold] {data['first_name']} {data['last_name']} "
            f"{data['company_name']}"
        )
        out.print(license_table(data["licenses"]))

    emit(as_json, data, render)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses it")],
    role: Annotated[str, typer.Option(help="admin | support | read-only")] = "admin",
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a management API token (shown once; only its hash is kept)."""
    api = backend(server, company)
    data = call(api, "POST", "/tokens", body={"name": name, "role": role})
    emit(
        as_json,
        data,
        lambda: out.print(
            f"token {data['token']}\n[dim]id {data['id']}, role {data['role']}; shown once, "
            "keep it secret[/dim]"
        ),
    )


@token_app.command("list")
def token_list(
    server: ServerOption = None, company: CompanyOption = None, as_json: JsonFlag = False
) -> None:
    """List management API tokens (never the tokens themselves)."""
    api = backend(server, company)
    data = call(api, "GET", "/tokens")

    def render() -> None:
        table = Table()
        for column in ("id", "name", "role", "prefix", "revoked", "last used"):
            table.add_column(column)
        for t in data["items"]:
            table.add_row(
                str(t["id"]),
                t["name"],
                t["role"],
                t["prefix"] + "…",
                "yes" if t["revoked"] else "no",
                (t["last_used_at"] or "-")[:19],
            )
        out.print(table)

    emit(as_json, data, render)


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="Its id, or the token itself (lsa_...)")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a management API token."""
    api = backend(server, company)
    if token.isdigit():
        token_id = int(token)
    else:  # the token as its creation printed it: named by its prefix, the part kept in clear
        found = [
            t
            for t in call(api, "GET", "/tokens")["items"]
            if token.startswith(t["prefix"]) and not t["revoked"]
        ]
        if len(found) != 1:
            raise typer.BadParameter(
                "no such token" if not found else "more than one token starts alike: give its id"
            )
        token_id = int(found[0]["id"])
    data = call(api, "DELETE", f"/tokens/{token_id}")
    emit(as_json, data, lambda: out.print(f"Token {token_id} revoked."))


def audit_command(
    object_type: Annotated[str | None, typer.Option(help="license, device, token, ...")] = None,
    object_id: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option(help="e.g. license.* or device.deactivate")] = None,
    page: int = 1,
    per_page: int = 50,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The audit log, newest first: who changed what, when."""
    api = backend(server, company)
    data = call(
        api,
        "GET",
        "/audit",
        params={
            "object_type": object_type,
            "object_id": object_id,
            "action": action,
            "page": page,
            "per_page": per_page,
        },
    )

    def render() -> None:
        table = Table()
        for column in ("when", "who", "action", "object"):
            table.add_column(column, overflow="fold")
        for e in data["items"]:
            table.add_row(
                e["at"][:19], e["actor"], e["action"], f"{e['object_type']} {e['object_id']}"
            )
        out.print(table)

    emit(as_json, data, render)


@export_app.command("licenses")
def export_licenses(
    file_format: Annotated[str, typer.Option("--format", help="csv | json")] = "csv",
    output: Annotated[Path | None, typer.Option(help="File (default: standard output)")] = None,
    product: Annotated[str | None, typer.Option()] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
) -> None:
    """Export every license (page by page, with a progress bar)."""
    if file_format not in ("csv", "json"):
        err.print("[red]error:[/red] --format must be csv or json")
        raise typer.Exit(2)
    api = backend(server, company)
    first = call(api, "GET", "/licenses", params={"product": product, "per_page": 500})
    items: list[dict[str, Any]] = list(first["items"])
    total = first["total"]
    with progress_bar("Exporting", total, hidden=total <= 500) as advance:
        advance(len(items))
        page = 1
        while len(items) < total:
            page += 1
            chunk = call(
                api, "GET", "/licenses", params={"product": product, "per_page": 500, "page": page}
            )["items"]
            if not chunk:
                break
            items.extend(chunk)
            advance(len(chunk))
    if file_format == "json":
        text = json.dumps(items, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(items)
        text = buffer.getvalue()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"{len(items)} licenses written to {output}")


IMPORT_FIELDS = {
    "license_type": str,
    "enabled": bool,
    "max_activations": int,
    "allow_unlimited_activations": bool,
    "validity_period": str,
    "validity_days": int,
    "start_date": str,
    "max_transfers": int,
    "prevent_vm": bool,
    "allow_offline_activation": bool,
    "is_trial": bool,
    "trial_days": int,
    "grace_period": int,
    "maintenance_period": str,
    "version_spec": str,
    "order_id": str,
}


def _coerce(kind: type, value: Any) -> Any:
    if value in (None, ""):
        return None
    if kind is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return kind(value)


@import_app.command("licenses")
def import_licenses(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Import licenses (as exported). Idempotent: keys that already exist are skipped."""
    text = file.read_text()
    rows: list[dict[str, Any]]
    if file.suffix.lower() == ".json" or text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    problems = [
        i + 1 for i, r in enumerate(rows) if not r.get("license_key") or not r.get("product")
    ]
    if problems:
        err.print(
            f"[red]error:[/red] rows {problems[:10]} have no license_key or product; "
            "nothing imported"
        )
        raise typer.Exit(1)
    api = backend(server, company)
    created = skipped = 0
    with progress_bar("Importing", len(rows), hidden=len(rows) < 50) as advance:
        for row in rows:
            try:
                api.call("GET", f"/licenses/by-key/{row['license_key']}")
                skipped += 1
            except BackendError as exc:
                if exc.code != "not_found":
                    raise _fail(exc) from None
                body: dict[str, Any] = {
                    "product": row["product"],
                    "license_key": row["license_key"],
                }
                for name, kind in IMPORT_FIELDS.items():
                    value = _coerce(kind, row.get(name))
                    if value is not None:
                        body[name] = value
                if row.get("customer"):
                    body["customer_email"] = row["customer"]
                call(api, "POST", "/licenses", body=body)
                created += 1
            advance(1)
    summary = {"created": created, "skipped": skipped}
    emit(as_json, summary, lambda: out.print(f"{created} imported, {skipped} already present."))


# -- orders, releases, license users -----------------------------------------------------------

order_app = typer.Typer(help="Orders (the licenses issued for one purchase).", no_args_is_help=True)
release_app = typer.Typer(help="Releases (versions) of products.", no_args_is_help=True)
license_user_app = typer.Typer(help="Users of user-based licenses.", no_args_is_help=True)
feature_app = typer.Typer(help="Product features, and features of licenses.", no_args_is_help=True)
policy_app = typer.Typer(help="License policies: templates for issuing.", no_args_is_help=True)
custom_field_app = typer.Typer(
    help="Custom fields of a product (values are set per license).", no_args_is_help=True
)


def columns(*names: str) -> Table:
    table = Table()
    for name in names:
        table.add_column(name, overflow="fold")
    return table


def show_fields(item: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in item.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        table.add_row(name, "-" if shown is None else str(shown))
    out.print(table)


@order_app.command("show")
def order_show(
    order_id: str,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The licenses issued for one order id."""
    api = backend(server, company)
    data = call(api, "GET", f"/orders/{order_id}")

    def render() -> None:
        out.print(f"[bold]order {data['order_id']}[/bold]: {len(data['items'])} license(s)")
        out.print(license_table(data["items"]))

    emit(as_json, data, render)


@release_app.command("list")
def release_list(
    product: Annotated[str, typer.Argument(help="Product short code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Releases of a product, oldest first."""
    api = backend(server, company)
    data = call(api, "GET", f"/products/{product}/releases")

    def render() -> None:
        table = columns("id", "version", "released", "environment", "channel", "enabled")
        for r in data["items"]:
            table.add_row(
                str(r["id"]),
                r["version"],
                (r["release_date"] or "")[:10],
                r["environment"],
                r["channel"],
                "yes" if r["enabled"] else "no",
            )
        out.print(table)

    emit(as_json, data, render)


@release_app.command("add")
def release_add(
    product: Annotated[str, typer.Argument(help="Product short code")],
    version: str,
    date: Annotated[str, typer.Option(help="Release date (YYYY-MM-DD or ISO 8601)")],
    environment: str = "",
    channel: str = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Not offered yet")] = False,
    download: Annotated[str, typer.Option(help="Link to the installer")] = "",
    release_notes: Annotated[str, typer.Option(help="Link to the release notes")] = "",
    eula: Annotated[str, typer.Option(help="Link to the EULA")] = "",
    md5: Annotated[str, typer.Option(help="MD5 of the installer (32 hex digits)")] = "",
    size: Annotated[str, typer.Option(help="Size of the installer in bytes")] = "",
    requires_version: Annotated[str, typer.Option(help="Version an upgrade needs first")] = "",
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a release (one version per environment)."""
    api = backend(server, company)
    data = call(
        api,
        "POST",
        f"/products/{product}/releases",
        body={
            "version": version,
            "release_date": date,
            "environment": environment,
            "channel": channel,
            "enabled": not disabled,
            "links": {"full": download, "release_notes": release_notes, "eula": eula},
            "hash_md5": md5,
            "size": size,
            "requires_version": requires_version,
        },
    )
    emit(as_json, data, lambda: out.print(f"Release {data['version']} of {product} recorded."))


@license_user_app.command("create")
def license_user_create(
    id_or_key: Annotated[str, typer.Argument(help="License id (or key)")],
    email: Annotated[str, typer.Option(help="The user's e-mail (the username)")],
    password: Annotated[
        str | None, typer.Option(help="Initial password (8+ characters); asked when absent")
    ] = None,
    max_activations: Annotated[int, typer.Option(min=0)] = 1,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a user to a user-based license."""
    if password is None:
        password = typer.prompt("Initial password", hide_input=True)
    api = backend(server, company)
    data = call(
        api,
        "POST",
        f"/licenses/{license_id(api, id_or_key)}/users",
        body={"email": email, "password": password, "max_activations": max_activations},
    )
    emit(as_json, data, lambda: out.print(f"User {data['email']} added (id {data['id']})."))


@license_user_app.command("reset-password")
def license_user_reset_password(
    user_id: int,
    password: Annotated[
        str | None, typer.Option(help="The new password (default: generate one)")
    ] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a license user a new initial password (a generated one is shown once)."""
    api = backend(server, company)
    body = {"password": password} if password is not None else {}
    data = call(api, "POST", f"/license-users/{user_id}/reset-password", body=body)

    def render() -> None:
        out.print(f"Password of {data['email']} reset.")
        if "password" in data:
            out.print(f"password {data['password']}   [dim](shown once)[/dim]")

    emit(as_json, data, render)


# -- API credentials (rotation and revocation; creation is in cli.main) ------------------------


def credential_commands(typer_app: typer.Typer, kind: str, path: str, secret_field: str) -> None:
    @typer_app.command("list")
    def credential_list(
        server: ServerOption = None, company: CompanyOption = None, as_json: JsonFlag = False
    ) -> None:
        api = backend(server, company)
        data = {"items": call(api, "GET", "/credentials")[kind]}

        def render() -> None:
            table = columns("id", "key / client id", "detail", "revoked", "previous until")
            for c in data["items"]:
                detail = c.get("label") or c.get("scope") or ""
                if c.get("read_only"):
                    detail += " (read-only)"
                table.add_row(
                    str(c["id"]),
                    c.get("api_key") or c.get("client_id"),
                    detail,
                    "yes" if c["revoked"] else "no",
                    (c["previous_valid_until"] or "-")[:19],
                )
            out.print(table)

        emit(as_json, data, render)

    credential_list.__doc__ = f"List {path.strip('/').replace('-', ' ')} (never their secrets)."

    def credential_id(api: Backend, given: str) -> int:
        """The id of a credential named by its id or by its api key / client id."""
        if given.isdigit():
            return int(given)
        for item in call(api, "GET", "/credentials")[kind]:
            if given in (item.get("api_key"), item.get("client_id")):
                return int(item["id"])
        raise typer.BadParameter(f"no {kind.rstrip('s').replace('_', ' ')} {given!r}")

    @typer_app.command("rotate")
    def credential_rotate(
        credential: Annotated[str, typer.Argument(help="Its id, or the api key / client id")],
        overlap: Annotated[
            int, typer.Option(min=0, help="Seconds the old secret keeps working (default 0)")
        ] = 0,
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """A new secret (shown once); the old one works --overlap seconds more."""
        api = backend(server, company)
        found = credential_id(api, credential)
        data = call(api, "POST", f"{path}/{found}/rotate", body={"overlap_seconds": overlap})
        emit(
            as_json,
            data,
            lambda: out.print(
                f"{secret_field.replace('_', ' ')} {data[secret_field]}   "
                "[dim](shown once; keep it secret)[/dim]"
            ),
        )

    @typer_app.command("revoke")
    def credential_revoke(
        credential: Annotated[str, typer.Argument(help="Its id, or the api key / client id")],
        server: ServerOption = None,
        company: CompanyOption = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Revoke at once: calls signed with it are refused."""
        api = backend(server, company)
        found = credential_id(api, credential)
        data = call(api, "DELETE", f"{path}/{found}")
        emit(as_json, data, lambda: out.print(f"{credential} revoked."))


# -- features ----------------------------------------------------------------------------------


@feature_app.command("list")
def feature_list(
    product: Annotated[str, typer.Argument(help="Product short code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Features defined on a product."""
    api = backend(server, company)
    data = call(api, "GET", f"/products/{product}/features")

    def render() -> None:
        table = columns("id", "code", "name", "type", "max consumption", "floating", "expires")
        for f in data["items"]:
            table.add_row(
                str(f["id"]),
                f["code"],
                f["name"],
                f["feature_type"],
                str(f["max_consumption"]) if f["feature_type"] == "consumption" else "-",
                f"{f['floating_users']} at once" if f.get("is_floating_cloud") else "-",
                (f["expiry_date"] or "never")[:10],
            )
        out.print(table)

    emit(as_json, data, render)


@feature_app.command("add")
def feature_add(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Feature code")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the code)")] = None,
    feature_type: Annotated[
        str, typer.Option("--type", help="activation | consumption")
    ] = "activation",
    max_consumption: Annotated[int, typer.Option(min=0)] = 0,
    unlimited_consumptions: Annotated[
        bool, typer.Option("--unlimited-consumptions", help="Count without a limit")
    ] = False,
    max_overages: Annotated[
        int | None,
        typer.Option(min=0, help="Allow overages beyond max-consumption (0: without limit)"),
    ] = None,
    allow_negative: Annotated[
        bool, typer.Option("--allow-negative", help="Accept negative reports (refunds)")
    ] = False,
    consumption_period: Annotated[
        str | None,
        typer.Option(help="Start the total again from 0: daily | weekly | monthly | annually"),
    ] = None,
    floating_users: Annotated[
        int | None, typer.Option(min=1, help="A floating feature: this many devices at once")
    ] = None,
    floating_timeout: Annotated[
        int | None, typer.Option(min=1, help="Minutes before an unrefreshed slot is free")
    ] = None,
    max_borrow_hours: Annotated[
        int | None, typer.Option(min=1, help="Let devices borrow a slot up to this many hours")
    ] = None,
    expiry_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Define a feature on a product."""
    api = backend(server, company)
    body: dict[str, Any] = {"code": code, "feature_type": feature_type}
    if name is not None:
        body["name"] = name
    if max_consumption:
        body["max_consumption"] = max_consumption
    if unlimited_consumptions:
        body["allow_unlimited_consumptions"] = True
    if max_overages is not None:
        body |= {"allow_overages": True, "max_overages": max_overages}
    if allow_negative:
        body["allow_negative_consumptions"] = True
    if consumption_period is not None:
        body |= {"reset_consumption": True, "consumption_period": consumption_period}
    if floating_users is not None:
        body |= {"is_floating_cloud": True, "floating_users": floating_users}
    if floating_timeout is not None:
        body["floating_timeout"] = floating_timeout
    if max_borrow_hours is not None:
        body |= {"can_borrow": True, "max_borrow_time": max_borrow_hours}
    if expiry_date is not None:
        body["expiry_date"] = expiry_date
    data = call(api, "POST", f"/products/{product}/features", body=body)
    emit(as_json, data, lambda: out.print(f"Feature {data['code']} added to {product}."))


@feature_app.command("remove")
def feature_remove(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Feature code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete a feature of a product (licenses and policies that had it lose it)."""
    api = backend(server, company)
    call(api, "DELETE", f"/products/{product}/features/{code}")
    data = {"product": product, "code": code, "removed": True}
    emit(as_json, data, lambda: out.print(f"Feature {code} removed from {product}."))


@feature_app.command("attach")
def feature_attach(
    id_or_key: Annotated[str, typer.Argument(help="License id or key")],
    code: Annotated[str, typer.Argument(help="Feature code")],
    expiry_date: Annotated[str | None, typer.Option(help="This license's own expiry")] = None,
    max_consumption: Annotated[int | None, typer.Option(min=0)] = None,
    floating_users: Annotated[
        int | None, typer.Option(min=1, help="This license's own devices at once")
    ] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Attach a product feature to a license."""
    api = backend(server, company)
    body: dict[str, Any] = {"code": code}
    if expiry_date is not None:
        body["expiry_date"] = expiry_date
    if max_consumption is not None:
        body["max_consumption"] = max_consumption
    if floating_users is not None:
        body["floating_users"] = floating_users
    data = call(api, "POST", f"/licenses/{license_id(api, id_or_key)}/features", body=body)
    emit(as_json, data, lambda: out.print(f"Feature {code} attached to license {data['id']}."))


@feature_app.command("detach")
def feature_detach(
    id_or_key: Annotated[str, typer.Argument(help="License id or key")],
    code: Annotated[str, typer.Argument(help="Feature code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Take a feature away from a license."""
    api = backend(server, company)
    data = call(api, "DELETE", f"/licenses/{license_id(api, id_or_key)}/features/{code}")
    emit(as_json, data, lambda: out.print(f"Feature {code} detached from license {data['id']}."))


# -- policies ----------------------------------------------------------------------------------


@policy_app.command("list")
def policy_list(
    product: Annotated[str, typer.Argument(help="Product short code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """License policies of a product."""
    api = backend(server, company)
    data = call(api, "GET", f"/products/{product}/policies")

    def render() -> None:
        table = columns("code", "name", "type", "seats", "validity", "trial", "default")
        for p in data["items"]:
            seats = "∞" if p["allow_unlimited_activations"] else str(p["max_activations"])
            validity = (
                f"{p['validity_days']} days"
                if p["validity_days"]
                else (p["validity_period"] or "-")[:10]
            )
            trial = f"{p['trial_days'] or '-'} days" if p["is_trial"] else "no"
            table.add_row(
                p["code"],
                p["name"],
                p["license_type"],
                seats,
                validity,
                trial,
                "yes" if p["is_default"] else "",
            )
        out.print(table)

    emit(as_json, data, render)


@policy_app.command("show")
def policy_show(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Policy code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One license policy."""
    api = backend(server, company)
    data = call(api, "GET", f"/products/{product}/policies/{code}")
    emit(as_json, data, lambda: show_fields(data))


def _key_values(pairs: list[str] | None, option: str) -> dict[str, str]:
    values = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            err.print(f"[red]error:[/red] {option}: {pair!r} is not NAME=VALUE")
            raise typer.Exit(2)
        values[name] = value
    return values


@policy_app.command("create")
def policy_create(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Policy code")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the code)")] = None,
    license_type: Annotated[
        str, typer.Option("--type", help="perpetual | time-limited | subscription | consumption")
    ] = "perpetual",
    max_activations: Annotated[int, typer.Option(min=0)] = 1,
    unlimited_activations: Annotated[bool, typer.Option("--unlimited-activations")] = False,
    validity_days: Annotated[int | None, typer.Option(min=1, help="Days valid")] = None,
    validity_period: Annotated[str | None, typer.Option(help="Fixed expiry date")] = None,
    trial_days: Annotated[int | None, typer.Option(min=1, help="A trial of N days")] = None,
    max_transfers: Annotated[int, typer.Option(help="0 unlimited, N at most, -1 none")] = 0,
    prevent_vm: Annotated[bool, typer.Option("--prevent-vm")] = False,
    no_offline: Annotated[
        bool,
        typer.Option("--no-offline-activation", help="Refuse activation by request file"),
    ] = False,
    grace_period: Annotated[int, typer.Option(min=0, help="Grace hours after expiry")] = 0,
    maintenance_days: Annotated[int | None, typer.Option(min=1)] = None,
    max_consumptions: MaxConsumptionsOption = None,
    unlimited_consumptions: UnlimitedConsumptionsFlag = False,
    overages: OveragesOption = None,
    negative_consumptions: NegativeConsumptionsFlag = False,
    consumption_period: ConsumptionPeriodOption = None,
    floating_users: FloatingUsersOption = None,
    floating_timeout: FloatingTimeoutOption = None,
    max_borrow_hours: MaxBorrowHoursOption = None,
    feature: Annotated[list[str] | None, typer.Option(help="Attach this feature")] = None,
    custom_field: Annotated[list[str] | None, typer.Option(help="NAME=VALUE")] = None,
    default: Annotated[bool, typer.Option("--default", help="The product's default")] = False,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a license policy (licenses issued with --policy CODE take its values)."""
    body: dict[str, Any] = {
        "code": code,
        "license_type": license_type,
        "max_activations": max_activations,
        "allow_unlimited_activations": unlimited_activations,
        "max_transfers": max_transfers,
        "grace_period": grace_period,
        "is_default": default,
        "features": {f: {} for f in feature or []},
        "custom_fields": _key_values(custom_field, "--custom-field"),
    }
    optional = {
        "name": name,
        "validity_days": validity_days,
        "validity_period": validity_period,
        "maintenance_days": maintenance_days,
        "prevent_vm": True if prevent_vm else None,
        "allow_offline_activation": False if no_offline else None,
        **usage_terms(
            max_consumptions=max_consumptions,
            unlimited_consumptions=unlimited_consumptions,
            overages=overages,
            negative_consumptions=negative_consumptions,
            consumption_period=consumption_period,
            floating_users=floating_users,
            floating_timeout=floating_timeout,
            max_borrow_hours=max_borrow_hours,
        ),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if trial_days is not None:
        body.update(is_trial=True, trial_days=trial_days)
    api = backend(server, company)
    data = call(api, "POST", f"/products/{product}/policies", body=body)
    emit(as_json, data, lambda: out.print(f"Policy {data['code']} of {product} created."))


@policy_app.command("default")
def policy_default(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Policy code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Make this policy the product's default (licenses issued without --policy take it)."""
    api = backend(server, company)
    data = call(api, "PATCH", f"/products/{product}/policies/{code}", body={"is_default": True})
    emit(as_json, data, lambda: out.print(f"Policy {code} is the default of {product}."))


@policy_app.command("delete")
def policy_delete(
    product: Annotated[str, typer.Argument(help="Product short code")],
    code: Annotated[str, typer.Argument(help="Policy code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete a policy (licenses already issued from it keep their terms)."""
    api = backend(server, company)
    call(api, "DELETE", f"/products/{product}/policies/{code}")
    data = {"product": product, "code": code, "deleted": True}
    emit(as_json, data, lambda: out.print(f"Policy {code} deleted from {product}."))


# -- custom fields -----------------------------------------------------------------------------


@custom_field_app.command("list")
def custom_field_list(
    product: Annotated[str, typer.Argument(help="Product short code")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Custom fields defined on a product, with their default values."""
    api = backend(server, company)
    data = call(api, "GET", f"/products/{product}/custom-fields")

    def render() -> None:
        table = Table("name", "default value", box=None)
        for field in data["items"]:
            table.add_row(str(field.get("name", "")), str(field.get("default_value", "")))
        out.print(table)

    emit(as_json, data, render)


@custom_field_app.command("add")
def custom_field_add(
    product: Annotated[str, typer.Argument(help="Product short code")],
    name: Annotated[str, typer.Argument(help="Field name")],
    default: Annotated[str, typer.Option("--default", help="Default value")] = "",
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Define a custom field on a product."""
    api = backend(server, company)
    body = {"name": name, "default_value": default}
    data = call(api, "POST", f"/products/{product}/custom-fields", body=body)
    emit(as_json, data, lambda: out.print(f"Custom field {name} added to {product}."))


@custom_field_app.command("set-default")
def custom_field_set_default(
    product: Annotated[str, typer.Argument(help="Product short code")],
    name: Annotated[str, typer.Argument(help="Field name")],
    value: Annotated[str, typer.Argument(help="New default value")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a custom field's default value."""
    api = backend(server, company)
    data = call(
        api, "PATCH", f"/products/{product}/custom-fields/{name}", body={"default_value": value}
    )
    emit(as_json, data, lambda: out.print(f"Custom field {name} now defaults to {value!r}."))


@custom_field_app.command("remove")
def custom_field_remove(
    product: Annotated[str, typer.Argument(help="Product short code")],
    name: Annotated[str, typer.Argument(help="Field name")],
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete a custom field and every license's value for it."""
    api = backend(server, company)
    call(api, "DELETE", f"/products/{product}/custom-fields/{name}")
    data = {"product": product, "name": name, "removed": True}
    emit(as_json, data, lambda: out.print(f"Custom field {name} removed from {product}."))


# -- request files (offline activation) ---------------------------------------------------------

offline_app = typer.Typer(
    help="Request files of computers without internet (customers send them by e-mail).",
    no_args_is_help=True,
)
RequestFileArgument = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, help="The request file the customer sent."),
]


def _request_file(path: Path) -> str:
    content = path.read_bytes()
    if len(content) > MAX_FILE_BYTES:
        raise fail(f"{path}: {len(content)} bytes; a request file is at most {MAX_FILE_BYTES}")
    return content.decode("utf-8", "replace")


@offline_app.command("activate")
def offline_activate(
    file: RequestFileArgument,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Where to write the license file [default: FILE.lic]"),
    ] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Activate the computer of a request file; writes the license file to send back."""
    api = backend(server, company)
    data = call(api, "POST", "/offline/activate", body={"request_file": _request_file(file)})
    target = output or file.with_suffix(".lic")
    target.write_text(data["license_file"])
    details = data["license"]
    summary = {
        "license_file": str(target),
        "license_key": details.get("license_key"),
        "hardware_id": details.get("hardware_id"),
        "product": (details.get("product_details") or {}).get("short_code"),
    }
    emit(
        as_json,
        summary,
        lambda: out.print(
            f"Activated {summary['license_key']} on {summary['hardware_id']}; "
            f"send {target} back to the customer."
        ),
    )


@offline_app.command("deactivate")
def offline_deactivate(
    file: RequestFileArgument,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Free the seat of a deactivation request file."""
    api = backend(server, company)
    data = call(api, "POST", "/offline/deactivate", body={"request_file": _request_file(file)})
    emit(as_json, data, lambda: out.print(f"Deactivated: the seat of {file.name} is free."))


def product_update(
    code: Annotated[str, typer.Argument(help="The product's short code.")],
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    prevent_vm: Annotated[
        bool | None, typer.Option("--prevent-vm/--allow-vm", help="Refuse virtual machines")
    ] = None,
    offline_activation: Annotated[
        bool | None,
        typer.Option(
            "--offline-activation/--no-offline-activation", help="Allow activation by file"
        ),
    ] = None,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a product's name or switches (its licenses follow unless they set their own)."""
    changes = {
        "name": name,
        "prevent_vm": prevent_vm,
        "allow_offline_activation": offline_activation,
    }
    body = {k: v for k, v in changes.items() if v is not None}
    if not body:
        raise fail(
            "nothing to change: give --name, --prevent-vm/--allow-vm or --[no-]offline-activation"
        )
    api = backend(server, company)
    data = call(api, "PATCH", f"/products/{code}", body=body)
    emit(as_json, data, lambda: out.print(f"Product {code} updated."))
