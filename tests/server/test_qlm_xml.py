"""The QLM HTTP front (/qlmservice.asmx/<Method>): GET and form POST, XML answers that a standard
parser reads on every success and error path, numeric EServerErrorCodes, authentication."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from licensor.api.qlm.xml import REPLACEMENT, document, error_document
from licensor.protocol.auth import http_date
from licensor.protocol.computer_key import deactivation_code, decode_computer_key
from licensor.services import catalogue
from tests.server.mailbox import Mailbox, run_mailbox
from tests.server.support import Server, shared_keys_dir, start_server

PC = "QLM-PC-0001"
PC2 = "QLM-PC-0002"


def qlm(
    server: Server, method: str, *, form: bool = False, auth: bool = True, **args: Any
) -> tuple[httpx.Response, dict[str, str]]:
    """Call a QLM method; the answer must be signed, well-formed XML. Returns its elements."""
    headers = args.pop("headers", None)
    path = f"/qlmservice.asmx/{method}"
    if form:
        response = server.api.call("POST", path, data=args, auth=auth, headers=headers)
    else:
        response = server.api.call("GET", path, params=args, auth=auth, headers=headers)
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "QuickLicenseManager"
    return response, {child.tag: child.text or "" for child in root}


def error_code(server: Server, method: str, **args: Any) -> int:
    _, answer = qlm(server, method, **args)
    assert "error" in answer, answer
    assert answer["error"]
    return int(answer["errorCode"])


def key_of(server: Server, **fields: Any) -> str:
    license_ = server.license(**fields)
    assert license_.license_key
    return license_.license_key


def test_validate_license_activates_then_validates(server: Server) -> None:
    server.product()
    key = key_of(server, max_activations=2, customer_email="ann@example.com")
    response, first = qlm(
        server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_computer_name="Ann's PC",
        is_userdata1="seat <1>", is_majorversion="1", is_minorversion="0",
    )  # fmt: skip
    assert response.status_code == 200
    assert "error" not in first, first
    assert first["result"] == "The license was activated successfully."
    assert first["activationKey"] == key
    assert first["computerID"] == PC and first["computerName"] == "Ann's PC"
    assert first["userData"] == "seat <1>" and first["userEmail"] == "ann@example.com"
    assert first["licenseModel"] == "permanent" and first["status"] == "2"
    assert first["numActivationsAllowed"] == "2" and first["availableLicenses"] == "1"
    assert first["productName"] == "App"
    claims = decode_computer_key(first["pckey"], server.public_keys)
    assert claims.is_bound_to(PC)
    # later calls validate the Computer Key (form POST this time)
    _, later = qlm(server, "ValidateLicenseHttp", form=True, is_pckey=first["pckey"], is_pcid=PC)
    assert later["result"] == "The license is valid.", later
    assert later["activationKey"] == key
    # a query (is_activate=false) answers the same key: a DVC made from it keeps matching
    _, query = qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_activate="false")
    assert query["pckey"] == first["pckey"] and query["result"] == "The license is valid."
    # activating again from the same computer takes no new seat
    _, again = qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC)
    assert again["result"] == "The license was already activated on this computer."
    assert again["availableLicenses"] == "1"
    assert server.sql("select times_activated from licenses")[0][0] == 1


def test_validate_license_errors(server: Server) -> None:
    server.product()
    key = key_of(server)
    assert error_code(server, "ValidateLicenseHttp", is_pcid=PC) == 206
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key) == 208
    assert error_code(server, "ValidateLicenseHttp", is_avkey="NOPE-NOPE", is_pcid=PC) == 203
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_activate="false") == 219  # fmt: skip
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_activate="maybe") == 208  # fmt: skip
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid="a\x00b") == 208
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid="x" * 257) == 208
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_majorversion="v1") == 208  # fmt: skip
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_productid="nope") == 218  # fmt: skip
    _, ok = qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC)
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC2) == 210
    assert error_code(server, "ValidateLicenseHttp", is_pckey=ok["pckey"], is_pcid=PC2) == 225
    assert error_code(server, "ValidateLicenseHttp", is_pckey="LK1-AAAAA", is_pcid=PC) == 205
    assert error_code(server, "ValidateLicenseHttp", is_pckey=ok["pckey"]) == 208
    disabled = key_of(server, enabled=False)
    assert error_code(server, "ValidateLicenseHttp", is_avkey=disabled, is_pcid=PC) == 201
    expired = key_of(server, license_type="subscription", validity_period=datetime(2020, 1, 1, tzinfo=UTC))  # fmt: skip
    assert error_code(server, "ValidateLicenseHttp", is_avkey=expired, is_pcid=PC) == 209
    server.sql("update licenses set enabled = :f", f=False)
    assert error_code(server, "ValidateLicenseHttp", is_pckey=ok["pckey"], is_pcid=PC) == 201


def test_max_activations_per_system_on_the_qlm_front(server: Server) -> None:
    server.product()
    server.sql("update products set max_activations_per_system = 2")
    key = key_of(server)
    for _ in range(2):
        assert "error" not in qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC)[1]
    assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC) == 214


def test_release_license(server: Server) -> None:
    server.product()
    server.sql("update products set max_release_count = 1")
    key = key_of(server)
    _, first = qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC)
    assert error_code(server, "ReleaseLicenseHttp", is_avkey=key) == 208
    assert error_code(server, "ReleaseLicenseHttp", is_pcid=PC) == 206
    today = datetime.now(UTC).date()
    wrong = deactivation_code(first["pckey"], PC2, today)
    # QLM's documented misspelling of the argument is accepted
    assert error_code(server, "ReleaseLicenseHttp", is_avkey=key, is_pcid=PC, is_deacivation_code=wrong) == 224  # fmt: skip
    code = deactivation_code(first["pckey"], PC, today)
    _, released = qlm(
        server, "ReleaseLicenseHttp", form=True, is_avkey=key, is_pcid=PC,
        is_deactivation_code=code,
    )  # fmt: skip
    assert released["result"] == f"Activation Key {key} has been released from computer {PC}."
    assert error_code(server, "ReleaseLicenseHttp", is_avkey=key, is_pcid=PC) == 216
    qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC)
    assert error_code(server, "ReleaseLicenseHttp", is_avkey=key, is_pcid=PC) == 212


def test_cloud_floating_seats_are_checked_out_and_in(server: Server) -> None:
    server.product(is_floating_cloud=True, floating_users=1, can_borrow=True, max_borrow_time=8)
    key = key_of(server, max_activations=3)
    for pc in (PC, PC2):
        _, activated = qlm(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=pc)
        assert "error" not in activated, activated
    # QLM's cloud model and seats; an activation takes no seat, a checkout does
    assert (activated["licenseModel"], activated["floatingSeats"]) == ("permanent_cloud", "1")
    _, taken = qlm(server, "CheckoutLicenseHttp", is_avkey=key, is_pcid=PC)
    assert taken["floatingSeatsInUse"] == "1", taken
    assert error_code(server, "CheckoutLicenseHttp", is_avkey=key, is_pcid=PC2) == 210
    _, first = qlm(server, "CheckinLicenseHttp", is_avkey=key, is_pcid=PC)
    assert first["result"] == f"The floating license was checked in by computer {PC}.", first
    _, out = qlm(server, "CheckoutLicenseHttp", is_avkey=key, is_pcid=PC2)
    assert "error" not in out, out
    assert (out["floatingSeats"], out["floatingSeatsInUse"], out["offlineExpiryDate"]) == (
        "1",
        "1",
        "",
    )
    assert out["seatExpiryDate"]
    # the seat is the License API's: a check of the other computer is refused as a checkout is
    assert error_code(server, "CheckoutLicenseHttp", is_avkey=key, is_pcid=PC) == 210
    refused = server.api.check(product="app", license_key=key, hardware_id=PC)
    assert refused.json()["code"] == "floating_not_available"
    # offline for two hours (a borrow), then checked in; a check-in of no seat is refused
    _, offline = qlm(server, "GoOfflineHttp", is_avkey=key, is_pcid=PC2, is_period="120")
    assert "error" not in offline, offline
    checked = server.api.check(product="app", license_key=key, hardware_id=PC2).json()
    assert checked["is_borrowed"] is True
    assert error_code(server, "GoOfflineHttp", is_avkey=key, is_pcid=PC2, is_period="600") == 200
    assert error_code(server, "GoOfflineHttp", is_avkey=key, is_pcid=PC2, is_period="x") == 208
    qlm(server, "CheckinLicenseHttp", is_avkey=key, is_pcid=PC2)
    assert error_code(server, "CheckinLicenseHttp", is_avkey=key, is_pcid=PC2) == 210
    _, again = qlm(server, "CheckoutLicenseHttp", is_avkey=key, is_pcid=PC)
    assert again["floatingSeatsInUse"] == "1", again
    # a license that is not a floating one has no seats to check out
    plain = key_of(server, license_key="PLAIN-QLM-1", is_floating_cloud=False)
    qlm(server, "ValidateLicenseHttp", is_avkey=plain, is_pcid=PC)
    assert error_code(server, "CheckoutLicenseHttp", is_avkey=plain, is_pcid=PC) == 210


def test_ping_latest_version_and_privacy_consent(server: Server) -> None:
    server.product()
    _, ping = qlm(server, "PingHttp")
    assert ping["result"].startswith("Successfully connected")
    assert ping["serverDate"].endswith("Z") and ping["serverVersion"]
    assert error_code(server, "GetLatestVersionHttp") == 208
    _, none = qlm(server, "GetLatestVersionHttp", is_productid="app")
    assert none["latestVersion"] == ""
    with server.db.transaction(write=True) as session:
        product = catalogue.repository.product_by_code(session, server.company_id, "app")
        assert product is not None
        catalogue.add_release(
            session, product, "2.1.0", datetime(2026, 1, 1, tzinfo=UTC),
            full_link="https://example.com/app-2.1.0.msi?a=1&b=<2>",
            release_notes_link="https://example.com/notes",
        )  # fmt: skip
        product_id = product.id
    _, latest = qlm(server, "GetLatestVersionHttp", is_productid=str(product_id))
    assert latest["latestVersion"] == "2.1.0"
    assert latest["latestVersionUrl"] == "https://example.com/app-2.1.0.msi?a=1&b=<2>"
    key = key_of(server, customer_email="ann@example.com")
    _, consent = qlm(server, "UpdatePrivacyConsentHttp", is_email="ann@example.com", is_consent="1")
    assert consent["privacyConsent"] == "true" and consent["privacyConsentDate"]
    _, withdrawn = qlm(
        server, "UpdatePrivacyConsentHttp", is_email="ann@example.com", is_consent="0",
        is_avkey=key,
    )  # fmt: skip
    assert withdrawn["privacyConsent"] == "false"
    assert error_code(server, "UpdatePrivacyConsentHttp", is_email="ann@example.com") == 208
    assert error_code(server, "UpdatePrivacyConsentHttp", is_email="x@y.example", is_consent="1") == 1904  # fmt: skip


def test_authentication_is_required(sqlite_server: Server) -> None:
    server = sqlite_server
    response, answer = qlm(server, "PingHttp", auth=False)
    assert (response.status_code, answer["errorCode"]) == (400, "8")
    response, answer = qlm(
        server, "ValidateLicenseHttp", auth=False,
        headers={"Date": http_date(), "Authorization": 'algorithm="hmac-sha256", headers="date", signature="AAAA", apikey="' + server.api.api_key + '"'},
    )  # fmt: skip
    assert (response.status_code, answer["errorCode"]) == (401, "8")
    stale = http_date(datetime.now(UTC) - timedelta(hours=1))
    _, answer = qlm(server, "PingHttp", headers=server.api.headers(stale), auth=False)
    assert answer["errorCode"] == "2"
    # an OAuth client's bearer token works too
    with server.db.transaction(write=True) as session:
        client = catalogue.create_oauth_client(session, server.master_key, server.company_id)
    token = server.client.post(
        "/api/v4/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
    ).json()["access_token"]
    bearer = {"Date": http_date(), "Authorization": f"Bearer {token}"}
    _, ping = qlm(server, "PingHttp", auth=False, headers=bearer)
    assert "error" not in ping
    _, bad = qlm(
        server, "PingHttp", auth=False, headers={**bearer, "Authorization": "Bearer x.y.z"}
    )
    assert bad["errorCode"] == "8"
    read_only = server.api_key(read_only=True)
    server.api, saved = read_only, server.api
    try:
        server.product()
        key = key_of(server)
        assert error_code(server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC) == 7
    finally:
        server.api = saved


def test_unknown_methods_and_http_verbs(sqlite_server: Server) -> None:
    response, answer = qlm(sqlite_server, "CreateLicenseKeyHttp")
    assert (response.status_code, answer["errorCode"]) == (404, "1")
    response = sqlite_server.api.call("PUT", "/qlmservice.asmx/PingHttp")
    assert response.status_code == 405
    assert ET.fromstring(response.content).find("errorCode") is not None
    response, answer = qlm(sqlite_server, "pinghttp")  # ASMX names are case-insensitive
    assert response.status_code == 200 and "error" not in answer
    multipart = sqlite_server.api.call(
        "POST", "/qlmservice.asmx/PingHttp", files={"is_email": ("a", b"b")}
    )
    assert ET.fromstring(multipart.content).findtext("errorCode") == "5"


def test_byte_order_mark_on_request(sqlite_server: Server) -> None:
    response = sqlite_server.api.call(
        "GET", "/qlmservice.asmx/PingHttp", params={"is_writebom": "true"}
    )
    assert response.content.startswith(b"\xef\xbb\xbf<?xml")
    assert ET.fromstring(response.content[3:]).findtext("serverVersion")
    plain = sqlite_server.api.call("GET", "/qlmservice.asmx/PingHttp")
    assert plain.content.startswith(b"<?xml")


HOSTILE = [
    "<script>alert('x')</script>",
    "AT&T \"quoted\" 'single' ]]> <!-- -->",
    "Zoë Ünïcode ✓ 日本語 🔑",
    "tab\tnew\nline",
    "bell\x07 escape\x1b delete\x7f vt\x0b ff\x0c",
    "\ufffe\uffff",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_comes_back_escaped(sqlite_server: Server, text: str) -> None:
    sqlite_server.product()
    key = key_of(sqlite_server)
    _, answer = qlm(
        sqlite_server, "ValidateLicenseHttp", is_avkey=key, is_pcid=PC, is_computer_name=text[:255],
        is_userdata1=text,
    )  # fmt: skip
    assert "error" not in answer, answer
    expected = "".join(
        c if c in "\t\n" or (0x20 <= ord(c) <= 0xD7FF) or (0xE000 <= ord(c) <= 0xFFFD) or ord(c) > 0xFFFF else REPLACEMENT
        for c in text.strip()  # arguments are trimmed
    )  # fmt: skip
    assert answer["userData"] == expected
    # error messages are escaped too (the key is echoed back in the message)
    _, error = qlm(sqlite_server, "ReleaseLicenseHttp", is_avkey=key, is_pcid=text[:200])
    assert error["errorCode"] == "216"


def _random_text(rng: random.Random) -> str:
    ranges = [(0, 0x1F), (0x20, 0x7E), (0x7F, 0x9F), (0xA0, 0x2FFF), (0xD800, 0xDFFF),
              (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]  # fmt: skip
    chars = []
    for _ in range(rng.randint(0, 40)):
        low, high = rng.choice(ranges)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def _xml_normalized(text: str) -> str:
    """What an XML parser reports for ``text`` after sanitising (CR and CRLF read as LF)."""
    kept = "".join(
        c if c in "\t\n\r" or (0x20 <= ord(c) <= 0xD7FF) or (0xE000 <= ord(c) <= 0xFFFD) or ord(c) > 0xFFFF else REPLACEMENT
        for c in text
    )  # fmt: skip
    return kept.replace("\r\n", "\n").replace("\r", "\n")


def test_property_any_unicode_gives_well_formed_xml() -> None:
    rng = random.Random(20260501)
    for _ in range(2000):
        values = [_random_text(rng) for _ in range(3)]
        body = document([("a", values[0]), ("b", values[1]), ("result", values[2])], bom=rng.random() < 0.2)  # fmt: skip
        root = ET.fromstring(body.removeprefix(b"\xef\xbb\xbf"))
        assert [(c.text or "") for c in root] == [_xml_normalized(v) for v in values]
        error = ET.fromstring(error_document(values[0], 205))
        assert error.findtext("error") == _xml_normalized(values[0])
        assert error.findtext("errorCode") == "205"


def test_property_any_unicode_through_the_front(sqlite_server: Server) -> None:
    sqlite_server.product()
    key = key_of(sqlite_server, allow_unlimited_activations=True)
    rng = random.Random(7)
    for index in range(25):
        text = "".join(c for c in _random_text(rng) if not 0xD800 <= ord(c) <= 0xDFFF)
        _, answer = qlm(
            sqlite_server, "ValidateLicenseHttp", form=index % 2 == 0, is_avkey=key,
            is_pcid=f"PC-{index}", is_userdata1=text, is_computer_name=text[:100],
        )  # fmt: skip
        if "\x00" in text:
            assert answer["errorCode"] == "208"
        else:
            assert answer.get("userData") == _xml_normalized(text.strip()), answer


# -- authorization codes over the QLM front (a real SMTP server) ----------------------------------


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    yield from run_mailbox()


@pytest.fixture
def mail_server(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox
) -> Iterator[Server]:
    yield from start_server(
        f"sqlite:///{tmp_path / 'licensor.db'}",
        tmp_path / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
    )


def test_authorization_code_methods(mail_server: Server, mailbox: Mailbox) -> None:
    mail_server.product()
    mail_server.license(customer_email="ann@example.com")
    assert error_code(mail_server, "RequestAuthorizationCodeForActivationHttp") == 208
    assert error_code(mail_server, "RequestAuthorizationCodeForActivationHttp", is_email="eve@example.com") == 203  # fmt: skip
    _, asked = qlm(
        mail_server, "RequestAuthorizationCodeForActivationHttp", is_email="ann@example.com",
        is_pcid=PC, is_productid="app", is_majorversion="1", is_minorverson="0",
    )  # fmt: skip
    assert asked["result"] == "An authorization code was sent to ann@example.com."
    code = mailbox.code_in(mailbox.wait_for(1))
    assert error_code(mail_server, "ActivateKeyByAuthorizationCodeHttp", is_pcid=PC) == 208
    _, activated = qlm(
        mail_server, "ActivateKeyByAuthorizationCodeHttp", is_authcode=code, is_pcid=PC,
        is_email="ann@example.com",
    )  # fmt: skip
    assert activated["result"] == "The license was activated successfully.", activated
    assert decode_computer_key(activated["pckey"], mail_server.public_keys).is_bound_to(PC)
    _, later = qlm(
        mail_server, "ActivateKeyByAuthorizationCodeHttp", is_pckey=activated["pckey"], is_pcid=PC
    )
    assert later["result"] == "The license is valid."
    assert error_code(
        mail_server, "ActivateKeyByAuthorizationCodeHttp", is_authcode=code, is_pcid=PC,
        is_email="ann@example.com",
    ) == 205  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "is_avkey=%ff%fe&is_pcid=%c3%28",
        "is_avkey=%00&is_pcid=x",
        "is_avkey&is_pcid",
        "is_avkey=a&is_avkey=b&is_pcid=c&IS_PCID=d",
        "is_pckey=" + "A" * 3000 + "&is_pcid=x",
        "is_pckey=LK1-%00&is_pcid=x",
        "is_productid=99999999999999999999999&is_avkey=k&is_pcid=x",
        "is_majorversion=%F0%9F%94%91&is_avkey=k&is_pcid=x",
        "%%%&&&==",
    ],
)
def test_odd_queries_never_crash(server: Server, query: str) -> None:
    server.product()
    response = server.api.call("GET", f"/qlmservice.asmx/ValidateLicenseHttp?{query}")
    assert response.status_code < 500
    root = ET.fromstring(response.content)
    assert root.findtext("errorCode") is not None


def test_odd_form_bodies_never_crash(sqlite_server: Server) -> None:
    for body, content_type in [
        (b"\xff\xfe=\x00", "application/x-www-form-urlencoded"),
        (b"is_avkey=%ZZ&is_pcid=%", "application/x-www-form-urlencoded"),
        (b"<xml/>", "text/xml"),
    ]:
        response = sqlite_server.api.call(
            "POST",
            "/qlmservice.asmx/ValidateLicenseHttp",
            content=body,
            headers={"Content-Type": content_type},
        )
        assert response.status_code < 500
        assert ET.fromstring(response.content).findtext("errorCode") in {"5", "203", "206", "208"}
