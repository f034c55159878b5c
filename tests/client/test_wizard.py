"""The License Wizard, driven as a user would: through a terminal, and a Tk window under Xvfb."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _display import drive_tk_wizard, settle
from _fake_license_server import FakeLicenseServer
from _terminal import TerminalSession

from licensor.client import LicenseClient
from licensor.client._wizard_text import seats
from licensor.client.wizard import PLAIN_MESSAGES, explain
from licensor.protocol.errors import ERROR_CODES

SRC = Path(__file__).resolve().parents[2] / "src"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


@pytest.fixture
def live(server: FakeLicenseServer) -> Iterator[str]:
    server.now = lambda: datetime.now(UTC)
    http_server, url = server.serve()
    yield url
    http_server.shutdown()


@pytest.fixture
def key_file(tmp_path: Path, public_keys: list[str]) -> Path:
    path = tmp_path / "vendor.pem"
    path.write_text("".join(public_keys))
    return path


@pytest.fixture
def wizard_args(live: str, key_file: Path, tmp_path: Path) -> list[str]:
    return [
        "--server",
        live,
        "--product",
        "app",
        "--api-key",
        "api-key-1",
        "--shared-key",
        "shared-secret",
        "--public-key",
        str(key_file),
        "--storage-dir",
        str(tmp_path / "licenses"),
    ]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["TERM"] = "xterm-256color"
    return env


def run_wizard(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "licensor.client.wizard", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=False,
    )


# --------------------------------------------------------------------------- terminal


@posix_only
def test_terminal_wizard_pages_driven_by_a_user(
    wizard_args: list[str], server: FakeLicenseServer
) -> None:
    session = TerminalSession(
        [sys.executable, "-m", "licensor.client.wizard", *wizard_args], environment()
    )
    try:
        session.expect(r"License Wizard — app")
        session.expect(r"Choose: ")
        session.send("2")
        session.expect(r"no activated license")
        session.expect(r"Choose: ")
        session.send("1")
        session.expect(r"License key: ")
        session.send("WRONG-KEY")
        session.expect(r"No license matches what you entered")
        session.expect(r"server code: license_not_found")
        session.expect(r"Choose: ")
        session.send("1")
        session.expect(r"License key: ")
        session.send("KEY-1111")
        session.expect(r"This computer is activated")
        session.expect(r"Choose: ")
        session.send("2")
        session.expect(r"Status\s+Active")
        session.expect(r"License\s+KEY-1111")
        session.expect(r"Valid\s+does not expire")
        session.expect(r"Choose: ")
        session.send("3")
        session.expect(r"Deactivate KEY-1111 on this computer\? \[y/N\] ")
        session.send("y")
        session.expect(r"This computer is deactivated")
        session.expect(r"Choose: ")
        session.send("q")
        assert session.wait() == 0
    finally:
        session.kill()
    assert not any(server.licenses["KEY-1111"].devices.values())


@posix_only
def test_terminal_wizard_user_login_hides_the_password(
    wizard_args: list[str], server: FakeLicenseServer
) -> None:
    server.licenses.clear()
    server.add_license("U-1", product="app", username="ann@example.com", password="s3cret-pw")
    session = TerminalSession(
        [sys.executable, "-m", "licensor.client.wizard", *wizard_args, "activate"], environment()
    )
    try:
        session.expect(r"Username \(e-mail\): ")
        session.send("ann@example.com")
        session.expect(r"Password: ")
        session.send("s3cret-pw")
        session.expect(r"This computer is activated")
        assert session.wait() == 0
    finally:
        session.kill()
    assert "s3cret-pw" not in session.output  # typed without echo


def test_scripted_commands_and_exit_codes(
    wizard_args: list[str], server: FakeLicenseServer, tmp_path: Path
) -> None:
    status = run_wizard([*wizard_args, "status"])
    assert status.returncode == 5, status.stdout + status.stderr
    refused = run_wizard([*wizard_args, "activate", "--key", "NOPE"])
    assert refused.returncode == 3
    assert "No license matches" in refused.stdout
    activated = run_wizard([*wizard_args, "activate", "--key", "KEY-1111"])
    assert activated.returncode == 0, activated.stdout + activated.stderr
    status = run_wizard([*wizard_args, "status"])
    assert status.returncode == 0 and "KEY-1111" in status.stdout
    cancelled = run_wizard([*wizard_args, "deactivate"], stdin="n\n")
    assert cancelled.returncode == 130 and "Nothing was changed" in cancelled.stdout
    deactivated = run_wizard([*wizard_args, "deactivate", "--yes"])
    assert deactivated.returncode == 0, deactivated.stdout + deactivated.stderr
    assert run_wizard([*wizard_args, "status"]).returncode == 5


def test_exit_codes_for_unreachable_usage_and_binding(
    wizard_args: list[str], key_file: Path, tmp_path: Path
) -> None:
    down = list(wizard_args)
    down[1] = "http://127.0.0.1:9"  # nothing listens there
    unreachable = run_wizard([*down, "activate", "--key", "KEY-1111"])
    assert unreachable.returncode == 4
    assert "cannot be reached" in unreachable.stdout

    no_key = run_wizard(
        [
            "--server",
            "http://x",
            "--product",
            "app",
            "--api-key",
            "a",
            "--shared-key",
            "b",
            "status",
        ]
    )
    assert no_key.returncode == 2 and "--public-key" in no_key.stderr

    binding = run_wizard([*wizard_args, "--binding", "user_defined", "activate", "--key", "K"])
    assert binding.returncode == 6
    assert "user_defined" in binding.stdout


def test_config_file(live: str, key_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "wizard.toml"
    config.write_text(
        "[licensor]\n"
        f'server = "{live}"\n'
        'product = "app"\n'
        'api_key = "api-key-1"\n'
        'shared_key = "shared-secret"\n'
        f'public_keys = ["{key_file.name}"]\n'
        f'storage_dir = "{tmp_path / "from-config"}"\n'
    )
    result = run_wizard(["--config", str(config), "activate", "--key", "KEY-1111"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert list((tmp_path / "from-config").glob("*.license.json"))


def test_the_status_page_shows_the_seats_in_use() -> None:
    floating = {
        "times_activated": 3,
        "max_activations": 10,
        "is_floating_cloud": True,
        "floating_users": 2,
        "floating_in_use_devices": 2,
        "is_borrowed": True,
        "borrowed_until": "2026-12-08T09:30:00.000Z",
    }
    assert seats(floating) == [
        ("Computers", "3 activated (of 10)"),
        ("Seats", "2 of 2 in use at once; this computer borrowed one until 2026-12-08 09:30 UTC"),
    ]
    metered = {
        "times_activated": 1,
        "allow_unlimited_activations": True,
        "license_type": "consumption",
        "total_consumptions": 40,
        "max_consumptions": 100,
    }
    assert seats(metered) == [("Computers", "1 activated (no limit)"), ("Used", "40 (of 100)")]
    assert seats({}) == []


def test_every_seed_error_code_has_plain_words() -> None:
    from licensor.client import LicenseRefused

    seed_codes = [
        "unknown_product", "license_not_found", "license_not_enabled", "vm_not_allowed",
        "offline_floating_cloud_not_supported", "license_start_date_error", "blacklisted",
        "license_activated_max_times", "license_user_activated_max_times", "license_expired",
        "license_transferred_max_times", "license_device_exists",
        "product_version_not_supported",
    ]  # fmt: skip
    for code in seed_codes:
        assert code in ERROR_CODES
        text = explain(LicenseRefused(code, ERROR_CODES[code].message, 400))
        assert text == PLAIN_MESSAGES[code]
        assert "_" not in text  # plain words, not codes


# --------------------------------------------------------------------------- Tk under Xvfb


def test_tk_wizard_pages(
    display: str,
    live: str,
    server: FakeLicenseServer,
    public_keys: list[str],
    tmp_path: Path,
) -> None:
    from licensor.client import HmacCredentials

    client = LicenseClient(
        live,
        "app",
        public_keys,
        HmacCredentials("api-key-1", "shared-secret"),
        storage_dir=tmp_path / "gui",
        send_device_facts=False,
    )
    try:
        drive_tk_wizard(client, display, "fake-server", "KEY-1111")
    finally:
        client.close()
    assert not any(server.licenses["KEY-1111"].devices.values())


def test_tk_wizard_stays_responsive_while_the_server_answers(
    display: str, server: FakeLicenseServer, public_keys: list[str], tmp_path: Path
) -> None:
    """The call to the server runs in a thread: meanwhile the window handles its events, shows
    that it is working, and cannot be asked to activate twice."""
    tk = pytest.importorskip("tkinter")
    import httpx

    from licensor.client import HmacCredentials
    from licensor.client._wizard_tk import WizardWindow

    gate = threading.Event()
    inner = server.transport()

    class SlowServer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/activate_license"):
                gate.wait(30)
            return inner.handle_request(request)

    client = LicenseClient(
        "https://licensing.test",
        "app",
        public_keys,
        HmacCredentials("api-key-1", "shared-secret"),
        storage_dir=tmp_path / "gui",
        transport=SlowServer(),
        send_device_facts=False,
    )
    root = tk.Tk()
    try:
        window = WizardWindow(root, client)
        window.key_entry.insert(0, "KEY-1111")
        window.activate_button.invoke()  # returns at once
        handled = 0
        for _ in range(20):  # the window keeps handling events while the server is silent
            root.update()
            handled += 1
            time.sleep(0.01)
        assert handled == 20 and not gate.is_set()
        assert window.busy
        assert str(window.activate_button.cget("state")) == "disabled"
        assert "Activating" in str(window.activate_message.cget("text"))
        gate.set()
        settle(root, window)
        assert "This computer is activated" in str(window.activate_message.cget("text"))
        assert str(window.activate_button.cget("state")) == "normal"
        assert window.last_exit == 0
    finally:
        gate.set()
        root.destroy()
        client.close()
