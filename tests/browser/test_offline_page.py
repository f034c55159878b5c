"""The ``/offline`` upload page in a real headless Chromium, with JavaScript switched off: the
client library writes a request file, a person uploads it, downloads the license file, and the
application validates it at start-up with no network; the deactivation file frees the seat.
Every refusal is a page that says what is wrong."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from licensor.client import HmacCredentials, LicenseClient
from licensor.keyring import Keyring
from licensor.settings import Settings
from tests.browser.conftest import Browser, screenshot
from tests.server import processes

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


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
    try:
        with processes.serve(deployment) as base:
            yield Site(base, deployment, [k["public_key"] for k in keys])
    finally:
        deployment.db.dispose()


def unreachable() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def air_gapped(site: Site, storage: Path) -> LicenseClient:
    """The application on the computer without internet (its server cannot be reached)."""
    return LicenseClient(
        unreachable(),
        "app",
        site.public_keys,
        HmacCredentials(site.deployment.api_key, site.deployment.shared_key),
        storage_dir=storage,
        hardware_id="air-gapped-pc",
        retries=0,
    )


def without_javascript(browser: Browser, downloads: Path) -> None:
    driver = browser.driver
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )


def submit(browser: Browser, path: Path) -> None:
    """Choose ``path`` in the page's form, upload it, and wait for the answer's page."""
    driver = browser.driver
    form = driver.find_element(By.TAG_NAME, "form")
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "upload").click()
    page_left(browser, form)


def page_left(browser: Browser, element: WebElement) -> None:
    """Wait until the page that held ``element`` is gone and the answer's page is loaded.
    (While the old document goes away, Chromium may answer a look-up of its nodes with an
    inspector error instead of a stale element: that, too, means "not yet".)"""
    WebDriverWait(browser.driver, 30, ignored_exceptions=[WebDriverException]).until(
        staleness_of(element)
    )
    WebDriverWait(browser.driver, 30).until(lambda d: d.find_elements(By.ID, "upload"))


def upload(browser: Browser, site: Site, path: Path) -> None:
    browser.driver.get(site.url + "/offline")
    submit(browser, path)


def text_of(browser: Browser, element_id: str) -> str:
    return str(browser.driver.find_element(By.ID, element_id).text)


def downloaded(directory: Path, name: str, seconds: float = 30) -> Path:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = directory / name
        if found.exists() and not list(directory.glob("*.crdownload")):
            return found
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded: {list(directory.iterdir())}")


def times_activated(site: Site) -> int:
    with site.deployment.db.transaction() as session:
        from sqlalchemy import text

        return int(session.execute(text("SELECT sum(times_activated) FROM licenses")).scalar_one())


def test_request_file_to_license_file_and_back(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    key = processes.issue(site.deployment, max_activations=1)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    without_javascript(browser, downloads)
    app = air_gapped(site, tmp_path / "app")
    request = Path(app.offline_activation_request(tmp_path / "ls_activation.req", key))

    browser.driver.get(site.url + "/offline")
    assert "Activate a computer without internet" in browser.driver.page_source
    screenshot(browser, SCREENSHOTS / "offline-page.png")
    upload(browser, site, request)
    assert text_of(browser, "license-key") == key
    assert text_of(browser, "hardware-id") == "air-gapped-pc"
    screenshot(browser, SCREENSHOTS / "offline-license-ready.png")
    browser.driver.find_element(By.ID, "download").click()
    license_file = downloaded(downloads, "ls_license.lic")
    # the text shown to copy is the same file
    shown = browser.driver.find_element(By.ID, "license-file").get_attribute("value")
    assert shown == license_file.read_text()
    assert times_activated(site) == 1

    # back on the computer without internet: the file activates, and start-up validates offline
    assert app.activate_offline(license_file).license_key == key
    restarted = air_gapped(site, tmp_path / "app")
    assert restarted.validate().license_key == key

    # the same request file again: refused in plain words, nothing changed
    upload(browser, site, request)
    assert text_of(browser, "error-code") == "offline_request_replayed"
    assert "used already" in text_of(browser, "error")
    screenshot(browser, SCREENSHOTS / "offline-error.png")
    assert times_activated(site) == 1

    # deactivation: the file is written, the license leaves the computer, the page frees the seat
    release = Path(restarted.offline_deactivation_request(tmp_path / "ls_deactivation.req"))
    upload(browser, site, release)
    assert "The computer is deactivated" in text_of(browser, "deactivated")
    assert times_activated(site) == 0


def test_bad_files_get_a_page_that_says_why(browser: Browser, site: Site, tmp_path: Path) -> None:
    key = processes.issue(site.deployment)
    without_javascript(browser, tmp_path)
    cases = {
        "photo.req": (b"\x89PNG not a request file", "authorization_missing_params"),
        "empty.req": (b"   \n", "missing_content"),
        "huge.req": (b"A" * (100 * 1024), "payload_too_large"),
    }
    for name, (content, code) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        upload(browser, site, path)
        assert text_of(browser, "error-code") == code, name
    assert "larger than 64 KiB" in text_of(browser, "error")

    # a file edited by one byte after the application wrote it
    app = air_gapped(site, tmp_path / "app")
    request = Path(app.offline_activation_request(tmp_path / "ls_activation.req", key))
    import base64
    import json

    fields = json.loads(base64.b64decode(request.read_bytes()))
    fields["hardware_id"] = "another-pc"
    edited = tmp_path / "edited.req"
    edited.write_bytes(base64.b64encode(json.dumps(fields).encode()))
    upload(browser, site, edited)
    assert text_of(browser, "error-code") == "signature_mismatch"
    assert "changed after the application wrote it" in text_of(browser, "error")

    # the form without its cookie (posted from another site, or the cookie expired): refused
    browser.driver.get(site.url + "/offline")
    browser.driver.delete_all_cookies()
    submit(browser, request)
    assert text_of(browser, "error-code") == "forbidden"
    assert times_activated(site) == 0
    # and the page it answers carries a fresh token: the same upload now goes through
    submit(browser, request)
    assert text_of(browser, "license-key") == key


def fill(browser: Browser, values: dict[str, str], button: str) -> None:
    """Type ``values`` (field id -> text) into the page's fields and press ``button``."""
    driver = browser.driver
    form = driver.find_element(By.ID, button)
    for element_id, value in values.items():
        driver.find_element(By.ID, element_id).send_keys(value)
    driver.find_element(By.ID, button).click()
    page_left(browser, form)


