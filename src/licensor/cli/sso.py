"""``licensor customer-account ...``: a vendor's business customers and their identity provider.

Registered by ``licensor.cli.main``; the helpers come from ``licensor.cli.common``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from licensor.cli import common as cli

customer_account_app = typer.Typer(
    help="Customer accounts and their single sign-on (OpenID Connect).", no_args_is_help=True
)


@customer_account_app.command("create")
def create(
    code: Annotated[str, typer.Argument(help="The account's code (customer_account_code).")],
    issuer: Annotated[
        str | None, typer.Option(help="OIDC issuer URL (discovery at .well-known).")
    ] = None,
    client_id: Annotated[str | None, typer.Option(help="Client id at the provider.")] = None,
    client_secret: Annotated[
        str | None, typer.Option(help="Client secret (stored encrypted).")
    ] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="Allowed redirect URI (repeatable).")
    ] = None,
    email_claim: Annotated[str, typer.Option(help="Claim holding the e-mail.")] = "email",
    auto_create_license_id: Annotated[
        int | None, typer.Option(help="Unknown users become license users of this license.")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    company: Annotated[
        str | None, typer.Option("--company", help="Company name or id (default: the only one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Create a customer account, connected to its OpenID Connect provider when --issuer is given."""
    from licensor.services import catalogue, sso

    oidc = None
    if issuer is not None:
        if not (client_id and client_secret and redirect_uri):
            raise cli.fail("--issuer needs --client-id, --client-secret and --redirect-uri")
        oidc = sso.OidcSettings(
            issuer,
            client_id,
            client_secret,
            tuple(redirect_uri),
            email_claim=email_claim,
            auto_create_license_id=auto_create_license_id,
        )
    current = cli.settings()
    with cli.transaction(current) as session:
        owner = catalogue.resolve_company(session, company)
        account = sso.create_customer_account(
            session, cli.master_key(current), owner.id, code, name=name, oidc=oidc
        )
        data = {
            "id": account.id,
            "code": account.code,
            "issuer": account.oidc_issuer,
            "client_id": account.oidc_client_id,
            "redirect_uris": account.oidc_redirect_uris,
            "email_claim": account.oidc_email_claim,
            "auto_create_license_id": account.auto_create_license_id,
        }
    cli.emit(as_json, data, f"Customer account {code} created.")
