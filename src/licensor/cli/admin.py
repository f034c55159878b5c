"""Vendor commands over the management API (``--server``) or this host's database."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from licensor.cli.backend import Backend, BackendError, choose

out = Console()
err = Console(stderr=True)

device_app = typer.Typer(help="Devices of licenses.", no_args_is_help=True)
customer_app = typer.Typer(help="Customers.", no_args_is_help=True)
token_app = typer.Typer(help="Management API tokens.", no_args_is_help=True)
export_app = typer.Typer(help="Export data.", no_args_is_help=True)
import_app = typer.Typer(help="Import data.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
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
            f"token {data['token']}\n[dim]role {data['role']}; shown once, keep it secret[/dim]"
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
    token_id: int,
    server: ServerOption = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a management API token."""
    api = backend(server, company)
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
    with Progress(
        "Exporting",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=total <= 500,
    ) as bar:
        task = bar.add_task("export", total=total, completed=len(items))
        page = 1
        while len(items) < total:
            page += 1
            chunk = call(
                api, "GET", "/licenses", params={"product": product, "per_page": 500, "page": page}
            )["items"]
            if not chunk:
                break
            items.extend(chunk)
            bar.update(task, completed=len(items))
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
    with Progress(
        "Importing",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=len(rows) < 50,
    ) as bar:
        task = bar.add_task("import", total=len(rows))
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
            bar.advance(task)
    summary = {"created": created, "skipped": skipped}
    emit(as_json, summary, lambda: out.print(f"{created} imported, {skipped} already present."))
