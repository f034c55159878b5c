"""A real headless Chromium (Debian's ``chromium``, driven through its ``chromedriver`` by
Selenium), for the pages Licensor serves. Nothing but the server under test can be reached: every
host name resolves nowhere but 127.0.0.1 (``--host-resolver-rules``), and each test reads the
browser's own log of the requests a page made."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def requested_urls(self) -> list[str]:
        """Every URL the pages asked for since the last call (the performance log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Debian's chromium and chromium-driver are needed: scripts/ensure-system-deps.sh "
            "installs them (make test runs it)"
        )
    profile = Path(tempfile.mkdtemp(prefix="licensor-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
        # no host but the server under test: every name resolves nowhere
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(browser: Browser, path: Path) -> Any:
    path.parent.mkdir(parents=True, exist_ok=True)
    return browser.driver.save_screenshot(str(path))
