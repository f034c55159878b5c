"""The web console in a real headless Chromium, against a running ``licensor serve``: a vendor
signs in, makes a product and a license through the forms, a client activates and its computer
appears, the vendor deactivates it; a read-only user can change nothing; a form sent without its
token is refused; logging out ends the session. Screenshots of the main pages are kept in
``docs/console/`` (the README shows them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from licensor.client import HmacCredentials, LicenseClient
from licensor.keyring import Keyring
from licensor.services import console
from licensor.settings import Settings
from tests.browser.conftest import Browser, screenshot
from tests.browser.test_api_docs import outside
from tests.server import processes

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PASSWORD = "console-pass-1"


@dataclass
class Site:
    url: str
    deployment: processes.Deployment
    public_keys: list[str]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    data_dir = tmp_path / "data"
    deployment = processes.prepare(f"sqlite:///{tmp_path / 'licensor.db'}", data_dir)
    keys = Keyring.load(Settings(data_dir=data_dir).resolved_keys_dir).public_keys()
    with deployment.db.transaction(write=True) as session:
        for email, role in (("ada@vendor.example", "admin"), ("rita@vendor.example", "read-only")):
            console.create_user(session, deployment.company_id, email, PASSWORD, role)
    try:
        with processes.serve(deployment) as base:
            yield Site(base, deployment, [k["public_key"] for k in keys])
    finally:
        deployment.db.dispose()


def sign_in(browser: Browser, site: Site, email: str) -> None:
    driver = browser.driver
    driver.get(site.url + "/console")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "sign-in"))
    assert driver.current_url == site.url + "/console/login"  # (no session: the login page)
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "logout"))


def click(browser: Browser, element_id: str) -> None:
    """Press a button and wait for the page its form leads to (see test_offline_page)."""
    old = browser.driver.find_element(By.TAG_NAME, "html")
    browser.driver.find_element(By.ID, element_id).click()
    WebDriverWait(browser.driver, 30, ignored_exceptions=[WebDriverException]).until(
        staleness_of(old)
    )
    WebDriverWait(browser.driver, 30).until(lambda d: d.find_elements(By.TAG_NAME, "footer"))


def fill(browser: Browser, **fields: str) -> None:
    for name, value in fields.items():
        element = browser.driver.find_element(By.ID, name)
        if element.tag_name == "select":
            element.find_element(By.CSS_SELECTOR, f"option[value='{value}']").click()
        else:
            element.clear()
            element.send_keys(value)


def text_of(browser: Browser, element_id: str) -> str:
    return str(browser.driver.find_element(By.ID, element_id).text)


def test_a_vendor_runs_a_license_from_the_console(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    driver = browser.driver
    driver.get(site.url + "/console/login")
    screenshot(browser, SCREENSHOTS / "login.png")
    sign_in(browser, site, "ada@vendor.example")

    driver.get(site.url + "/console/products")
    fill(browser, short_code="photo", name="Photo Pro")
    click(browser, "create-product")
    assert "Photo Pro" in text_of(browser, "products")

    driver.get(site.url + "/console/licenses")
    fill(
        browser,
        product="photo",
        max_activations="2",
        customer_email="buyer@customer.example",
        order_id="ORD-7",
        note="<script>alert('x')</script>",
    )
    click(browser, "create-license")
    key = text_of(browser, "license-key")
    assert text_of(browser, "note") == "<script>alert('x')</script>"  # (shown as text)
    assert "No computer has activated" in text_of(browser, "devices")

    client = LicenseClient(
        site.url,
        "photo",
        site.public_keys,
        HmacCredentials(site.deployment.api_key, site.deployment.shared_key),
        storage_dir=tmp_path / "app",
        hardware_id="studio-pc-1",
    )
    try:
        client.activate(license_key=key)
    finally:
        client.close()
    driver.get(site.url + "/console")
    assert text_of(browser, "states").split("\n")[:2] == ["1", "active"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chart svg rect")) == 30
    screenshot(browser, SCREENSHOTS / "dashboard.png")
    driver.back()
    driver.refresh()
    assert "studio-pc-1" in text_of(browser, "devices")
    assert text_of(browser, "seats") == "1 of 2"
    screenshot(browser, SCREENSHOTS / "license.png")

    driver.find_element(By.CSS_SELECTOR, "#devices button").click()
    WebDriverWait(driver, 30).until(
        lambda d: "deactivated" in d.find_element(By.ID, "devices").text
    )
    assert text_of(browser, "seats") == "0 of 2"

    driver.get(site.url + "/console/licenses?q=buyer%40customer")
    assert key in text_of(browser, "licenses")
    screenshot(browser, SCREENSHOTS / "licenses.png")
    driver.get(site.url + "/console/audit")
    assert "device.deactivate" in text_of(browser, "audit")

    # a form without its token is refused, and changes nothing
    driver.get(site.url + "/console/licenses")
    driver.execute_script("document.querySelector('#new-license input[name=csrf_token]').remove()")
    click(browser, "create-license")
    assert "missing its token" in text_of(browser, "error")
    with site.deployment.db.transaction() as session:
        from sqlalchemy import text

        assert session.execute(text("SELECT count(*) FROM licenses")).scalar_one() == 1

    click(browser, "logout")
    assert driver.current_url == site.url + "/console/login"
    driver.get(site.url + "/console/licenses")
    assert driver.current_url == site.url + "/console/login"
    # nothing was loaded from elsewhere
    assert outside(browser.requested_urls(), site.url) == []


def test_a_read_only_user_can_change_nothing(browser: Browser, site: Site) -> None:
    key = processes.issue(site.deployment, max_activations=1)
    sign_in(browser, site, "rita@vendor.example")
    driver = browser.driver
    driver.get(site.url + "/console/licenses")
    assert key in text_of(browser, "licenses")
    assert not driver.find_elements(By.ID, "new-license")
    driver.find_element(By.LINK_TEXT, key).click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "license-key"))
    assert not driver.find_elements(By.ID, "toggle")
    # the session's own POST (its cookie and form token) is refused by the server too
    cookie = driver.get_cookie("licensor_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    token = driver.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute("value")
    license_id = driver.current_url.rsplit("/", 1)[1]
    refused = httpx.post(
        f"{site.url}/console/licenses/{license_id}/disable",
        data={"csrf_token": token or ""},
        cookies={"licensor_console": cookie["value"]},
    )
    assert refused.status_code == 403 and "read-only" in refused.text


def test_a_customer_frees_a_computer_on_the_portal(browser: Browser, site: Site) -> None:
    with site.deployment.db.transaction(write=True) as session:
        from licensor.services import catalogue

        catalogue.create_product(
            session, site.deployment.company_id, catalogue.ProductSpec("app", "Photo Pro")
        )
        key = catalogue.create_license(
            session,
            site.deployment.company_id,
            "app",
            catalogue.LicenseSpec(max_activations=2, customer_email="buyer@customer.example"),
            now=datetime.now(UTC),
        ).license_key
    assert key
    api = httpx.Client(base_url=site.url)
    for hw in ("old-laptop", "new-laptop"):
        body = {"product": "app", "license_key": key, "hardware_id": hw}
        answer = api.post("/api/v4/activate_license", json=body, headers=signed(site))
        assert answer.status_code == 200, answer.text
    driver = browser.driver
    driver.get(site.url + "/portal")
    fill(browser, license_key=key, email="buyer@customer.example")
    click(browser, "sign-in")
    assert text_of(browser, "seats") == "2 of 2"
    assert text_of(browser, "valid") == "does not expire"
    screenshot(browser, SCREENSHOTS / "portal.png")
    row = next(
        r for r in driver.find_elements(By.CSS_SELECTOR, "#devices tr") if "old-laptop" in r.text
    )
    old = driver.find_element(By.TAG_NAME, "html")
    row.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(driver, 30, ignored_exceptions=[WebDriverException]).until(staleness_of(old))
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "notice"))
    assert text_of(browser, "seats") == "1 of 2"
    assert "old-laptop" not in text_of(browser, "devices")
    click(browser, "logout")
    assert driver.find_elements(By.ID, "sign-in")


def signed(site: Site) -> dict[str, str]:
    from licensor.protocol.auth import format_authorization, hmac_signature, http_date

    date = http_date()
    return {
        "Date": date,
        "Authorization": format_authorization(
            site.deployment.api_key, hmac_signature(site.deployment.shared_key, date)
        ),
    }
