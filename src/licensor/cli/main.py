"""``licensor``: set up, run and feed the server from the terminal. Every command has ``--json``."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from licensor.cli import admin as _admin
from licensor.cli.common import (
    CompanyOption,
    ConsumptionPeriodOption,
    FloatingTimeoutOption,
    FloatingUsersOption,
    JsonFlag,
    MaxBorrowHoursOption,
    MaxConsumptionsOption,
    NegativeConsumptionsFlag,
    OveragesOption,
    ServerOption,
    UnlimitedConsumptionsFlag,
    emit,
    err,
    fail,
    master_key,
    parse_date,
    prepare,
    settings,
    transaction,
    usage_terms,
)
from licensor.cli.qlm import qlm_app as _qlm_app
from licensor.cli.sso import customer_account_app as _sso_app
from licensor.services import catalogue
from licensor.settings import Settings
from licensor.store import migrate

app = typer.Typer(
    help="Licensor: self-hosted software licensing (License API v4).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
company_app = typer.Typer(help="Vendor accounts.", no_args_is_help=True)
api_key_app = typer.Typer(help="API keys (api key + shared key) for the License API.")
oauth_app = typer.Typer(help="OAuth client credentials for the License API.")
product_app = typer.Typer(help="Products.", no_args_is_help=True)
license_app = typer.Typer(help="Licenses.", no_args_is_help=True)
blacklist_app = typer.Typer(help="Blacklisted devices.", no_args_is_help=True)
console_user_app = typer.Typer(help="People who sign in to the web console.", no_args_is_help=True)
app.add_typer(company_app, name="company")
app.add_typer(api_key_app, name="api-key")
app.add_typer(oauth_app, name="oauth-client")
app.add_typer(product_app, name="product")
app.add_typer(license_app, name="license")
app.add_typer(blacklist_app, name="blacklist")
app.add_typer(console_user_app, name="console-user")


# -- setup -------------------------------------------------------------------------------------


@app.command()
def init(
    company: Annotated[str, typer.Option(help="Name of the first company.")] = "Default",
    as_json: JsonFlag = False,
) -> None:
    """Create the data directory, run migrations, make signing keys, and the first company with
    its API key + shared key (printed once)."""
    current = settings()
    prepare(current)
    with transaction(current) as session:
        from licensor.store import repository

        if repository.companies(session):
            emit(
                as_json,
                {"initialised": True, "created": False},
                f"Already initialised in {current.data_dir} (nothing created).",
            )
            return
        created = catalogue.create_company(session, company)
        key = catalogue.create_api_key(session, master_key(current), created.id, label="init")
    data = {
        "company": company,
        "company_id": created.id,
        "api_key": key.api_key,
        "shared_key": key.shared_key,
        "data_dir": str(current.data_dir),
    }
    emit(
        as_json,
        data,
        f"Initialised {current.data_dir}\n"
        f"company    {company} (id {created.id})\n"
        f"api key    {key.api_key}\n"
        f"shared key {key.shared_key}   [dim](shown once; keep it secret)[/dim]",
    )


@app.command("migrate")
def migrate_command(
    check: Annotated[
        bool,
        typer.Option("--check", help="Only tell whether a migration is pending (exit 1 if so)"),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply database migrations (``--check``: change nothing, tell whether one is pending)."""
    current = settings()
    url = current.resolved_database_url
    if check:
        found, head = migrate.pending(url)
        data = {"current": found, "head": head, "pending": found != head}
        if found == head:
            emit(as_json, data, f"Database is up to date (revision {head}).")
            return
        emit(as_json, data, f"A migration is pending: revision {found or 'none'} -> {head}.")
        raise typer.Exit(1)
    migrate.upgrade(url)
    emit(as_json, {"migrated": True}, "Database is up to date.")


@app.command("backup")
def backup_command(
    target: Annotated[Path, typer.Argument(help="The backup file to write.")],
    as_json: JsonFlag = False,
) -> None:
    """Back up the license database while the server serves (SQLite: the online backup API;
    PostgreSQL: pg_dump). The signing keys and the master key are not in it: keep them apart."""
    from licensor.store import backup

    current = settings()
    try:
        backup.backup(current.resolved_database_url, target)
    except backup.BackupError as exc:
        raise fail(str(exc)) from None
    data = {"backup": str(target), "keys_dir": str(current.resolved_keys_dir)}
    emit(
        as_json,
        data,
        f"Backup written to {target}.\nNot in it, keep them apart: the signing keys "
        f"({current.resolved_keys_dir}) and the master key (LICENSOR_MASTER_KEY, or "
        f"{current.data_dir / 'master.key'}).",
    )


