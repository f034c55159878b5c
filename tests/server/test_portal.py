"""The customers' page (``/portal``) over HTTP, on SQLite and PostgreSQL: a customer signs in
with the key and their e-mail, sees the license's computers and frees one (the License API's
deactivation: its audit, its limits); a wrong key or e-mail, a forged cookie, another license's
computer and a form without its token are refused; sign-ins are rate-limited."""

from __future__ import annotations

import re

import httpx

from tests.server.support import Server

EMAIL = "buyer@customer.example"


def token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


def sign_in(server: Server, key: str, email: str = EMAIL) -> httpx.Response:
    page = server.client.get("/portal")
    return server.client.post(
        "/portal/login",
        data={"license_key": key, "email": email, "csrf_token": token(page)},
        follow_redirects=False,
    )


def test_a_customer_frees_a_computer(server: Server) -> None:
    server.product("app")
    key = server.license("app", customer_email=EMAIL, max_activations=2).license_key or ""
    for hw in ("old-laptop", "new-laptop"):
        assert (
            server.api.activate(product="app", license_key=key, hardware_id=hw).status_code == 200
        )
    assert sign_in(server, key, "someone@else.example").status_code == 400
    assert sign_in(server, "AAAA-BBBB-CCCC", EMAIL).status_code == 400
    signed = sign_in(server, key.lower(), EMAIL.upper())
    assert (signed.status_code, signed.headers["location"]) == (303, "/portal")
    assert "httponly" in signed.headers["set-cookie"].lower()
    page = server.client.get("/portal")
    assert "old-laptop" in page.text and "2 of 2" in page.text
    (device_id,) = server.sql("select id from devices where hardware_id = 'old-laptop'")[0]
    # a form without its token changes nothing
    refused = server.client.post(f"/portal/devices/{device_id}/deactivate", data={})
    assert refused.status_code == 403
    freed = server.client.post(
        f"/portal/devices/{device_id}/deactivate",
        data={"csrf_token": token(page)},
        follow_redirects=False,
    )
    assert freed.status_code == 303
    after = server.client.get(freed.headers["location"])
    assert "Computer freed" in after.text and "old-laptop" not in after.text
    assert "1 of 2" in after.text
    actors = server.sql("select actor from audit_log where action = 'device.deactivate'")
    assert actors == [(f"portal:{EMAIL}",)]
    # the seat is free: the client's next check says so
    check = server.api.check(product="app", license_key=key, hardware_id="old-laptop")
    assert check.json()["code"] == "device_not_found"


def test_nothing_of_another_license(server: Server) -> None:
    server.product("app")
    mine = server.license("app", customer_email=EMAIL).license_key or ""
    theirs = server.license("app", customer_email="other@x.example").license_key or ""
    assert (
        server.api.activate(product="app", license_key=theirs, hardware_id="theirs").status_code
        == 200
    )
    (device_id,) = server.sql("select id from devices")[0]
    assert sign_in(server, mine).status_code == 303
    page = server.client.get("/portal")
    assert "theirs" not in page.text
    refused = server.client.post(
        f"/portal/devices/{device_id}/deactivate", data={"csrf_token": token(page)}
    )
    assert refused.status_code == 400 and "device_not_found" in refused.text
    assert server.sql("select active from devices")[0][0] in (True, 1)
    # a cookie the server did not make opens nothing
    server.client.cookies.clear()
    server.client.cookies.set("licensor_portal", "1.99999999999.forged", path="/portal")
    assert 'id="sign-in"' in server.client.get("/portal").text


def test_sign_ins_are_rate_limited(server: Server) -> None:
    server.settings.rate_limit_client_failures = 3
    server.product("app")
    key = server.license("app", customer_email=EMAIL).license_key or ""
    for _ in range(3):
        assert sign_in(server, key, "wrong@x.example").status_code == 400
    refused = sign_in(server, key)
    assert refused.status_code == 429 and "Too many attempts" in refused.text