def test_activation_key_and_computer_id_to_computer_key_and_release(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    """QLM's way: the application shows its Computer ID; on another computer the person enters
    it with the Activation Key, copies the Computer Key back; removing it later shows a
    deactivation code that frees the seat on the same page."""
    from licensor.client import ComputerKeyClient
    from licensor.protocol.signing import PublicKeySet

    key = processes.issue(site.deployment, max_activations=1)
    without_javascript(browser, tmp_path)
    app = ComputerKeyClient(
        "app",
        PublicKeySet.from_pem(site.public_keys),
        storage_dir=tmp_path / "app",
        hardware_id="offline-lab-pc",
    )
    browser.driver.get(site.url + "/offline")
    fill(
        browser,
        {"activation-key": key, "computer-id": app.hardware_id, "computer-name": "Lab"},
        "get-computer-key",
    )
    assert text_of(browser, "ck-license-key") == key
    assert text_of(browser, "ck-computer-id") == "offline-lab-pc"
    screenshot(browser, SCREENSHOTS / "offline-computer-key.png")
    computer_key = browser.driver.find_element(By.ID, "computer-key").get_attribute("value")
    assert computer_key
    assert times_activated(site) == 1

    # on the computer without internet: the key installs and validates with no network
    installed = app.install(computer_key)
    assert app.validate().license_id == installed.license_id

    # the license leaves that computer; its code frees the seat on the page
    code = app.deactivate_offline()
    browser.driver.get(site.url + "/offline")
    fill(
        browser,
        {"release-key": key, "release-computer-id": app.hardware_id, "deactivation-code": code},
        "release",
    )
    assert "The computer is released" in text_of(browser, "released")
    assert times_activated(site) == 0
    # a wrong code says so
    browser.driver.get(site.url + "/offline")
    fill(
        browser,
        {"release-key": key, "release-computer-id": app.hardware_id, "deactivation-code": "NOPE"},
        "release",
    )
    assert text_of(browser, "error-code") == "license_not_active"
