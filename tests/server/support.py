"""Test support: a License API caller that signs requests and verifies every answer's signature."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from licensor.api.app import create_app
from licensor.keyring import Keyring
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import PublicKeySet, parse_licensor_signature
from licensor.secrets_at_rest import MasterKey
from licensor.services import catalogue
from licensor.settings import Settings
from licensor.store import migrate
from licensor.store.db import Database
from licensor.store.models import License


def eventually(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (what another thread or process does meanwhile)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def verify_response(response: httpx.Response, keys: PublicKeySet) -> str:
    """Every License API answer is signed over its exact bytes; returns the algorithm used."""
    return verify_signed(response.status_code, response.headers.get, response.content, keys)


def verify_signed(
    status: int, header: Callable[[str], str | None], content: bytes, keys: PublicKeySet
) -> str:
    """``verify_response`` for any HTTP client: ``header(name)`` gives a response header."""
    ed = header("Licensor-Signature")
    if ed is not None:
        pairs = parse_licensor_signature(ed)
        keys.verify(content, pairs["signature"], kid=pairs["kid"], algorithm="ed25519")
        return "ed25519"
    signature = header("LicenseSignature")
    assert signature, f"unsigned answer {status}: {content[:200]!r}"
    keys.verify(content, signature, algorithm="rsa-sha256")
    return "rsa-sha256"


class Api:
    def __init__(
        self, client: httpx.Client | TestClient, keys: PublicKeySet, api_key: str, shared_key: str
    ) -> None:
        self.client = client
        self.keys = keys
        self.api_key = api_key
        self.shared_key = shared_key
        self.bearer: str | None = None

    def headers(self, date: str | None = None) -> dict[str, str]:
        date = date or http_date()
        if self.bearer:
            return {"Date": date, "Authorization": f"Bearer {self.bearer}"}
        return {
            "Date": date,
            "Authorization": format_authorization(
                self.api_key, hmac_signature(self.shared_key, date)
            ),
        }

    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = self.headers() if auth else {}
        all_headers.update(headers or {})
        response = self.client.request(method, path, headers=all_headers, **kwargs)
        verify_response(response, self.keys)
        return response

    def activate(self, **body: Any) -> httpx.Response:
        return self.call("POST", "/api/v4/activate_license", json=body)

    def check(self, **params: Any) -> httpx.Response:
        return self.call("GET", "/api/v4/check_license", params=params)

    def deactivate(self, **body: Any) -> httpx.Response:
        return self.call("POST", "/api/v4/deactivate_license", json=body)


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"status", "code", "message"}, body
    assert body["status"] == response.status_code
    return response.status_code, body["code"]


@dataclass
class Server:
    """A configured Licensor (real database, real keys) with an in-process HTTP client."""

    settings: Settings
    db: Database
    master_key: MasterKey
    keyring: Keyring
    company_id: int
    api: Api
    client: TestClient

    @property
    def public_keys(self) -> PublicKeySet:
        return self.api.keys

    def product(self, code: str = "app", **fields: Any) -> None:
        with self.db.transaction(write=True) as session:
            catalogue.create_product(
                session, self.company_id, catalogue.ProductSpec(code, code.title(), **fields)
            )

    def license(
        self, product: str = "app", company_id: int | None = None, **fields: Any
    ) -> License:
        with self.db.transaction(write=True) as session:
            return catalogue.create_license(
                session,
                company_id or self.company_id,
                product,
                catalogue.LicenseSpec(**fields),
                now=datetime.now(UTC),
            )

    def new_company(self, name: str) -> tuple[int, Api]:
        with self.db.transaction(write=True) as session:
            company = catalogue.create_company(session, name)
            key = catalogue.create_api_key(session, self.master_key, company.id)
        return company.id, Api(self.client, self.api.keys, key.api_key, key.shared_key)

    def api_key(self, **options: Any) -> Api:
        with self.db.transaction(write=True) as session:
            key = catalogue.create_api_key(session, self.master_key, self.company_id, **options)
        return Api(self.client, self.api.keys, key.api_key, key.shared_key)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self.db.transaction(write=True) as session:
            result = session.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []


_KEYS_CACHE: dict[str, Path] = {}


def shared_keys_dir(tmp_root: Path) -> Path:
    """RSA key generation is slow; tests share one key directory per worker."""
    if "dir" not in _KEYS_CACHE:
        directory = tmp_root / "keys"
        Keyring.load_or_create(directory)
        _KEYS_CACHE["dir"] = directory
    return _KEYS_CACHE["dir"]


def start_server(
    database_url: str, data_dir: Path, keys_dir: Path, **settings: Any
) -> Iterator[Server]:
    master = base64.b64encode(b"k" * 32).decode()
    current = Settings(
        data_dir=data_dir,
        database_url=database_url,
        keys_dir=keys_dir,
        master_key=master,
        **settings,
    )
    migrate.upgrade(database_url)
    db = Database(database_url)
    master_key = MasterKey.from_base64(master)
    with db.transaction(write=True) as session:
        company = catalogue.create_company(session, "Acme")
        key = catalogue.create_api_key(session, master_key, company.id)
    keyring = Keyring.load(keys_dir)
    keys = PublicKeySet.from_pem([k["public_key"] for k in keyring.public_keys()])
    with TestClient(create_app(current), raise_server_exceptions=False) as client:
        yield Server(
            current,
            db,
            master_key,
            keyring,
            company.id,
            Api(client, keys, key.api_key, key.shared_key),
            client,
        )
    db.dispose()
