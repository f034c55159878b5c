"""The client believes nothing unsigned: every answer is verified before it is used."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fake_license_server import Answer, FakeLicenseServer, public_pem
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conftest import HARDWARE_ID, Clock
from licensor.client import (
    AsyncLicenseClient,
    HmacCredentials,
    LicenseClient,
    LicenseRefused,
    NotActivated,
    NoTrustedAnswer,
    OAuthCredentials,
    ServerUnreachable,
    UntrustedResponse,
)
from licensor.protocol.signing import (
    compact_json,
    format_licensor_signature,
    key_id,
    license_signing_string,
    sign_bytes,
)

MakeClient = Callable[..., LicenseClient]


def resign(key: ed25519.Ed25519PrivateKey, content: bytes) -> dict[str, str]:
    kid = key_id(key.public_key())
    return {"Licensor-Signature": format_licensor_signature(kid, sign_bytes(key, content))}


def edit_body(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, Answer], Answer]:
    """A man in the middle who changes the JSON but cannot re-sign it."""

    def rewrite(path: str, answer: Answer) -> Answer:
        status, headers, content = answer
        data = json.loads(content)
        if isinstance(data, dict):
            edit(data)
        return status, headers, compact_json(data)

    return rewrite


# --------------------------------------------------------------------------- success paths


def test_activation_is_verified_stored_and_signed_request(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    client = make_client()
    license_ = client.activate(license_key="KEY-1111")

    assert license_.status == "active"
    assert license_.license_key == "KEY-1111"
    assert license_.hardware_id == HARDWARE_ID
    assert license_.metadata == {"tier": "pro"}
    assert license_.server_time == clock.now.replace(microsecond=0)
    assert Path(client.store.license_path).exists()

    sent = server.requests[-1]
    assert sent.headers["licensor-accept-signature"] == "ed25519"
    assert sent.headers["idempotency-key"]
    # The HMAC Authorization verifies with the shared key over "licenseSpring\ndate: <Date>".
    message = f"licenseSpring\ndate: {sent.headers['date']}".encode()
    expected = base64.b64encode(hmac.new(b"shared-secret", message, hashlib.sha256).digest())
    assert f'signature="{expected.decode()}"' in sent.headers["authorization"]
    assert 'apikey="api-key-1"' in sent.headers["authorization"]
    assert sent.body["hardware_id"] == HARDWARE_ID
    assert sent.body["license_key"] == "KEY-1111"


def test_rsa_answers_are_accepted(
    make_client: MakeClient, server: FakeLicenseServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    server.ed25519_key = None  # a server that only has its RSA key answers with LicenseSignature
    license_ = make_client().activate(license_key="KEY-1111")
    assert license_.status == "active"


def test_check_answer_with_v2_signature_is_accepted(make_client: MakeClient) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    checked = client.check()
    assert checked.checked_online
    assert "license_signature_v2" in checked.raw


# --------------------------------------------------------------------------- forged answers


def test_answer_signed_by_an_untrusted_key_is_refused(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    server.ed25519_key = impostor  # signs consistently, but with a key the app does not trust
    client = make_client()
    with pytest.raises(UntrustedResponse, match="unknown key"):
        client.activate(license_key="KEY-1111")
    assert not Path(client.store.license_path).exists()


def test_forged_signature_with_a_trusted_kid_is_refused(
    make_client: MakeClient, server: FakeLicenseServer, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    trusted_kid = key_id(ed25519_key.public_key())

    def forge(path: str, answer: Answer) -> Answer:
        status, _, content = answer
        forged = sign_bytes(impostor, content)
        return (
            status,
            {"Licensor-Signature": format_licensor_signature(trusted_kid, forged)},
            content,
        )

    server.rewrite = forge
    with pytest.raises(UntrustedResponse):
        make_client().activate(license_key="KEY-1111")


def test_one_altered_byte_is_refused(make_client: MakeClient, server: FakeLicenseServer) -> None:
    def flip(path: str, answer: Answer) -> Answer:
        status, headers, content = answer
        index = content.index(b'"tier":"pro"') + 8
        return status, headers, content[:index] + b"P" + content[index + 1 :]

    server.rewrite = flip
    client = make_client()
    with pytest.raises(UntrustedResponse):
        client.activate(license_key="KEY-1111")
    assert not Path(client.store.license_path).exists()


def test_man_in_the_middle_extending_validity_is_refused(
    make_client: MakeClient, server: FakeLicenseServer, clock: Clock
) -> None:
    server.licenses["KEY-1111"].validity_period = clock.now + timedelta(days=3)
    server.rewrite = edit_body(lambda body: body.update(validity_period="2099-01-01T00:00:00.000Z"))
    with pytest.raises(UntrustedResponse):
        make_client().activate(license_key="KEY-1111")


def test_missing_signature_header_is_refused(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    server.rewrite = lambda path, answer: (answer[0], {}, answer[2])
    with pytest.raises(UntrustedResponse, match="not signed"):
        make_client().activate(license_key="KEY-1111")


def test_wrong_kid_is_refused(make_client: MakeClient, server: FakeLicenseServer) -> None:
    def wrong_kid(path: str, answer: Answer) -> Answer:
        status, headers, content = answer
        value = headers["Licensor-Signature"]
        kid = value.split('"')[1]
        return status, {"Licensor-Signature": value.replace(kid, "0" * 16)}, content

    server.rewrite = wrong_kid
    with pytest.raises(UntrustedResponse, match="unknown key"):
        make_client().activate(license_key="KEY-1111")


def test_rotated_key_is_accepted_when_trusted(
    make_client: MakeClient, server: FakeLicenseServer, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    new_key = ed25519.Ed25519PrivateKey.generate()
    server.ed25519_key = new_key
    both = [public_pem(ed25519_key), public_pem(new_key)]
    assert make_client(public_keys=both).activate(license_key="KEY-1111").status == "active"


def test_answer_for_another_computer_is_refused(
    make_client: MakeClient, server: FakeLicenseServer, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    """A genuine, correctly signed answer replayed from another computer is not ours."""
    other = server.license_body(
        server.licenses["KEY-1111"], "b" * 64, {"licensor-accept-signature": "ed25519"}
    )
    content = compact_json(other)
    server.rewrite = lambda path, answer: (200, resign(ed25519_key, content), content)
    with pytest.raises(UntrustedResponse, match="another computer"):
        make_client().activate(license_key="KEY-1111")


def test_license_signature_must_match_this_device(
    make_client: MakeClient, server: FakeLicenseServer, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    """Even under a valid body signature, a license_signature for other terms is refused."""

    def swap(path: str, answer: Answer) -> Answer:
        data = json.loads(answer[2])
        wrong = license_signing_string("b" * 64, "KEY-1111", None).encode()
        data["license_signature"] = sign_bytes(ed25519_key, wrong)
        content = compact_json(data)
        return 200, resign(ed25519_key, content), content

    server.rewrite = swap
    with pytest.raises(UntrustedResponse, match="license_signature"):
        make_client().activate(license_key="KEY-1111")


def test_altered_license_signature_v2_is_refused(
    make_client: MakeClient, server: FakeLicenseServer, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")

    def break_v2(path: str, answer: Answer) -> Answer:
        data = json.loads(answer[2])
        data["license_signature_v2"] = sign_bytes(ed25519_key, b"something else")
        content = compact_json(data)
        return 200, resign(ed25519_key, content), content

    server.rewrite = break_v2
    with pytest.raises(UntrustedResponse, match="v2"):
        client.check()


# --------------------------------------------------------------------------- the two branches


def test_signed_error_is_a_refusal_with_its_code(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    with pytest.raises(LicenseRefused) as refused:
        make_client().activate(license_key="NOPE")
    assert refused.value.code == "license_not_found"
    assert refused.value.status == 400
    assert not isinstance(refused.value, NoTrustedAnswer)
    assert len(server.requests) == 1  # a refusal is never retried


def test_unsigned_error_is_untrusted_not_a_refusal(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    server.rewrite = lambda path, answer: (answer[0], {}, answer[2])
    with pytest.raises(UntrustedResponse):
        make_client().activate(license_key="NOPE")


def test_error_with_409_device_exists_recovers_the_license(
    make_client: MakeClient, server: FakeLicenseServer, tmp_path: Any
) -> None:
    make_client().activate(license_key="KEY-1111")
    # The same computer after a reinstall: nothing stored, but the server knows the device.
    again = make_client(storage_dir=tmp_path / "reinstalled")
    license_ = again.activate(license_key="KEY-1111")
    assert license_.status == "active"
    assert [r.path for r in server.requests][-2:] == [
        "/api/v4/activate_license",
        "/api/v4/check_license",
    ]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_rate_limits_are_unreachable(
    make_client: MakeClient, server: FakeLicenseServer, status: int, sleeps: list[float]
) -> None:
    server.failures = [status] * 3
    with pytest.raises(ServerUnreachable) as unreachable:
        make_client().activate(license_key="KEY-1111")
    assert unreachable.value.status == status
    assert not isinstance(unreachable.value, LicenseRefused)
    assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_network_errors_and_timeouts_are_unreachable(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    server.failures = [httpx.ConnectError, httpx.ReadTimeout, httpx.ConnectTimeout]
    with pytest.raises(ServerUnreachable):
        make_client().activate(license_key="KEY-1111")


def test_retries_reuse_the_idempotency_key_and_back_off(
    make_client: MakeClient, server: FakeLicenseServer, sleeps: list[float]
) -> None:
    server.failures = [503, httpx.ConnectError]
    license_ = make_client(backoff=1.0, max_backoff=30.0).activate(license_key="KEY-1111")
    assert license_.status == "active"
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(server.requests) == 3 and len(keys) == 1
    dates = [r.headers["date"] for r in server.requests]
    assert all(dates)
    # Jittered exponential backoff: attempt n waits between half and all of backoff * 2**n.
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0


def test_retry_after_is_honoured(make_client: MakeClient, server: FakeLicenseServer) -> None:
    original = server.rewrite

    def add_retry_after(path: str, answer: Answer) -> Answer:
        status, headers, content = answer
        if status == 429:
            headers = {**headers, "Retry-After": "3"}
        return status, headers, content

    server.rewrite = add_retry_after
    server.failures = [429]
    sleeps: list[float] = []
    make_client(sleep=sleeps.append).activate(license_key="KEY-1111")
    assert sleeps == [3.0]
    server.rewrite = original


def test_timeout_default_and_per_call_override(make_client: MakeClient) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        raise httpx.ConnectError("down", request=request)

    client = make_client(transport=httpx.MockTransport(handler), timeout=4.0, retries=0)
    with pytest.raises(ServerUnreachable):
        client.product_details()
    with pytest.raises(ServerUnreachable):
        client.product_details(timeout=0.5)
    assert seen[0]["read"] == 4.0
    assert seen[1]["read"] == 0.5


# --------------------------------------------------------------------------- other endpoints


def test_deactivate_removes_the_stored_license(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    client.deactivate()
    assert server.licenses["KEY-1111"].devices[HARDWARE_ID] is False
    assert not Path(client.store.license_path).exists()
    with pytest.raises(NotActivated):
        client.validate()


def test_variables_trial_and_product_details(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client()
    details = client.product_details()
    assert details.short_code == "app" and not details.user_based
    trial = client.trial()
    assert trial.license_key is not None and trial.trial_days == 14
    client.activate(license_key="KEY-1111")
    saved = client.set_variables({"seats": 3})
    assert [(v.variable, v.value) for v in saved] == [("seats", "3")]
    assert [v.variable for v in client.variables()] == ["seats"]


def test_user_based_activation(make_client: MakeClient, server: FakeLicenseServer) -> None:
    server.add_license("U-1", product="app", username="ann@example.com", password="pw")
    client = make_client()
    with pytest.raises(LicenseRefused) as refused:
        client.activate(username="ann@example.com", password="wrong")
    assert refused.value.code == "invalid_credentials"
    license_ = client.activate(username="ann@example.com", password="pw")
    assert license_.username == "ann@example.com"
    assert client.check().status == "active"


def test_oauth_token_is_cached_and_sent_with_date(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client(credentials=OAuthCredentials("client-1", "client-secret"))
    client.activate(license_key="KEY-1111")
    client.check()
    paths = [r.path for r in server.requests]
    assert paths.count("/api/v4/oauth/token") == 1
    api_calls = [r for r in server.requests if r.path != "/api/v4/oauth/token"]
    assert all(r.headers["authorization"].startswith("Bearer ") for r in api_calls)
    assert all(r.headers.get("date") for r in api_calls)


def test_oauth_expired_token_is_replaced_once(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client(credentials=OAuthCredentials("client-1", "client-secret"))
    client.product_details()
    server.tokens.clear()  # the server forgets the token: 401 oauth_token_malformed
    assert client.product_details().short_code == "app"
    assert [r.path for r in server.requests].count("/api/v4/oauth/token") == 2


def test_oauth_bad_client_is_refused(make_client: MakeClient) -> None:
    client = make_client(credentials=OAuthCredentials("client-1", "wrong"))
    with pytest.raises(LicenseRefused) as refused:
        client.product_details()
    assert refused.value.code == "invalid_client"


def test_async_client_has_the_same_behaviour(
    server: FakeLicenseServer, public_keys: list[str], tmp_path: Any, clock: Clock
) -> None:
    async def scenario() -> None:
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        async with AsyncLicenseClient(
            "https://licensing.test",
            "app",
            public_keys,
            HmacCredentials("api-key-1", "shared-secret"),
            hardware_id=HARDWARE_ID,
            storage_dir=tmp_path,
            clock=clock,
            transport=server.transport(),
            sleep=sleep,
            send_device_facts=False,
        ) as client:
            server.failures = [503]
            activated = await client.activate(license_key="KEY-1111")
            assert activated.status == "active" and len(sleeps) == 1
            assert (await client.validate()).status == "active"
            assert (await client.check()).checked_online
            assert (await client.product_details()).short_code == "app"
            server.rewrite = lambda path, answer: (answer[0], {}, answer[2])
            with pytest.raises(UntrustedResponse):
                await client.check()
            server.rewrite = None
            await client.deactivate()
            with pytest.raises(NotActivated):
                await client.validate()

    asyncio.run(scenario())


def test_clients_share_method_names() -> None:
    public = {n for n in dir(LicenseClient) if not n.startswith("_")} - {"close"}
    async_public = {n for n in dir(AsyncLicenseClient) if not n.startswith("_")} - {"aclose"}
    assert public == async_public
    assert {"activate", "check", "deactivate", "trial", "set_variables", "variables"} <= public
    assert {"product_details", "validate"} <= public


def test_dates_in_bodies_are_rfc7231(make_client: MakeClient, clock: Clock) -> None:
    license_ = make_client().activate(license_key="KEY-1111")
    assert license_.raw["date"] == clock.now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert license_.server_time.tzinfo == UTC
    assert isinstance(license_.server_time, datetime)
