"""The ``licensor`` command line, and the README's demo path end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from licensor.cli.main import app
from licensor.protocol.signing import PublicKeySet
from tests.server.processes import STARTUP_SECONDS, free_port

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "data"
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(directory))
    monkeypatch.delenv("LICENSOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("LICENSOR_MASTER_KEY", raising=False)
    return directory


def run(*args: str) -> dict[str, object] | list[object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    loaded: dict[str, object] | list[object] = json.loads(result.stdout)
    return loaded


def test_init_creates_everything_once(data_dir: Path) -> None:
    first = run("init", "--company", "Acme")
    assert isinstance(first, dict)
    assert first["company"] == "Acme"
    assert re.fullmatch(r"[0-9a-f-]{36}", str(first["api_key"]))
    assert len(str(first["shared_key"])) >= 30
    assert (data_dir / "licensor.db").exists()
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (data_dir / "keys").glob("*.pem"))
    # the shared key is stored encrypted, never in clear
    assert str(first["shared_key"]).encode() not in (data_dir / "licensor.db").read_bytes()
    again = run("init")
    assert isinstance(again, dict)
    assert again["created"] is False


def test_issue_licenses_in_bulk_and_user_licenses(data_dir: Path) -> None:
    run("init")
    run("product", "create", "app", "--name", "App")
    issued = run(
        "license", "create", "--product", "app", "--count", "500", "--max-activations", "2"
    )
    assert isinstance(issued, list)
    keys = [str(item["license_key"]) for item in issued]  # type: ignore[index]
    assert len(set(keys)) == 500
    assert all(re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){4}[0-9A-HJKMNP-TV-Z]{4}", k) for k in keys)
    run("product", "create", "team", "--name", "Team", "--authorization-method", "user")
    user = run(
        "license",
        "create",
        "--product",
        "team",
        "--user",
        "Ann@Example.com",
        "--password",
        "pw-123456",
    )
    assert isinstance(user, dict)
    assert user["username"] == "ann@example.com"
    assert user["license_key"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["license", "create", "--product", "nope"], "no product 'nope'"),
        (["license", "create", "--product", "app", "--type", "bogus"], "license_type"),
        (["license", "create", "--product", "app", "--type", "time-limited"], "validity"),
        (["license", "create", "--product", "app", "--validity-period", "tomorrow"], "not a date"),
        (["product", "create", "app", "--name", "Again"], "already exists"),
        (["product", "create", "x y", "--name", "Bad"], "short_code"),
        (["product", "create", "v", "--name", "V", "--versions", "~~1"], "version_spec"),
    ],
)
def test_bad_input_is_a_clear_error(data_dir: Path, args: list[str], message: str) -> None:
    run("init")
    run("product", "create", "app", "--name", "App")
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output.replace("\n", "")


def test_public_key_prints_pems_that_verify_the_server(data_dir: Path) -> None:
    run("init")
    result = runner.invoke(app, ["public-key"])
    assert result.exit_code == 0
    keys = PublicKeySet.from_pem([result.stdout])
    assert len(keys.keys) == 2


def test_readme_demo_activates_within_a_minute(tmp_path: Path) -> None:
    """`licensor serve --demo` prints a license; `python -m licensor.demo activate` uses it."""
    port = free_port()
    env = {**os.environ, "LICENSOR_DATA_DIR": str(tmp_path / "data")}
    env.pop("LICENSOR_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "licensor.cli.main", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        banner = ""
        assert process.stdout is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while "deactivate" not in banner and time.monotonic() < deadline:
            banner += process.stdout.readline()
        key = re.search(r"license key\s+(\S+)", banner)
        assert key, banner
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        demo = [sys.executable, "-m", "licensor.demo"]
        activated = subprocess.run(
            [*demo, "activate", key.group(1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert activated.returncode == 0, activated.stdout + activated.stderr
        assert "signatures verified" in activated.stdout
        checked = subprocess.run(
            [*demo, "check", key.group(1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout
        done = subprocess.run(
            [*demo, "deactivate", key.group(1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "license_deactivated" in done.stdout
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