@app.command("restore")
def restore_command(
    source: Annotated[Path, typer.Argument(help="A file `licensor backup` wrote.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the database that is there")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Restore a backup into the configured database (a fresh one unless ``--force``); put
    the signing keys and the master key of the backed-up server in place too."""
    from licensor.store import backup

    current = settings()
    try:
        backup.restore(current.resolved_database_url, source, force=force)
    except (backup.BackupError, OSError) as exc:
        raise fail(str(exc)) from None
    emit(as_json, {"restored": str(source)}, f"Restored {source}; then run `licensor migrate`.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    demo: Annotated[
        bool, typer.Option(help="Create and print a demo product and license.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the server (migrations and keys are prepared first)."""
    from licensor.cli import workers as server_workers

    current = settings()
    # every worker's metrics in files of one empty directory, added up at the scrape: set
    # before prometheus-client is imported here or in a worker (its mode is chosen then)
    metrics_dir = current.data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    prepare(current)
    if demo:
        from licensor import demo as demo_module

        demo_module.print_banner(demo_module.ensure_demo(current, f"http://{host}:{port}"))
    os.environ["LICENSOR_DATA_DIR"] = str(current.data_dir.resolve())
    # (uvicorn; on Linux with a listening socket per worker: see cli/workers.py)
    server_workers.serve(
        "licensor.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


@app.command("public-key")
def public_key(as_json: JsonFlag = False) -> None:
    """The public key(s) a client must embed to verify Licensor's signatures."""
    current = settings()
    keyring = prepare(current)
    keys = keyring.public_keys()
    if as_json:
        emit(True, {"keys": keys}, "")
        return
    for key in keys:
        state = "active" if key["active"] else "retired"
        sys.stdout.write(f"# kid {key['kid']} {key['algorithm']} ({state})\n{key['public_key']}")


# -- companies and credentials -----------------------------------------------------------------


@company_app.command("create")
def company_create(name: str, as_json: JsonFlag = False) -> None:
    """Create a company (vendor account)."""
    current = settings()
    with transaction(current) as session:
        created = catalogue.create_company(session, name)
        data = {"id": created.id, "name": created.name}
    emit(as_json, data, f"Company {name} created (id {data['id']}).")


@company_app.command("settings")
def company_settings(
    company: CompanyOption = None,
    allow_password_change: Annotated[
        bool | None,
        typer.Option(
            "--allow-password-change/--no-allow-password-change",
            help="License users may change their password (/api/v4/change_password)",
        ),
    ] = None,
    server: ServerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the company's settings, or change them."""
    api = _admin.backend(server, company)
    if allow_password_change is None:
        found = _admin.call(api, "GET", "/company")
    else:
        body = {"allow_password_change": allow_password_change}
        found = _admin.call(api, "PATCH", "/company", body=body)
    text = "\n".join(f"{name:24} {value}" for name, value in found.items())
    emit(as_json, found, text)


@console_user_app.command("create")
def console_user_create(
    email: Annotated[str, typer.Argument(help="The e-mail they sign in with.")],
    role: Annotated[str, typer.Option(help="admin | support | read-only")] = "admin",
    password: Annotated[
        str | None, typer.Option(help="Their password (asked, hidden, when not given)")
    ] = None,
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A person who signs in to the web console (``/console``) with one of the management
    API's roles (on the server's own machine: the database directly)."""
    from licensor.services import console

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    current = settings()
    with transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        made = console.create_user(session, owner.id, email, password, role)
        data = {"id": made.id, "email": made.email, "role": made.role, "company_id": owner.id}
    emit(as_json, data, f"Console user {data['email']} ({role}) created: sign in at /console.")


@api_key_app.command("create")
def api_key_create(
    company: CompanyOption = None,
    read_only: Annotated[bool, typer.Option("--read-only")] = False,
    product: Annotated[list[str] | None, typer.Option(help="Limit to this product.")] = None,
    label: str = "",
    server: ServerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key + shared key (the shared key is shown only now; ``id`` names it to
    ``rotate`` and ``revoke``, as the api key itself does)."""
    body = {"read_only": read_only, "products": product, "label": label}
    made = _admin.call(_admin.backend(server, company), "POST", "/api-keys", body=body)
    emit(
        as_json,
        made,
        f"api key    {made['api_key']}\nshared key {made['shared_key']}\nid         {made['id']}",
    )


@oauth_app.command("create")
def oauth_create(
    company: CompanyOption = None,
    scope: Annotated[str, typer.Option(help="company | customer | license")] = "company",
    customer: Annotated[str | None, typer.Option(help="Customer e-mail (customer scope)")] = None,
    license_id: Annotated[int | None, typer.Option(help="License id (license scope)")] = None,
    server: ServerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create OAuth client credentials (the secret is shown only now; ``id`` or the client id
    names them to ``rotate`` and ``revoke``)."""
    api = _admin.backend(server, company)
    customer_id = None
    if customer:
        found = _admin.call(api, "GET", "/customers", params={"search": customer})["items"]
        exact = [c for c in found if c["email"] == customer.strip().lower()]
        if not exact:
            raise fail(f"customer: no customer {customer!r}")
        customer_id = exact[0]["id"]
    body = {"scope": scope, "customer_id": customer_id, "license_id": license_id}
    made = _admin.call(api, "POST", "/oauth-clients", body=body)
    emit(
        as_json,
        made,
        f"client id     {made['client_id']}\nclient secret {made['client_secret']}\n"
        f"id            {made['id']}",
    )


# -- catalogue ---------------------------------------------------------------------------------


@product_app.command("create")
def product_create(
    code: Annotated[str, typer.Argument(help="Short code clients send as `product`.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    company: CompanyOption = None,
    authorization_method: Annotated[str, typer.Option(help="license-key | user")] = "license-key",
    prevent_vm: Annotated[bool, typer.Option("--prevent-vm")] = False,
    no_offline: Annotated[
        bool,
        typer.Option("--no-offline-activation", help="Refuse activation by request file"),
    ] = False,
    versions: Annotated[str | None, typer.Option(help="Allowed versions, e.g. '>=1.0,<3'")] = None,
    allow_trial: Annotated[bool, typer.Option("--allow-trial")] = False,
    trial_days: Annotated[int, typer.Option(min=0)] = 0,
    floating_users: Annotated[
        int | None,
        typer.Option(min=1, help="A floating cloud license: at most N computers at once"),
    ] = None,
    floating_timeout: Annotated[
        int | None, typer.Option(min=1, help="Minutes a seat stays held without a check [5]")
    ] = None,
    max_borrow_hours: Annotated[
        int | None, typer.Option(min=1, help="Allow borrowing a seat for up to N hours")
    ] = None,
    bundle: Annotated[
        list[str] | None,
        typer.Option(help="A bundle of these products (repeat, or comma-separated)"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a product (``--bundle``: a bundle product; its licenses hold one license of each
    product in it, under one key)."""
    current = settings()
    with transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        product = catalogue.create_product(
            session,
            owner.id,
            catalogue.ProductSpec(
                short_code=code,
                name=name,
                authorization_method=authorization_method,
                prevent_vm=prevent_vm,
                allow_offline_activation=not no_offline,
                version_spec=versions,
                allow_trial=allow_trial,
                trial_days=trial_days,
                is_floating_cloud=floating_users is not None,
                floating_users=floating_users or 0,
                floating_timeout=floating_timeout or 0,
                can_borrow=max_borrow_hours is not None,
                max_borrow_time=max_borrow_hours or 0,
                bundle=[c.strip() for item in bundle for c in item.split(",") if c.strip()]
                if bundle
                else None,
            ),
        )
        data = {
            "id": product.id,
            "short_code": product.short_code,
            "name": product.name,
            "authorization_method": product.authorization_method,
            "bundle": product.bundle_items,
        }
    emit(as_json, data, f"Product {code} created (id {data['id']}).")


@product_app.command("release")
def product_release(
    code: str,
    version: str,
    date: Annotated[str, typer.Option(help="Release date (YYYY-MM-DD)")],
    company: CompanyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a release of a product (used for maintenance-period version checks)."""
    current = settings()
    released = parse_date(date, "date")
    assert released is not None
    with transaction(current) as session:
        from licensor.store import repository

        owner = catalogue.resolve_company(session, company)
        product = repository.product_by_code(session, owner.id, code)
        if product is None:
            raise fail(f"product: no product {code!r}")
        catalogue.add_release(session, product, version, released)
    emit(
        as_json,
        {"product": code, "version": version, "release_date": date},
        f"Release {version} of {code} recorded.",
    )


@license_app.command("create")
def license_create(
    product: Annotated[str, typer.Option(help="Product short code.")],
    license_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="perpetual | time-limited | subscription | consumption [default: perpetual]",
        ),
    ] = None,
    company: CompanyOption = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Issue from this policy (default: the product's default policy)"),
    ] = None,
    max_activations: Annotated[int | None, typer.Option(min=0, help="[default: 1]")] = None,
    unlimited_activations: Annotated[bool, typer.Option("--unlimited-activations")] = False,
    validity_period: Annotated[str | None, typer.Option(help="Expiry date (ISO 8601)")] = None,
    validity_days: Annotated[int | None, typer.Option(help="Days from first activation")] = None,
    start_date: Annotated[str | None, typer.Option(help="Not activatable before (ISO)")] = None,
    max_transfers: Annotated[
        int | None, typer.Option(help="0 unlimited, N at most, -1 none [default: 0]")
    ] = None,
    prevent_vm: Annotated[bool, typer.Option("--prevent-vm")] = False,
    no_offline: Annotated[
        bool,
        typer.Option("--no-offline-activation", help="Refuse activation by request file"),
    ] = False,
    trial: Annotated[bool, typer.Option("--trial")] = False,
    trial_days: Annotated[int | None, typer.Option()] = None,
    grace_period: Annotated[
        int | None, typer.Option(help="Grace hours after expiry [default: 0]")
    ] = None,
    maintenance_until: Annotated[str | None, typer.Option(help="Maintenance end (ISO)")] = None,
    versions: Annotated[str | None, typer.Option(help="Allowed versions, e.g. '>=1,<2'")] = None,
    max_consumptions: MaxConsumptionsOption = None,
    unlimited_consumptions: UnlimitedConsumptionsFlag = False,
    overages: OveragesOption = None,
    negative_consumptions: NegativeConsumptionsFlag = False,
    consumption_period: ConsumptionPeriodOption = None,
    floating_users: FloatingUsersOption = None,
    floating_timeout: FloatingTimeoutOption = None,
    max_borrow_hours: MaxBorrowHoursOption = None,
    user: Annotated[str | None, typer.Option(help="License user e-mail (user products)")] = None,
    password: Annotated[str | None, typer.Option(help="License user password")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer e-mail")] = None,
    order_id: Annotated[str | None, typer.Option(help="External order id")] = None,
    key: Annotated[str | None, typer.Option(help="Use this key instead of a new one")] = None,
    count: Annotated[int, typer.Option(min=1, help="How many to issue")] = 1,
    server: Annotated[
        str | None, typer.Option(help="Issue through this server's management API")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue licenses. ``--count`` issues many at once (bulk inserts, with a progress bar).
    Options given override the policy's values (``--policy``, else the product's default)."""
    current = settings()
    if user and password is None:
        password = typer.prompt("Password for the license user", hide_input=True)
    # Only what was given: the rest comes from the policy, or the usual defaults.
    given: dict[str, Any] = {
        "license_type": license_type,
        "max_activations": max_activations,
        "allow_unlimited_activations": True if unlimited_activations else None,
        "validity_days": validity_days,
        "max_transfers": max_transfers,
        "prevent_vm": True if prevent_vm else None,
        "allow_offline_activation": False if no_offline else None,
        "is_trial": True if trial else None,
        "trial_days": trial_days,
        "grace_period": grace_period,
        "version_spec": versions,
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
        "customer_email": customer,
        "license_key": key,
        "user_email": user,
        "user_password": password,
    }
    dates = {
        "validity_period": (validity_period, "validity-period"),
        "start_date": (start_date, "start-date"),
        "maintenance_period": (maintenance_until, "maintenance-until"),
    }
    fields = {k: v for k, v in given.items() if v is not None}
    if server is not None:
        body = {**fields, **{k: v for k, (v, _) in dates.items() if v is not None}}
        if order_id is not None:
            body["order_id"] = order_id
        body.update(product=product, count=count, policy=policy)
        api = _admin.backend(server, company)
        items = _admin.call(api, "POST", "/licenses", body=body)["items"]
        issued = [
            {"id": i["id"], "license_key": i["license_key"], "policy_id": i["policy_id"]}
            for i in items
        ]
    else:
        for name, (value, option) in dates.items():
            if value is not None:
                fields[name] = parse_date(value, option)
        if order_id is not None:
            fields["order_store_id"] = order_id
        issued = _issue_locally(current, company, product, fields, policy, count, as_json)
    if user:
        issued[0]["username"] = user.lower()
    if as_json:
        emit(True, issued if count > 1 else issued[0], "")
        return
    for item in issued:
        sys.stdout.write(f"{item['license_key'] or item.get('username')}\n")


def _issue_locally(
    current: Settings,
    company: str | None,
    product: str,
    fields: dict[str, Any],
    policy: str | None,
    count: int,
    as_json: bool,
) -> list[dict[str, Any]]:
    from licensor.services import audit, policies
    from licensor.store import repository

    now = datetime.now(UTC)
    with transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        spec = policies.spec_for(session, owner.id, product, fields, policy=policy, now=now)
        if count > 1 and not as_json:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
            ) as bar:
                task = bar.add_task("Issuing licenses", total=count)
                ids = catalogue.create_licenses(
                    session,
                    owner.id,
                    product,
                    spec,
                    count=count,
                    now=now,
                    on_progress=lambda n: bar.advance(task, n),
                )
        else:
            ids = catalogue.create_licenses(session, owner.id, product, spec, count=count, now=now)
        audit.record(
            session,
            company_id=owner.id,
            actor="cli:local",
            action="license.create",
            object_type="license",
            object_id=ids[0] if count == 1 else f"{ids[0]}..{ids[-1]}",
            after={
                "product": product,
                "count": count,
                "license_type": spec.license_type,
                "policy_id": spec.policy_id,
            },
            now=now,
        )
        rows = repository.licenses_by_ids(session, ids)
        return [
            {"id": row.id, "license_key": row.license_key, "policy_id": row.policy_id}
            for row in rows
        ]


@blacklist_app.command("add")
def blacklist_add(
    hardware_id: str,
    company: CompanyOption = None,
    product: Annotated[str | None, typer.Option(help="Only for this product")] = None,
    reason: str = "",
    as_json: JsonFlag = False,
) -> None:
    """Refuse every License API call from this device."""
    current = settings()
    with transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        entry = catalogue.blacklist_device(
            session, owner.id, hardware_id, product_code=product, reason=reason
        )
        data = {"id": entry.id, "hardware_id": hardware_id, "product": product}
    emit(as_json, data, f"Device {hardware_id} blacklisted.")


_admin.add_license_commands(license_app)
_admin.add_usage_commands(license_app)
app.add_typer(_admin.device_app, name="device")
app.add_typer(_admin.customer_app, name="customer")
app.add_typer(_admin.token_app, name="token")
app.add_typer(_admin.export_app, name="export")
app.add_typer(_admin.import_app, name="import")
app.command("audit")(_admin.audit_command)
app.add_typer(_admin.order_app, name="order")
app.add_typer(_admin.release_app, name="release")
app.add_typer(_admin.license_user_app, name="license-user")
app.add_typer(_admin.feature_app, name="feature")
app.add_typer(_admin.policy_app, name="policy")
app.add_typer(_admin.offline_app, name="offline")
product_app.command("update")(_admin.product_update)
app.add_typer(_admin.custom_field_app, name="custom-field")
_admin.credential_commands(api_key_app, "api_keys", "/api-keys", "shared_key")
_admin.credential_commands(oauth_app, "oauth_clients", "/oauth-clients", "client_secret")


app.add_typer(_qlm_app, name="qlm")

app.add_typer(_sso_app, name="customer-account")


def run() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
