"""Activation by authorization code against a real SMTP server (aiosmtpd on loopback), on SQLite
and PostgreSQL: the code arrives by mail, activates once, expires after 10 minutes, locks after 5
wrong tries, is stored only as a keyed hash; organisations; the vendor's mail template."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensor.protocol.computer_key import decode_computer_key
from tests.server.mailbox import Mailbox, run_mailbox, self_signed_certificate
from tests.server.support import Server, error_of, shared_keys_dir, start_server

HW = "c0ffee-computer"
HW2 = "decaf-computer"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


@pytest.fixture
def mail_server(
    database_url: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    mailbox: Mailbox,
) -> Iterator[Server]:
    yield from start_server(
        database_url,
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_from="licensing@vendor.example",
    )


def post(server: Server, endpoint: str, **body: Any) -> httpx.Response:
    return server.api.call("POST", f"/api/v4/{endpoint}", json=body)


def request_code(server: Server, email: str = "ann@example.com", **body: Any) -> httpx.Response:
    return post(server, "request_authorization_code", email=email, **body)


def use_code(server: Server, code: str, email: str | None = "ann@example.com", **body: Any) -> httpx.Response:  # fmt: skip
    if email is not None:
        body["email"] = email
    return post(server, "activate_license_by_code", authorization_code=code, **{"hardware_id": HW, **body})  # fmt: skip


def test_code_by_mail_activates_once(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    asked = request_code(mail_server, "Ann@Example.com", product="app")
    assert asked.status_code == 200, asked.text
    assert asked.json()["email"] == "ann@example.com"
    message = mailbox.wait_for(1)
    assert message["To"] == "ann@example.com"
    assert message["From"] == "licensing@vendor.example"
    assert "App" in message["Subject"]
    code = mailbox.code_in(message)
    stored = mail_server.sql("select code_hash, expires_at, created_at from authorization_codes")
    assert code not in stored[0][0]  # only a keyed hash is kept
    response = use_code(mail_server, code)
    assert response.status_code == 200, response.text
    claims = decode_computer_key(response.json()["computer_key"], mail_server.public_keys)
    assert claims.is_bound_to(HW)
    assert response.json()["customer"]["email"] == "ann@example.com"
    # single use: the same code again, even on the same computer, is refused
    assert error_of(use_code(mail_server, code)) == (400, "authorization_code_used")
    assert error_of(use_code(mail_server, code, hardware_id=HW2)) == (
        400,
        "authorization_code_used",
    )


def test_code_expires_after_ten_minutes(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    assert request_code(mail_server).status_code == 200
    code = mailbox.code_in(mailbox.wait_for(1))
    created, expires = mail_server.sql("select created_at, expires_at from authorization_codes")[0]
    assert _aware(expires) - _aware(created) == timedelta(minutes=10)
    mail_server.sql(
        "update authorization_codes set expires_at = :t", t=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert error_of(use_code(mail_server, code)) == (400, "authorization_code_expired")


def test_code_locks_after_five_wrong_tries(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    assert request_code(mail_server).status_code == 200
    code = mailbox.code_in(mailbox.wait_for(1))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    results = [error_of(use_code(mail_server, wrong))[1] for _ in range(5)]
    assert results == ["authorization_code_invalid"] * 4 + ["authorization_code_locked"]
    # the tries were committed although each answer was an error
    assert mail_server.sql("select failed_attempts from authorization_codes")[0][0] == 5
    assert error_of(use_code(mail_server, code)) == (400, "authorization_code_locked")
    assert mail_server.sql("select times_activated from licenses")[0][0] == 0
    # a new code replaces the locked one
    assert request_code(mail_server).status_code == 200
    fresh = mailbox.code_in(mailbox.wait_for(2))
    assert use_code(mail_server, fresh).status_code == 200


def test_a_new_code_replaces_the_pending_one(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    request_code(mail_server)
    old = mailbox.code_in(mailbox.wait_for(1))
    request_code(mail_server)
    new = mailbox.code_in(mailbox.wait_for(2))
    if old != new:
        assert error_of(use_code(mail_server, old)) == (400, "authorization_code_invalid")
    assert use_code(mail_server, new).status_code == 200


def test_code_bound_to_the_computer_that_asked(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com", max_activations=2)
    assert request_code(mail_server, hardware_id=HW).status_code == 200
    code = mailbox.code_in(mailbox.wait_for(1))
    # asked for HW: another computer cannot use it, and the try counts
    assert error_of(use_code(mail_server, code, hardware_id=HW2)) == (
        400,
        "authorization_code_invalid",
    )
    # without an e-mail the code is found through the computer that asked for it
    response = use_code(mail_server, code, email=None)
    assert response.status_code == 200, response.text


def test_unknown_email_and_activation_rules_still_apply(
    mail_server: Server, mailbox: Mailbox
) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com", enabled=False)
    assert error_of(request_code(mail_server, "eve@example.com")) == (400, "license_not_found")
    assert request_code(mail_server).status_code == 200
    code = mailbox.code_in(mailbox.wait_for(1))
    # a disabled license is refused by the same rules as every activation...
    assert error_of(use_code(mail_server, code)) == (400, "license_not_enabled")
    # ...and the code stays usable once the vendor fixes it (the refusal rolled back)
    mail_server.sql("update licenses set enabled = :t", t=True)
    assert use_code(mail_server, code).status_code == 200
    assert error_of(use_code(mail_server, "123456", email="nobody@example.com")) == (
        400,
        "authorization_code_invalid",
    )


def test_organisation_users_may_acquire_its_licenses(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="buyer@acme.example")
    assert error_of(request_code(mail_server, "dev@acme.example")) == (400, "license_not_found")
    mail_server.sql("update customers set allow_organization_users = :t", t=True)
    assert request_code(mail_server, "dev@acme.example").status_code == 200
    message = mailbox.wait_for(1)
    assert message["To"] == "dev@acme.example"
    response = use_code(mail_server, mailbox.code_in(message), email="dev@acme.example")
    assert response.status_code == 200, response.text
    assert error_of(request_code(mail_server, "dev@other.example")) == (400, "license_not_found")


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- mail configuration (the database kind does not matter here) ---------------------------------


@pytest.fixture
def templated_server(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    mailbox: Mailbox,
) -> Iterator[Server]:
    template = tmp_path / "code.txt"
    template.write_text(
        "Subject: [$company_name] code for $product_name\n\n"
        "Bonjour $email,\nvotre code : $code (valable $minutes minutes). $unknown stays\n",
        encoding="utf-8",
    )
    yield from start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        authorization_code_template=template,
    )


def test_vendor_template(templated_server: Server, mailbox: Mailbox) -> None:
    templated_server.product()
    templated_server.sql("update products set name = :n", n="Photo <Pro>\nBcc: eve@example.com")
    templated_server.license(customer_email="ann@example.com")
    assert request_code(templated_server).status_code == 200
    message = mailbox.wait_for(1)
    assert message["Subject"] == "[Acme] code for Photo <Pro> Bcc: eve@example.com"
    assert message["Bcc"] is None
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Bonjour ann@example.com" in text
    assert "(valable 10 minutes)" in text
    assert "$unknown stays" in text
    assert mailbox.envelopes[0][1] == ["ann@example.com"]
    assert use_code(templated_server, mailbox.code_in(message)).status_code == 200


def test_mail_not_configured_or_unreachable(sqlite_server: Server) -> None:
    sqlite_server.product()
    sqlite_server.license(customer_email="ann@example.com")
    assert error_of(request_code(sqlite_server)) == (503, "email_not_sent")


def test_smtp_server_down(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.server.processes import free_port

    for server in start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_timeout_seconds=2,
    ):
        server.product()
        server.license(customer_email="ann@example.com")
        assert error_of(request_code(server)) == (503, "email_not_sent")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_smtp_over_tls_with_credentials(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, security: str
) -> None:
    certificate = self_signed_certificate(tmp_path)
    with contextmanager(run_mailbox)(
        tls=security, certificate=certificate, credentials=("vendor", "s3cret")
    ) as box:
        databases = iter(range(10))

        def server_with(**mail: Any) -> Any:
            number = next(databases)
            return contextmanager(start_server)(
                f"sqlite:///{tmp_path / f'licensor-{number}.db'}",
                tmp_path / f"data-{number}",
                shared_keys_dir(tmp_path_factory.getbasetemp()),
                smtp_host="127.0.0.1",
                smtp_port=box.port,
                smtp_security=security,
                smtp_timeout_seconds=5,
                **mail,
            )

        with server_with(
            smtp_username="vendor", smtp_password="s3cret", smtp_ca_file=certificate[0]
        ) as server:
            server.product()
            server.license(customer_email="ann@example.com")
            assert request_code(server).status_code == 200
            assert box.logins == ["vendor"]
            assert use_code(server, box.code_in(box.wait_for(1))).status_code == 200
        with server_with(
            smtp_username="vendor", smtp_password="wrong", smtp_ca_file=certificate[0]
        ) as server:
            server.product()
            server.license(customer_email="ann@example.com")
            assert error_of(request_code(server)) == (503, "email_not_sent")
        # the server's certificate is checked: without the vendor's CA it is not trusted
        with server_with(smtp_username="vendor", smtp_password="s3cret") as server:
            server.product()
            server.license(customer_email="ann@example.com")
            assert error_of(request_code(server)) == (503, "email_not_sent")
        assert len(box.messages) == 1


def test_concurrent_uses_of_one_code_activate_once(server: Server) -> None:
    """Eight computers race with the same code (and ten wrong guesses race): one activation, and
    the lock counts exactly five tries, on both databases."""
    from concurrent.futures import ThreadPoolExecutor

    from licensor.services import qlm
    from licensor.services.context import Caller, ServerKeys
    from licensor.services.licensing import ActivationExtras, DeviceInfo

    server.product()
    server.license(customer_email="ann@example.com", max_activations=10)
    keys = ServerKeys(server.keyring, server.master_key, server.settings)
    caller = Caller(company_id=server.company_id)

    def ask() -> str:
        with server.db.transaction(write=True) as session:
            return qlm.request_authorization_code(
                session, caller, keys, email="ann@example.com", product=None, hardware_id=None,
                now=datetime.now(UTC),
            ).code  # fmt: skip

    def attempt(code: str, hardware_id: str) -> str:
        with server.db.transaction(write=True) as session:
            outcome = qlm.activate_by_authorization_code(
                session, caller, keys, code=code, hardware_id=hardware_id,
                email="ann@example.com", product=None, info=DeviceInfo(),
                extras=ActivationExtras(allow_reactivation=True), now=datetime.now(UTC),
            )  # fmt: skip
        return "activated" if isinstance(outcome, qlm.ComputerKeyGrant) else outcome.code

    code = ask()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: attempt(code, f"racer-{n}"), range(8)))
    assert results.count("activated") == 1, results
    assert set(results) == {"activated", "authorization_code_used"}
    assert server.sql("select times_activated from licenses")[0][0] == 1

    code = ask()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with ThreadPoolExecutor(8) as pool:
        guesses = list(pool.map(lambda n: attempt(wrong, HW), range(10)))
    assert guesses.count("authorization_code_invalid") == 4, guesses
    assert guesses.count("authorization_code_locked") == 6
    tries = server.sql("select failed_attempts from authorization_codes order by id desc")[0][0]
    assert tries == 5


def test_codes_per_address_are_limited(mail_server: Server, mailbox: Mailbox) -> None:
    """Each code allows 5 guesses: unlimited new codes would make 6 digits guessable."""
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    mail_server.license(customer_email="bob@example.com")
    limit = mail_server.settings.rate_limit_code_requests
    assert limit == 5
    for _ in range(limit):
        assert request_code(mail_server, product="app").status_code == 200
    refused = request_code(mail_server, product="app")
    assert error_of(refused) == (429, "too_many_requests")
    assert (
        1 <= int(refused.headers["Retry-After"]) <= mail_server.settings.rate_limit_window_seconds
    )
    assert request_code(mail_server, "bob@example.com", product="app").status_code == 200
    mailbox.wait_for(limit + 1)
    assert len(mailbox.messages) == limit + 1  # no mail for the refused request
    # the QLM front shares the limit
    qlm = mail_server.api.call(
        "GET",
        "/qlmservice.asmx/RequestAuthorizationCodeForActivationHttp",
        params={"is_email": "ann@example.com", "is_pcid": "pc-ann"},
    )
    assert "<error>" in qlm.text and "<errorCode>" in qlm.text, qlm.text
    assert len(mailbox.messages) == limit + 1
