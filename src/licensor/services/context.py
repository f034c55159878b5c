"""What a use case needs to know about who is calling and what the server holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from licensor.keyring import Keyring
from licensor.secrets_at_rest import MasterKey
from licensor.settings import Settings

Scope = Literal["company", "customer", "license"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated License API caller: one company, maybe narrowed by key or OAuth scope."""

    company_id: int
    read_only: bool = False
    allowed_product_ids: frozenset[int] | None = None
    scope: Scope = "company"
    scope_customer_id: int | None = None
    scope_license_id: int | None = None
    api_key: str | None = None
    shared_key: str | None = None  # in clear only for the life of the request (offline_signature)
    client_id: str | None = None
    # who the audit log names instead of the key or client (a vendor handing in a request file)
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class ServerKeys:
    keyring: Keyring
    master_key: MasterKey
    settings: Settings
