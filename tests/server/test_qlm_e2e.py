"""End to end against a real ``licensor serve`` process and a real SMTP server, on SQLite and
PostgreSQL: the QLM XML front (ValidateLicenseHttp, the authorization-code flow read from the
mail) and licensor.client's QLM-style variants; every Computer Key validates offline."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from licensor.client import (
    AsyncComputerKeyClient,
    ComputerKeyClient,
    HmacCredentials,
    LicenseRefused,
    NotActivated,
    OAuthCredentials,
    WrongComputer,
)
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.services import catalogue, qlm
from tests.server.mailbox import Mailbox, run_mailbox
from tests.server.processes import Deployment, prepare, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


@pytest.fixture
def deployment(database_url: str, tmp_path: Path, mailbox: Mailbox) -> Deployment:
    prepared = prepare(database_url, tmp_path / "data")
    prepared.env["LICENSOR_SMTP_HOST"] = "127.0.0.1"
    prepared.env["LICENSOR_SMTP_PORT"] = str(mailbox.port)
    prepared.env["LICENSOR_SMTP_FROM"] = "licensing@vendor.example"
    now = datetime.now(UTC)
    with prepared.db.transaction(write=True) as session:
        catalogue.create_product(
            session, prepared.company_id, catalogue.ProductSpec("photo", "Photo Pro")
        )
        for email, order in [("ann@example.com", "ORD-1"), ("bob@example.com", "ORD-2")]:
            catalogue.create_license(
                session,
                prepared.company_id,
                "photo",
                catalogue.LicenseSpec(
                    max_activations=2, customer_email=email, order_store_id=order
                ),
                now=now,
            )
        qlm.set_customer_password(
            session, prepared.company_id, "bob@example.com", "bob's password", now=now
        )
    return prepared


def keys_of(deployment: Deployment) -> dict[str, str]:
    with deployment.db.transaction() as session:
        return {
            license_.order_store_id: license_.license_key or ""
            for license_ in catalogue.repository.licenses(session, deployment.company_id)
        }


def qlm_call(
    base: str, deployment: Deployment, method: str, *, form: bool = False, **args: str
) -> dict[str, str]:
    date = http_date()
    headers = {
        "Date": date,
        "Authorization": format_authorization(
            deployment.api_key, hmac_signature(deployment.shared_key, date)
        ),
    }
    url = f"{base}/qlmservice.asmx/{method}"
    if form:
        response = httpx.post(url, data=args, headers=headers, timeout=30)
    else:
        response = httpx.get(url, params=args, headers=headers, timeout=30)
    signature = response.headers["LicenseSignature"]
    deployment.public_keys.verify(response.content, signature, algorithm="rsa-sha256")
    root = ET.fromstring(response.content)
    assert root.tag == "QuickLicenseManager"
    return {child.tag: child.text or "" for child in root}


def app(deployment: Deployment, base: str | None, hw: str, tmp_path: Path) -> ComputerKeyClient:
    return ComputerKeyClient(
        "photo",
        deployment.public_keys,
        server=base,
        credentials=HmacCredentials(deployment.api_key, deployment.shared_key) if base else None,
        hardware_id=hw,
        storage_dir=tmp_path / hw,
    )


def test_qlm_front_and_client_end_to_end(
    deployment: Deployment, mailbox: Mailbox, tmp_path: Path
) -> None:
    keys = keys_of(deployment)
    with serve(deployment) as base:
        # -- ValidateLicenseHttp: the first call activates, later calls validate is_pckey
        first = qlm_call(
            base, deployment, "ValidateLicenseHttp", is_avkey=keys["ORD-1"], is_pcid="pc-ann-1",
            is_computer_name="Ann & Co <laptop>",
        )  # fmt: skip
        assert first["result"] == "The license was activated successfully.", first
        assert first["computerName"] == "Ann & Co <laptop>"
        offline = app(deployment, None, "pc-ann-1", tmp_path)
        installed = offline.install(first["pckey"])  # manual activation from the XML answer
        assert installed.product == "photo"
        assert offline.validate().license_id == installed.license_id
        later = qlm_call(
            base, deployment, "ValidateLicenseHttp", form=True, is_pckey=first["pckey"],
            is_pcid="pc-ann-1",
        )  # fmt: skip
        assert later["result"] == "The license is valid."
        with pytest.raises(WrongComputer):
            app(deployment, None, "pc-thief", tmp_path).install(first["pckey"])

        # -- authorization code through the QLM front, code read from the real mail
        asked = qlm_call(
            base, deployment, "RequestAuthorizationCodeForActivationHttp",
            is_email="ann@example.com", is_pcid="pc-ann-2",
        )  # fmt: skip
        assert "error" not in asked, asked
        message = mailbox.wait_for(1)
        assert message["To"] == "ann@example.com"
        code = mailbox.code_in(message)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        refused = qlm_call(
            base, deployment, "ActivateKeyByAuthorizationCodeHttp", is_authcode=wrong,
            is_pcid="pc-ann-2", is_email="ann@example.com",
        )  # fmt: skip
        assert refused["errorCode"] == "205"
        activated = qlm_call(
            base, deployment, "ActivateKeyByAuthorizationCodeHttp", is_authcode=code,
            is_pcid="pc-ann-2", is_email="ann@example.com",
        )  # fmt: skip
        assert "error" not in activated, activated
        second = app(deployment, None, "pc-ann-2", tmp_path)
        assert second.install(activated["pckey"]).license_id == installed.license_id
        reused = qlm_call(
            base, deployment, "ActivateKeyByAuthorizationCodeHttp", is_authcode=code,
            is_pcid="pc-ann-2", is_email="ann@example.com",
        )  # fmt: skip
        assert reused["errorCode"] == "205"
        assert "already been used" in reused["error"]

        # -- release with the Deactivation Verification Code shown offline by the client
        dvc = second.deactivate_offline()
        released = qlm_call(
            base, deployment, "ReleaseLicenseHttp", is_avkey=keys["ORD-1"], is_pcid="pc-ann-2",
            is_deactivation_code=dvc,
        )  # fmt: skip
        assert released["result"].startswith("Activation Key"), released

        # -- licensor.client's online variants (each answer verified, each key verified)
        by_code = app(deployment, base, "pc-ann-3", tmp_path)
        by_code.request_authorization_code("ann@example.com")
        got = by_code.activate_by_code(
            mailbox.code_in(mailbox.wait_for(2)), email="ann@example.com"
        )
        assert by_code.validate() == got
        with pytest.raises(LicenseRefused) as used:
            by_code.activate_by_code(mailbox.code_in(mailbox.wait_for(2)), email="ann@example.com")
        assert used.value.code == "authorization_code_used"

        by_key = app(deployment, base, "pc-bob-1", tmp_path)
        registered = by_key.activate(
            keys["ORD-2"], computer_name="bob-pc", customer={"email": "bob@example.com", "privacy_consent": True}
        )  # fmt: skip
        assert by_key.validate() == registered
        assert app(deployment, base, "pc-bob-1", tmp_path).activate(keys["ORD-2"]).license_id == (
            registered.license_id
        )  # the same computer again: no new seat
        by_field = app(deployment, base, "pc-bob-2", tmp_path)
        assert by_field.activate_by_field("OrderID", "ORD-2", "bob@example.com").product == "photo"
        with pytest.raises(LicenseRefused) as full:
            app(deployment, base, "pc-bob-3", tmp_path).activate_by_credentials(
                "bob@example.com", "bob's password"
            )
        assert full.value.code == "license_activated_max_times"
        by_field.release(keys["ORD-2"])
        with pytest.raises(NotActivated):
            by_field.validate()
        by_account = app(deployment, base, "pc-bob-3", tmp_path)
        assert by_account.activate_by_credentials("bob@example.com", "bob's password")
        with pytest.raises(LicenseRefused) as wrong_password:
            app(deployment, base, "pc-bob-4", tmp_path).activate_by_credentials(
                "bob@example.com", "guess"
            )
        assert wrong_password.value.code == "invalid_credentials"

        # -- the asyncio client, with an OAuth client's credentials
        with deployment.db.transaction(write=True) as session:
            oauth = catalogue.create_oauth_client(
                session, deployment.master_key, deployment.company_id
            )

        async def async_flow() -> None:
            client = AsyncComputerKeyClient(
                "photo",
                deployment.public_keys,
                server=base,
                credentials=OAuthCredentials(oauth.client_id, oauth.client_secret),
                hardware_id="pc-bob-3",
                storage_dir=tmp_path / "async",
            )
            again = await client.activate_by_credentials("bob@example.com", "bob's password")
            assert client.validate() == again
            await client.release(keys["ORD-2"])
            with pytest.raises(NotActivated):
                client.validate()

        asyncio.run(async_flow())

        # -- unauthenticated QLM calls are refused
        anonymous = httpx.get(f"{base}/qlmservice.asmx/PingHttp", timeout=30)
        assert ET.fromstring(anonymous.content).findtext("errorCode") == "8"
