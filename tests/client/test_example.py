"""examples/protect_app.py refuses to start without a valid license, and starts offline with one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _fake_license_server import FakeLicenseServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "protect_app.py"


@pytest.fixture
def live(server: FakeLicenseServer) -> Iterator[str]:
    server.now = lambda: datetime.now(UTC)
    http_server, url = server.serve()
    yield url
    http_server.shutdown()


def run_app(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_example_app_is_protected(
    live: str, server: FakeLicenseServer, public_keys: list[str], tmp_path: Path
) -> None:
    pem = tmp_path / "vendor.pem"
    pem.write_text(public_keys[0])
    common = [
        "--product", "app", "--api-key", "api-key-1", "--shared-key", "shared-secret",
        "--public-key", str(pem), "--storage-dir", str(tmp_path / "licenses"),
    ]  # fmt: skip

    refused = run_app(["--server", live, *common])
    assert refused.returncode == 1
    assert "not licensed" in refused.stderr
    assert "runs here" not in refused.stdout

    wrong = run_app(["--server", live, *common, "--activate", "NOPE"])
    assert wrong.returncode == 1 and "No license matches" in wrong.stderr

    started = run_app(["--server", live, *common, "--activate", "KEY-1111"])
    assert started.returncode == 0, started.stderr
    assert "Licensed to KEY-1111" in started.stdout

    offline = run_app(["--server", "http://127.0.0.1:9", *common])
    assert offline.returncode == 0, offline.stderr
    assert "runs here" in offline.stdout
    assert len([r for r in server.requests if r.path.endswith("activate_license")]) == 2
