"""The web console over HTTP, on SQLite and PostgreSQL: sessions (cookie flags, logout, no
page without one, never an open redirect), the form token on every POST, the roles of the
management API, output escaped, logins rate-limited, and the pages' use cases (the management
API's) -- the browser tests drive the same pages in Chromium."""

from __future__ import annotations

import re

import httpx
import pytest

from licensor.services import catalogue, console
from tests.server.support import Api, Server

PASSWORD = "console-pass-1"


def add_user(server: Server, email: str, role: str) -> None:
    with server.db.transaction(write=True) as session:
        console.create_user(session, server.company_id, email, PASSWORD, role)


def form_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def sign_in(server: Server, email: str, password: str = PASSWORD) -> httpx.Response:
    login = server.client.get("/console/login")
    assert login.status_code == 200
    return server.client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": form_token(login)},
        follow_redirects=False,
    )


@pytest.fixture
def admin(server: Server) -> Server:
    server.product("app")
    add_user(server, "ada@vendor.example", "admin")
    answer = sign_in(server, "ada@vendor.example")
    assert (answer.status_code, answer.headers["location"]) == (303, "/console")
    return server


def test_no_page_without_a_session(server: Server) -> None:
    for path in ("/console", "/console/licenses", "/console/licenses/1", "/console/audit"):
        answer = server.client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
    answer = server.client.post(
        "/console/licenses", data={"product": "app"}, follow_redirects=False
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
    # a forged cookie is no session
    server.client.cookies.set("licensor_console", "forged", path="/console")
    assert server.client.get("/console", follow_redirects=False).status_code == 303


def test_signing_in_and_out(server: Server) -> None:
    add_user(server, "ada@vendor.example", "admin")
    assert sign_in(server, "ada@vendor.example", "wrong-password-1").status_code == 400
    assert sign_in(server, "nobody@vendor.example").status_code == 400
    answer = sign_in(server, "ADA@vendor.example")  # (e-mails in any case)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
    token = server.client.cookies.get("licensor_console")
    assert token and token not in str(server.sql("select token_hash from console_sessions"))
    dashboard = server.client.get("/console")
    assert dashboard.status_code == 200 and "ada@vendor.example" in dashboard.text
    assert "<svg" in dashboard.text and "script" not in dashboard.text.lower()
    logout = server.client.post(
        "/console/logout", data={"csrf_token": form_token(dashboard)}, follow_redirects=False
    )
    assert logout.status_code == 303
    # the old cookie no longer opens anything
    server.client.cookies.set("licensor_console", token, path="/console")
    assert server.client.get("/console", follow_redirects=False).status_code == 303
    assert server.sql("select count(*) from console_sessions")[0][0] == 0


def test_a_login_form_needs_its_token(server: Server) -> None:
    add_user(server, "ada@vendor.example", "admin")
    answer = server.client.post(
        "/console/login",
        data={"email": "ada@vendor.example", "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 403 and "licensor_console" not in server.client.cookies


def test_logins_are_rate_limited(server: Server) -> None:
    server.settings.rate_limit_license_failures = 3
    add_user(server, "ada@vendor.example", "admin")
    for _ in range(3):
        assert sign_in(server, "ada@vendor.example", "wrong-password-1").status_code == 400
    refused = sign_in(server, "ada@vendor.example")  # (the right one, too, now)
    assert refused.status_code == 429 and "Too many attempts" in refused.text


def test_licenses_are_made_found_and_changed_through_forms(admin: Server) -> None:
    page = admin.client.get("/console/licenses")
    made = admin.client.post(
        "/console/licenses",
        data={
            "csrf_token": form_token(page),
            "product": "app",
            "max_activations": "2",
            "customer_email": "buyer@customer.example",
            "order_id": "ORD-1",
            "note": "<script>alert(1)</script>",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    detail = admin.client.get(made.headers["location"])
    assert detail.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
    assert "<script>alert" not in detail.text
    key = re.search(r'id="license-key">([^<]+)<', detail.text)
    assert key
    for query in (key.group(1).lower(), "Buyer@cust", "ORD-1"):
        found = admin.client.get("/console/licenses", params={"q": query})
        assert key.group(1) in found.text, query
    assert key.group(1) not in admin.client.get("/console/licenses", params={"q": "zzz"}).text
    license_id = made.headers["location"].rsplit("/", 1)[1]
    disabled = admin.client.post(
        f"/console/licenses/{license_id}/disable",
        data={"csrf_token": form_token(detail)},
        follow_redirects=False,
    )
    assert disabled.status_code == 303
    assert admin.sql("select enabled from licenses")[0][0] in (False, 0)
    actions = [a for (a,) in admin.sql("select action from audit_log order by id")]
    assert actions[-2:] == ["license.create", "license.disable"]
    audit = admin.client.get("/console/audit", params={"action": "license."}).text
    assert "license.disable" in audit and "console:ada@vendor.example" in audit


def test_a_post_without_the_form_token_changes_nothing(admin: Server) -> None:
    answer = admin.client.post("/console/licenses", data={"product": "app"}, follow_redirects=False)
    assert answer.status_code == 403
    assert admin.sql("select count(*) from licenses")[0][0] == 0


def test_a_read_only_user_changes_nothing(server: Server) -> None:
    server.product("app")
    license_ = server.license("app")
    add_user(server, "rita@vendor.example", "read-only")
    assert sign_in(server, "rita@vendor.example").status_code == 303
    page = server.client.get(f"/console/licenses/{license_.id}")
    assert page.status_code == 200 and 'id="toggle"' not in page.text
    listing = server.client.get("/console/licenses")
    assert 'id="new-license"' not in listing.text
    refused = server.client.post(
        f"/console/licenses/{license_.id}/disable", data={"csrf_token": form_token(page)}
    )
    assert refused.status_code == 403 and "read-only" in refused.text
    assert server.sql("select enabled from licenses")[0][0] in (True, 1)


def test_another_companys_license_is_not_found(admin: Server) -> None:
    other_id, _ = admin.new_company("Other")
    with admin.db.transaction(write=True) as session:
        catalogue.create_product(session, other_id, catalogue.ProductSpec("x", "X"))
    foreign = admin.license("x", company_id=other_id)
    answer = admin.client.get(f"/console/licenses/{foreign.id}")
    assert answer.status_code == 404
    assert foreign.license_key not in admin.client.get("/console/licenses").text


def test_customers_blacklist_and_credentials_pages(admin: Server) -> None:
    admin.license("app", customer_email="buyer@customer.example")
    customers = admin.client.get("/console/customers", params={"q": "buyer"})
    assert customers.status_code == 200 and "buyer@customer.example" in customers.text
    page = admin.client.get("/console/blacklist")
    token = form_token(page)
    added = admin.client.post(
        "/console/blacklist",
        data={"csrf_token": token, "hardware_id": "stolen-pc", "product": "", "reason": "<b>x</b>"},
    )
    assert added.status_code == 200 and "stolen-pc" in added.text
    assert "&lt;b&gt;x&lt;/b&gt;" in added.text
    key = admin.license("app").license_key or ""
    refused = admin.api.activate(product="app", license_key=key, hardware_id="stolen-pc")
    assert error_code(refused) == "blacklisted"
    (entry_id,) = admin.sql("select id from blacklist")[0]
    removed = admin.client.post(f"/console/blacklist/{entry_id}/remove", data={"csrf_token": token})
    assert removed.status_code == 200 and "No computer is refused" in removed.text

    made = admin.client.post(
        "/console/credentials/api-keys", data={"csrf_token": token, "label": "shop"}
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    api_key = re.search(r'id="credential-id">([^<]+)<', made.text)
    shared_key = re.search(r'id="secret">([^<]+)<', made.text)
    assert api_key and shared_key
    # the new key works on the License API; the list never shows its secret again
    works = Api(admin.client, admin.public_keys, api_key.group(1), shared_key.group(1))
    assert works.activate(product="app", license_key=key, hardware_id="pc-1").status_code == 200
    listing = admin.client.get("/console/credentials")
    assert api_key.group(1) in listing.text and shared_key.group(1) not in listing.text
    (key_id,) = admin.sql("select id from api_keys where api_key = :k", k=api_key.group(1))[0]
    revoked = admin.client.post(
        f"/console/credentials/api-keys/{key_id}/revoke", data={"csrf_token": token}
    )
    assert revoked.status_code == 200
    assert works.check(product="app", license_key=key, hardware_id="pc-1").json()["code"] == (
        "revoked_api_key"
    )


def test_support_sees_no_credentials(server: Server) -> None:
    add_user(server, "sam@vendor.example", "support")
    assert sign_in(server, "sam@vendor.example").status_code == 303
    dashboard = server.client.get("/console")
    assert "/console/credentials" not in dashboard.text
    refused = server.client.get("/console/credentials")
    assert refused.status_code == 403
    made = server.client.post(
        "/console/credentials/api-keys", data={"csrf_token": form_token(dashboard)}
    )
    assert made.status_code == 403 and server.sql("select count(*) from api_keys")[0][0] == 1


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code


def test_a_products_page_shows_its_catalogue(admin: Server) -> None:
    from tests.server.test_management_api import mgmt

    api = mgmt(admin)
    feature = {"code": "export", "name": "Export <PDF>"}
    assert api.post("/products/app/features", feature).status_code == 201
    policy = {
        "code": "annual",
        "name": "Annual",
        "license_type": "subscription",
        "validity_days": 365,
    }
    assert api.post("/products/app/policies", policy).status_code == 201
    page = admin.client.get("/console/products/app")
    assert page.status_code == 200
    assert "Export &lt;PDF&gt;" in page.text and "annual" in page.text
    assert admin.client.get("/console/products/nope").status_code == 404


def test_a_floating_licenses_page_shows_its_seats_and_reset_frees_all(admin: Server) -> None:
    admin.product("float", is_floating_cloud=True, floating_users=2)
    license_ = admin.license("float", max_activations=3)
    key = license_.license_key or ""
    assert (
        admin.api.activate(product="float", license_key=key, hardware_id="pc-1").status_code == 200
    )
    assert admin.api.check(product="float", license_key=key, hardware_id="pc-1").status_code == 200
    page = admin.client.get(f"/console/licenses/{license_.id}")
    assert "1 of 2 in use" in page.text and "pc-1" in page.text
    reset = admin.client.post(
        f"/console/licenses/{license_.id}/reset", data={"csrf_token": form_token(page)}
    )
    assert reset.status_code == 200 and "deactivated" in reset.text
    assert admin.sql("select count(*) from devices where active")[0][0] == 0
