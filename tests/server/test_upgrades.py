"""Upgrades from every earlier schema revision, on SQLite and PostgreSQL: a database at each
revision holding a company, an API key, a product, a license and an activated device (the rows
today's code writes, stored in the columns that revision has) migrates to head, and the license,
its device and a signed check answer survive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, insert, select, text

from licensor.keyring import Keyring
from licensor.protocol.signing import PublicKeySet, license_signing_string
from licensor.services import catalogue, check
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.settings import Settings
from licensor.store import migrate
from licensor.store.db import Database
from licensor.store.models import Device
from tests.harness.postgres import PostgresServer
from tests.server.processes import MASTER_KEY

TABLES = ("companies", "api_keys", "products", "licenses", "devices")
HW = "upgraded-device"


def revisions() -> list[str]:
    """Every revision but the head, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    found = [r.revision for r in script.walk_revisions()]
    return list(reversed(found))[:-1]


def rows_of_today(tmp_path: Path) -> tuple[dict[str, list[dict[str, Any]]], str, int]:
    """The rows today's code writes for a licensed, activated device; its key; the company."""
    url = f"sqlite:///{tmp_path / 'today.db'}"
    migrate.upgrade(url)
    db = Database(url)
    try:
        with db.transaction(write=True) as session:
            from licensor.secrets_at_rest import MasterKey

            company = catalogue.create_company(session, "Upgraded")
            catalogue.create_api_key(session, MasterKey.from_base64(MASTER_KEY), company.id)
            catalogue.create_product(session, company.id, catalogue.ProductSpec("app", "App"))
            license_ = catalogue.create_license(
                session,
                company.id,
                "app",
                catalogue.LicenseSpec(max_activations=2),
                now=datetime.now(UTC),
            )
            license_.times_activated = 1
            session.add(Device(license_id=license_.id, hardware_id=HW, active=True))
            key, company_id = license_.license_key or "", company.id
        engine = create_engine(url)
        metadata = MetaData()
        metadata.reflect(engine, only=TABLES)
        with engine.connect() as connection:
            rows = {
                name: [dict(r._mapping) for r in connection.execute(select(metadata.tables[name]))]
                for name in TABLES
            }
        engine.dispose()
    finally:
        db.dispose()
    return rows, key, company_id


@pytest.fixture(scope="module")
def today(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, list[dict[str, Any]]], str, int]:
    return rows_of_today(tmp_path_factory.mktemp("today"))


@pytest.mark.parametrize("revision", revisions())
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_at_every_revision_upgrades_with_its_data(
    request: pytest.FixtureRequest,
    kind: str,
    revision: str,
    today: tuple[dict[str, list[dict[str, Any]]], str, int],
    tmp_path: Path,
) -> None:
    rows, key, company_id = today
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.create_database("up_" + uuid.uuid4().hex[:12])
    migrate.upgrade(url, revision)
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine, only=TABLES)
    with engine.begin() as connection:
        for name in TABLES:
            table = metadata.tables[name]
            kept = [{k: v for k, v in row.items() if k in table.c} for row in rows[name]]
            connection.execute(insert(table), kept)
        if kind == "postgresql":  # (ids given: move the sequences past them)
            for name in TABLES:
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), 100)")
                )
    engine.dispose()

    migrate.upgrade(url)
    assert migrate.pending(url) == (migrate.head_revision(), migrate.head_revision())
    db = Database(url)
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url=url, master_key=MASTER_KEY)
    keyring = Keyring.load_or_create(settings.resolved_keys_dir)
    from licensor.secrets_at_rest import MasterKey

    keys = ServerKeys(keyring, MasterKey.from_base64(MASTER_KEY), settings)
    try:
        with db.transaction() as session:
            checked = check.device_in_session(
                session,
                keys,
                Caller(company_id, shared_key="x", api_key="y"),
                LicenseRef("app", HW, license_key=key),
                now=datetime.now(UTC),
            )
            body = checked.body(keys, now=datetime.now(UTC), algorithm="rsa-sha256")
        assert (body["license_key"], body["hardware_id"], body["times_activated"]) == (key, HW, 1)
        public = PublicKeySet.from_pem([k["public_key"] for k in keyring.public_keys()])
        signed = license_signing_string(HW, key, body["validity_period"]).encode()
        public.verify(signed, body["license_signature"])
    finally:
        db.dispose()
