"""The API documentation page (Swagger UI at ``/docs``) works on a server without internet:
everything it loads comes from Licensor itself."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import Browser, screenshot
from tests.server import processes

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    deployment = processes.prepare(f"sqlite:///{tmp_path / 'licensor.db'}", tmp_path / "data")
    try:
        with processes.serve(deployment) as base:
            yield base
    finally:
        deployment.db.dispose()


def outside(urls: list[str], base_url: str) -> list[str]:
    """The requests that would leave the server (``data:`` and ``blob:`` URLs never do)."""
    assert urls, "the browser's log of requests is empty"
    network = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    return [u for u in network if not u.startswith(base_url + "/")]


def wait_for(browser: Browser, css: str, at_least: int, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while True:
        found = len(browser.driver.find_elements(By.CSS_SELECTOR, css))
        if found >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_swagger_ui_lists_the_operations_with_nothing_from_outside(
    browser: Browser, base_url: str, tmp_path: Path
) -> None:
    browser.driver.get(base_url + "/docs")
    operations = wait_for(browser, ".opblock", 40)
    assert operations >= 40, "Swagger UI did not render the operations"
    summaries = " ".join(
        e.text for e in browser.driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    )
    for path in (
        "/api/v4/activate_license",
        "/api/v4/check_license",
        "/api/management/v1/licenses",
    ):
        assert path in summaries
    requested = browser.requested_urls()
    assert outside(requested, base_url) == []
    assert any(url.endswith("/swagger-ui-bundle.js") for url in requested)
    # the screenshot the docs show (docs/images/api-docs.png), written anew on request
    shot = tmp_path / "api-docs.png"
    assert screenshot(browser, shot) and shot.stat().st_size > 20_000  # (not a blank page)
    if os.environ.get("LICENSOR_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "api-docs.png").write_bytes(shot.read_bytes())


def test_no_other_documentation_page_is_served(base_url: str) -> None:
    # ReDoc's page loads its logo from a CDN: not served (a signed 404, like any unknown path)
    assert httpx.get(base_url + "/redoc", timeout=10).status_code == 404
