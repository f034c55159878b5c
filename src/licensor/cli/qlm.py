"""``licensor qlm ...``: QLM-style options on the server host, and Computer Keys for customers.

Registered by ``licensor.cli.main``; the helpers come from ``licensor.cli.common``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from licensor.cli import common as cli

qlm_app = typer.Typer(
    help="QLM-style activation: limits, customer accounts, Computer Keys.", no_args_is_help=True
)

Company = Annotated[
    str | None, typer.Option("--company", help="Company name or id (default: the only one).")
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PerSystem = Annotated[
    int | None, typer.Option(help="Activations one computer may make (0 = no limit).")
]
ReleaseCount = Annotated[
    int | None, typer.Option(help="Releases allowed in the period (-1 = unlimited).")
]
ReleasePeriod = Annotated[
    int | None, typer.Option(help="Days the release limit looks back (0 = ever).")
]


@qlm_app.command("product")
def product(
    code: Annotated[str, typer.Argument(help="Product short code.")],
    max_activations_per_system: PerSystem = None,
    vm_only: Annotated[
        bool | None, typer.Option("--vm-only/--all-computers", help="Per-system limit on VMs only.")
    ] = None,
    max_release_count: ReleaseCount = None,
    max_release_period_days: ReleasePeriod = None,
    require_deactivation_code: Annotated[
        bool | None,
        typer.Option("--require-deactivation-code/--no-require-deactivation-code"),
    ] = None,
    lookup_fields: Annotated[
        str | None, typer.Option(help="Fields that find a license: 'OrderID,ReceiptID'.")
    ] = None,
    company: Company = None,
    as_json: Json = False,
) -> None:
    """Set a product's QLM-style activation limits."""
    from licensor.services import catalogue, qlm_options

    current = cli.settings()
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        found = qlm_options.configure_product(
            session,
            owner.id,
            code,
            qlm_options.ActivationLimits(
                max_activations_per_system=max_activations_per_system,
                max_activations_per_system_vm_only=vm_only,
                max_release_count=max_release_count,
                max_release_period_days=max_release_period_days,
                release_requires_deactivation_code=require_deactivation_code,
                activation_lookup_fields=[f.strip() for f in lookup_fields.split(",") if f.strip()]
                if lookup_fields is not None
                else None,
            ),
            now=datetime.now(UTC),
        )
        data = {"product": found.short_code, **qlm_options.activation_limits_of(found)}
    cli.emit(as_json, data, "\n".join(f"{k:36} {v}" for k, v in data.items()))


@qlm_app.command("license")
def license_(
    key: Annotated[str, typer.Argument(help="License key.")],
    features: Annotated[str | None, typer.Option(help="QLM features, e.g. '0:3;1:2'.")] = None,
    receipt_id: Annotated[
        str | None, typer.Option(help="Receipt id (activation by field).")
    ] = None,
    max_activations_per_system: PerSystem = None,
    max_release_count: ReleaseCount = None,
    max_release_period_days: ReleasePeriod = None,
    company: Company = None,
    as_json: Json = False,
) -> None:
    """Set a license's features, receipt id and limits (they override its product's)."""
    from licensor.protocol.computer_key import features_text
    from licensor.services import catalogue, qlm_options

    current = cli.settings()
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        found = qlm_options.configure_license(
            session,
            owner.id,
            key,
            features=features,
            receipt_id=receipt_id,
            limits=qlm_options.ActivationLimits(
                max_activations_per_system=max_activations_per_system,
                max_release_count=max_release_count,
                max_release_period_days=max_release_period_days,
            ),
            now=datetime.now(UTC),
        )
        data = {
            "license_key": found.license_key,
            "features": features_text(found.feature_flags),
            "receipt_id": found.receipt_id,
            "max_activations_per_system": found.max_activations_per_system,
            "max_release_count": found.max_release_count,
            "max_release_period_days": found.max_release_period_days,
        }
    cli.emit(as_json, data, "\n".join(f"{k:28} {v}" for k, v in data.items()))


@qlm_app.command("customer")
def customer(
    email: Annotated[str, typer.Argument(help="Customer e-mail.")],
    password: Annotated[
        str | None, typer.Option(help="Account password (activation by username + password).")
    ] = None,
    organization: Annotated[
        bool | None,
        typer.Option(
            "--allow-organization-users/--deny-organization-users",
            help="Users of the same e-mail domain may ask authorization codes for its licenses.",
        ),
    ] = None,
    company: Company = None,
    as_json: Json = False,
) -> None:
    """A customer's account and organisation setting."""
    from licensor.services import catalogue, qlm_options

    current = cli.settings()
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        found = qlm_options.configure_customer(
            session,
            owner.id,
            email,
            password=password,
            allow_organization_users=organization,
            now=datetime.now(UTC),
        )
        data = {
            "email": found.email,
            "has_password": found.password_hash is not None,
            "allow_organization_users": found.allow_organization_users,
        }
    cli.emit(as_json, data, "\n".join(f"{k:26} {v}" for k, v in data.items()))


@qlm_app.command("computer-key")
def computer_key(
    key: Annotated[str, typer.Argument(help="License key (the Activation Key).")],
    computer_id: Annotated[str, typer.Option(help="The customer's ComputerID (hardware_id).")],
    computer_name: Annotated[str, typer.Option(help="Display name of the computer.")] = "",
    company: Company = None,
    as_json: Json = False,
) -> None:
    """Activate a customer's computer and print its Computer Key (manual / offline activation)."""
    from licensor.services import catalogue, qlm
    from licensor.services.context import ServerKeys
    from licensor.services.licensing import ActivationExtras, DeviceInfo

    current = cli.settings()
    keyring = cli.prepare(current)
    keys = ServerKeys(keyring, cli.master_key(current), current)
    now = datetime.now(UTC)
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        caller = qlm.vendor_caller(owner.id)
        grant = qlm.activate_by_key(
            session,
            caller,
            keys,
            qlm.key_ref(session, caller, license_key=key, hardware_id=computer_id, product=None),
            DeviceInfo(hostname=computer_name),
            ActivationExtras(allow_reactivation=True, increment_activation_count=False),
            now=now,
        )
        data = {
            "computer_key": grant.computer_key,
            "license_key": grant.license.license_key,
            "product": grant.product.short_code,
            "computer_id": computer_id,
            "reactivated": grant.reactivated,
        }
    cli.emit(as_json, data, grant.computer_key)


@qlm_app.command("release")
def release(
    key: Annotated[str, typer.Argument(help="License key.")],
    computer_id: Annotated[str, typer.Option(help="The ComputerID to release.")],
    deactivation_code: Annotated[
        str | None, typer.Option(help="The code the customer's application showed offline.")
    ] = None,
    company: Company = None,
    as_json: Json = False,
) -> None:
    """Release a computer's seat for a customer, checking its Deactivation Verification Code."""
    from licensor.services import catalogue, qlm

    current = cli.settings()
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        caller = qlm.vendor_caller(owner.id)
        qlm.release(
            session,
            caller,
            qlm.key_ref(session, caller, license_key=key, hardware_id=computer_id, product=None),
            deactivation_code=deactivation_code,
            now=datetime.now(UTC),
        )
    cli.emit(
        as_json,
        {"license_key": key, "computer_id": computer_id, "released": True},
        f"Released {computer_id} from {key}.",
    )
