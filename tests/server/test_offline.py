"""Offline activation and deactivation (v4 §3.5-3.6): request files in, license files out,
on SQLite and PostgreSQL -- the signatures of the answer, every bad file refused with its code
and nothing written, replays, the offline switch, OAuth mode, limits under concurrency."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensor.protocol.auth import http_date, offline_signature
from licensor.protocol.offline import write_request
from licensor.protocol.signing import license_signing_string, v2_signing_bytes
from licensor.services import catalogue
from tests.server.processes import issue, prepare, serve
from tests.server.support import Api, Server, error_of

HW = "d" * 64


def request_file(
    api: Api,
    key: str,
    *,
    request: str = "activation",
    hardware_id: str = HW,
    date: datetime | None = None,
    schema_version: int = 1,
    secret: str | None = None,
    request_id: str | None = None,
    **fields: Any,
) -> bytes:
    body: dict[str, Any] = {
        "api_key": api.api_key,
        "date": http_date(date or datetime.now(UTC)),
        "hardware_id": hardware_id,
        "license_key": key,
        "product": "app",
        "request": request,
        "request_id": request_id or str(uuid.uuid4()),
        "os_ver": "Linux",
        **fields,
    }
    return write_request(
        body, secret or api.shared_key, credential_field="api_key", schema_version=schema_version
    )


def post(api: Api, endpoint: str, content: bytes, **kwargs: Any) -> httpx.Response:
    return api.call("POST", f"/api/v4/{endpoint}_offline", content=content, **kwargs)


def table_counts(server: Server) -> dict[str, int]:
    return {
        table: int(server.sql(f"SELECT count(*) FROM {table}")[0][0])
        for table in ("devices", "license_events", "offline_requests", "device_variables")
    } | {"times_activated": int(server.sql("SELECT sum(times_activated) FROM licenses")[0][0] or 0)}


@pytest.fixture
def key(server: Server) -> str:
    server.product("app")
    return server.license(max_activations=2).license_key or ""


def test_a_request_file_becomes_a_signed_license_file(server: Server, key: str) -> None:
    response = post(server.api, "activate", request_file(server.api, key, variables={"seat": "A"}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body)[-4:] == [
        "date",
        "offline_signature",
        "license_signature",
        "license_signature_v2",
    ]
    assert body["hardware_id"] == HW and body["license_key"] == key
    assert body["times_activated"] == 1 and body["active"] is True
    assert [v["variable"] for v in body["variables"]] == ["seat"]
    # offline_signature: the HMAC of the answer's date with the file's shared key
    assert body["offline_signature"] == offline_signature(
        server.api.shared_key, body["date"], key, HW, server.api.api_key
    )
    keys = server.public_keys
    keys.verify(
        license_signing_string(HW, key, None).encode(),
        body["license_signature"],
        algorithm="rsa-sha256",
    )
    # v2: over the body without both signatures (v4 §2.3), as a file carries no header
    keys.verify(v2_signing_bytes(body), body["license_signature_v2"], algorithm="rsa-sha256")
    assert server.sql("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1") == [
        ("device.activate_offline",)
    ]
    # and the device checks online like any other
    assert server.api.check(product="app", license_key=key, hardware_id=HW).status_code == 200


def test_ed25519_when_the_file_asks_for_it(server: Server, key: str) -> None:
    content = request_file(server.api, key, accept_signature="ed25519")
    body = post(server.api, "activate", content).json()
    server.public_keys.verify(
        v2_signing_bytes(body), body["license_signature_v2"], algorithm="ed25519"
    )


def test_schema_v2_and_multipart(server: Server, key: str) -> None:
    content = request_file(server.api, key, schema_version=2)
    response = server.api.call(
        "POST", "/api/v4/activate_offline", files={"file": ("ls_activation.req", content)}
    )
    assert response.status_code == 200, response.text
    # a v2 file edited inside its request object: the outer HMAC no longer matches
    other = json.loads(base64.b64decode(request_file(server.api, key, schema_version=2)))
    other["request"]["hardware_id"] = "e" * 64
    edited = base64.b64encode(json.dumps(other).encode())
    assert error_of(post(server.api, "activate", edited)) == (401, "signature_mismatch")
    no_part = server.api.call(
        "POST", "/api/v4/activate_offline", files={"other": ("x.req", content)}
    )
    assert error_of(no_part) == (400, "missing_parameters")


def test_bad_files_are_refused_with_their_codes_and_write_nothing(server: Server, key: str) -> None:
    api = server.api
    _, stranger = server.new_company("Other")
    good = json.loads(base64.b64decode(request_file(api, key)))

    def encoded(data: dict[str, Any]) -> bytes:
        return base64.b64encode(json.dumps(data).encode())

    before = table_counts(server)
    cases: list[tuple[bytes, tuple[int, str]]] = [
        (b"", (400, "missing_content")),
        (b"not base64 at all!", (400, "authorization_missing_params")),
        (base64.b64encode(b"{not json"), (400, "invalid_json")),
        (base64.b64encode(b"[1, 2]"), (400, "validation_error")),
        (
            encoded({k: v for k, v in good.items() if k != "hardware_id"}),
            (400, "authorization_missing_params"),
        ),
        (encoded({**good, "signature": "x" + good["signature"][1:]}), (401, "signature_mismatch")),
        (encoded({**good, "hardware_id": "f" * 64}), (401, "signature_mismatch")),
        (request_file(api, key, secret="not the shared key"), (401, "signature_mismatch")),
        (request_file(stranger, key), (400, "invalid_api_key")),  # another company's key
        (
            request_file(api, key, date=datetime.now(UTC) - timedelta(hours=1)),
            (400, "date_header_diff"),
        ),
        (request_file(api, key, request="deactivation"), (400, "validation_error")),
        (request_file(api, "NO-SUCH-KEY"), (400, "license_not_found")),
        (b"A" * (64 * 1024 + 4), (413, "payload_too_large")),
    ]
    for content, expected in cases:
        assert error_of(post(api, "activate", content)) == expected, expected
    assert table_counts(server) == before
    # no Date / Authorization on the HTTP request
    assert error_of(post(api, "activate", request_file(api, key), auth=False)) == (
        400,
        "missing_headers",
    )


def test_a_file_sent_twice_changes_nothing_the_second_time(server: Server, key: str) -> None:
    content = request_file(server.api, key)
    assert post(server.api, "activate", content).status_code == 200
    after_first = table_counts(server)
    assert error_of(post(server.api, "activate", content)) == (409, "offline_request_replayed")
    # even once the seat is free again, the old file does not take it back
    deactivation = request_file(server.api, key, request="deactivation")
    assert post(server.api, "deactivate", deactivation).json() == "license_deactivated"
    assert error_of(post(server.api, "activate", content)) == (409, "offline_request_replayed")
    assert error_of(post(server.api, "deactivate", deactivation)) == (
        409,
        "offline_request_replayed",
    )
    assert table_counts(server)["devices"] == after_first["devices"]


def test_every_activation_rule_applies(server: Server) -> None:
    server.product("app")
    one = server.license(max_activations=1).license_key or ""
    assert post(server.api, "activate", request_file(server.api, one)).status_code == 200
    second = request_file(server.api, one, hardware_id="e" * 64)
    assert error_of(post(server.api, "activate", second)) == (400, "license_activated_max_times")
    disabled = server.license(enabled=False).license_key or ""
    assert error_of(post(server.api, "activate", request_file(server.api, disabled))) == (
        400,
        "license_not_enabled",
    )
    vm_refused = server.license(prevent_vm=True).license_key or ""
    assert error_of(
        post(server.api, "activate", request_file(server.api, vm_refused, is_vm=True))
    ) == (400, "vm_not_allowed")


def test_the_offline_switch_and_subscriptions(server: Server) -> None:
    server.product("app")
    off = server.license(allow_offline_activation=False).license_key or ""
    assert error_of(post(server.api, "activate", request_file(server.api, off))) == (
        400,
        "offline_activation_not_allowed",
    )
    subscription = (
        server.license(
            license_type="subscription", validity_period=datetime.now(UTC) + timedelta(days=30)
        ).license_key
        or ""
    )
    refused = post(server.api, "activate", request_file(server.api, subscription))
    assert error_of(refused) == (400, "offline_activation_not_allowed")
    assert "Subscription" in refused.json()["message"]
    server.product("closed", allow_offline_activation=False)
    closed = server.license("closed").license_key or ""
    content = request_file(server.api, closed, product="closed")
    assert error_of(post(server.api, "activate", content)) == (
        400,
        "offline_activation_not_allowed",
    )
    # the license may open what its product closes
    opened = server.license("closed", allow_offline_activation=True).license_key or ""
    content = request_file(server.api, opened, product="closed")
    assert post(server.api, "activate", content).status_code == 200


def test_offline_deactivation_frees_the_seat_and_syncs_variables(server: Server, key: str) -> None:
    assert post(server.api, "activate", request_file(server.api, key)).status_code == 200
    content = request_file(server.api, key, request="deactivation", variables={"last_user": "ana"})
    assert post(server.api, "deactivate", content).json() == "license_deactivated"
    assert [bool(row[0]) for row in server.sql("SELECT active FROM devices")] == [False]
    assert server.sql("SELECT variable, value FROM device_variables") == [("last_user", "ana")]
    assert server.sql("SELECT method FROM license_releases") == [("offline",)]
    assert server.sql("SELECT times_activated FROM licenses") == [(0,)]
    # a license that holds no seat any more: what an online deactivation answers
    again = request_file(server.api, key, request="deactivation")
    online = server.api.deactivate(product="app", license_key=key, hardware_id=HW)
    assert error_of(post(server.api, "deactivate", again)) == error_of(online)


def test_oauth_mode_signs_with_the_client_secret(server: Server, key: str) -> None:
    with server.db.transaction(write=True) as session:
        made = catalogue.create_oauth_client(
            session, server.master_key, server.company_id, scope="company"
        )
    fields = {
        "client_id": made.client_id,
        "date": http_date(datetime.now(UTC)),
        "hardware_id": HW,
        "license_key": key,
        "product": "app",
        "request_id": str(uuid.uuid4()),
    }
    content = write_request(fields, made.client_secret, credential_field="client_id")
    body = post(server.api, "activate", content).json()
    assert body["offline_signature"] == offline_signature(
        made.client_secret, body["date"], key, HW, made.client_id
    )
    # a client made before secrets were kept encrypted cannot sign files until rotated
    server.sql("UPDATE oauth_clients SET secret_encrypted = NULL")
    other = write_request(
        {**fields, "hardware_id": "e" * 64, "request_id": "2"},
        made.client_secret,
        credential_field="client_id",
    )
    assert error_of(post(server.api, "activate", other)) == (400, "offline_secret_unavailable")


@pytest.mark.slow
def test_parallel_files_never_take_more_seats_than_the_license_has(
    database_url: str, tmp_path: Path
) -> None:
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=10)
    barrier = threading.Barrier(20)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    with serve(deployment, workers=2) as base:

        def upload(index: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                content = request_file(api, key, hardware_id=f"device-{index}")
                barrier.wait()
                response = post(api, "activate", content)
                outcome = "ok" if response.status_code == 200 else response.json()["code"]
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 10, "license_activated_max_times": 10}, outcomes
    with deployment.db.transaction() as session:
        from sqlalchemy import text

        active = session.execute(text("SELECT count(*) FROM devices WHERE active")).scalar()
    assert active == 10
    deployment.db.dispose()


@pytest.mark.slow
def test_copies_of_one_file_sent_at_once_take_one_seat(database_url: str, tmp_path: Path) -> None:
    """The replay check is asked before the write; copies racing past it meet the unique
    request id in the write, where all but one roll back."""
    deployment = prepare(database_url, tmp_path / "data")
    key = issue(deployment, max_activations=10)
    barrier = threading.Barrier(12)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with serve(deployment, workers=2) as base:
        setup = Api(
            httpx.Client(), deployment.public_keys, deployment.api_key, deployment.shared_key
        )
        content = request_file(setup, key, hardware_id="copied")
        endpoint = "activate"

        def upload() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                api = Api(client, deployment.public_keys, deployment.api_key, deployment.shared_key)
                barrier.wait()
                response = post(api, endpoint, content)
                outcome = "ok" if response.status_code == 200 else response.json()["code"]
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=upload) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 1, "offline_request_replayed": 11}, outcomes
    with deployment.db.transaction() as session:
        from sqlalchemy import text

        rows = session.execute(text("SELECT count(*) FROM offline_requests")).scalar()
        times = session.execute(text("SELECT times_activated FROM licenses")).scalar()
    assert (rows, times) == (1, 1)
    # the same for copies of one deactivation file
    content = request_file(setup, key, hardware_id="copied", request="deactivation")
    endpoint = "deactivate"
    outcomes.clear()
    barrier.reset()
    with serve(deployment, workers=2) as base:
        threads = [threading.Thread(target=upload) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes == {"ok": 1, "offline_request_replayed": 11}, outcomes
    deployment.db.dispose()


def test_the_page_refuses_a_huge_form_with_a_page(server: Server) -> None:
    """A body over the page's limit is refused before any handler reads it -- with a page a
    person can read (the page's look and headers), not the API's JSON."""
    body = b"x" * (1024 * 1024 + 1)
    answer = server.client.post(
        "/offline", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "The file is too large" in answer.text and "payload_too_large" in answer.text
    assert 'href="/offline"' in answer.text
    # the API keeps its JSON refusal
    api = server.client.post("/api/v4/activate_offline", content=body)
    assert api.status_code == 413 and api.json()["code"] == "payload_too_large"


# -- QLM's way, on the same page: Activation Key + Computer ID -> Computer Key -----------------


def page_form(server: Server, path: str, **fields: str) -> httpx.Response:
    """Post a form of the /offline page as a browser would: the page's CSRF cookie and token."""
    page = server.client.get("/offline")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return server.client.post(path, data={"csrf_token": token, **fields})


def shown(answer: httpx.Response, element_id: str) -> str:
    found = answer.text.split(f'id="{element_id}"', 1)[1].split(">", 1)[1]
    return found.split("<", 1)[0].strip()


def test_an_activation_key_and_a_computer_id_get_a_computer_key(server: Server) -> None:
    from licensor.client import verify_computer_key
    from licensor.protocol.computer_key import deactivation_code

    server.product("app")
    key = server.license(max_activations=1).license_key or ""
    answer = page_form(
        server, "/offline/computer-key", license_key=key, computer_id="pc-7", computer_name="Lab"
    )
    assert answer.status_code == 200, answer.text
    computer_key = shown(answer, "computer-key")
    verified = verify_computer_key(
        computer_key, server.public_keys, hardware_id="pc-7", product="app"
    )
    assert verified.license_id == server.sql("SELECT id FROM licenses")[0][0]
    assert server.sql("SELECT hardware_id, hostname, active FROM devices") == [("pc-7", "Lab", 1)]
    actor, action = server.sql("SELECT actor, action FROM audit_log ORDER BY id DESC LIMIT 1")[0]
    assert (actor, action) == ("page:offline", "device.activate_offline")

    # the same computer again: its key again, no second seat; another computer: no seat left
    again = page_form(server, "/offline/computer-key", license_key=key, computer_id="pc-7")
    assert again.status_code == 200 and "The Computer Key is ready" in again.text
    full = page_form(server, "/offline/computer-key", license_key=key, computer_id="pc-8")
    assert full.status_code == 400 and 'id="error-code">license_activated_max_times<' in full.text
    assert table_counts(server)["times_activated"] == 1

    # the release: only with the code the application showed when it removed the key
    wrong = page_form(
        server, "/offline/release", license_key=key, computer_id="pc-7", deactivation_code="X"
    )
    assert 'id="error-code">wrong_deactivation_verification_code<' in wrong.text
    assert table_counts(server)["times_activated"] == 1
    stored = server.sql("SELECT computer_key FROM devices")[0][0]
    code = deactivation_code(stored, "pc-7", datetime.now(UTC).date())
    released = page_form(
        server, "/offline/release", license_key=key, computer_id="pc-7", deactivation_code=code
    )
    assert released.status_code == 200 and "The computer is released" in released.text
    assert table_counts(server)["times_activated"] == 0
    again = page_form(
        server, "/offline/release", license_key=key, computer_id="pc-7", deactivation_code=code
    )
    assert 'id="error-code">license_not_active<' in again.text


def test_the_computer_key_form_refuses_with_codes_and_writes_nothing(server: Server) -> None:
    server.product("app")
    key = server.license().license_key or ""
    cases: list[tuple[dict[str, str], int, str]] = [
        ({"license_key": "NO-SUCH-KEY", "computer_id": "pc"}, 400, "license_not_found"),
        ({"license_key": key, "computer_id": ""}, 400, "missing_parameters"),
        ({"license_key": key, "computer_id": "p" * 257}, 400, "validation_error"),
        ({"license_key": key, "computer_id": "a\x00b"}, 400, "validation_error"),
    ]
    for fields, status, code in cases:
        answer = page_form(server, "/offline/computer-key", **fields)
        assert answer.status_code == status, (fields, answer.text)
        assert f'id="error-code">{code}<' in answer.text, fields
    # without the page's token (another site's form): refused
    bare = server.client.post(
        "/offline/computer-key", data={"license_key": key, "computer_id": "pc"}
    )
    assert bare.status_code == 403 and 'id="error-code">forbidden<' in bare.text
    # offline activation switched off for the license: refused by name
    closed = server.license(allow_offline_activation=False).license_key or ""
    answer = page_form(server, "/offline/computer-key", license_key=closed, computer_id="pc")
    assert 'id="error-code">offline_activation_not_allowed<' in answer.text
    assert table_counts(server)["devices"] == 0


def test_a_key_two_vendors_issued_is_refused_on_the_page(server: Server) -> None:
    """Keys are unique per company only: which vendor's license is meant cannot be told."""
    server.product("app")
    key = server.license().license_key or ""
    other, _ = server.new_company("Other vendor")
    with server.db.transaction(write=True) as session:
        catalogue.create_product(session, other, catalogue.ProductSpec("app", "Theirs"))
        catalogue.create_license(
            session, other, "app", catalogue.LicenseSpec(license_key=key), now=datetime.now(UTC)
        )
    answer = page_form(server, "/offline/computer-key", license_key=key, computer_id="pc")
    assert answer.status_code == 409 and 'id="error-code">license_key_ambiguous<' in answer.text
    assert table_counts(server)["devices"] == 0


def test_guessing_keys_on_the_page_is_rate_limited(server: Server) -> None:
    limit = server.settings.rate_limit_client_failures
    for n in range(limit):
        answer = page_form(
            server, "/offline/computer-key", license_key=f"GUESS-{n}", computer_id="pc"
        )
        assert 'id="error-code">license_not_found<' in answer.text
    server.product("app")
    key = server.license().license_key or ""
    locked = page_form(server, "/offline/computer-key", license_key=key, computer_id="pc")
    assert locked.status_code == 429 and 'id="error-code">too_many_requests<' in locked.text
    assert table_counts(server)["devices"] == 0


def test_a_file_signed_with_a_rotated_keys_previous_shared_key(server: Server) -> None:
    """The request's headers and its file may be signed by either shared key of a key
    rotated with an overlap window, in any mix; once the window closes, the old one signs
    nothing."""
    from sqlalchemy import select

    from licensor.services.auth import SHARED_KEY_CONTEXT
    from licensor.store.models import ApiKey

    server.product("app")
    key = server.license(max_activations=10).license_key or ""
    old, new = server.api.shared_key, "the rotated shared key"
    with server.db.transaction(write=True) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.api_key == server.api.api_key)).one()
        row.previous_shared_key_encrypted = row.shared_key_encrypted
        row.shared_key_encrypted = server.master_key.encrypt(new, context=SHARED_KEY_CONTEXT)
        row.previous_valid_until = datetime.now(UTC) + timedelta(hours=1)
    headers_new = Api(server.client, server.public_keys, server.api.api_key, new)
    headers_old = server.api
    for n, (headers, secret) in enumerate(
        [(headers_new, old), (headers_new, new), (headers_old, new), (headers_old, old)]
    ):
        content = request_file(server.api, key, hardware_id=f"{n}" * 64, secret=secret)
        response = post(headers, "activate", content)
        assert response.status_code == 200, (n, response.text)
        assert response.json()["offline_signature"] == offline_signature(
            secret, response.json()["date"], key, f"{n}" * 64, server.api.api_key
        )
    with server.db.transaction(write=True) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.api_key == server.api.api_key)).one()
        row.previous_valid_until = datetime.now(UTC) - timedelta(seconds=1)
    late = request_file(server.api, key, hardware_id="9" * 64, secret=old)
    assert error_of(post(headers_new, "activate", late)) == (401, "signature_mismatch")
