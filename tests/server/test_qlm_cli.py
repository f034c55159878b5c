"""``licensor qlm ...`` on SQLite and PostgreSQL: limits, customer accounts, a Computer Key for a
customer's ComputerID (manual activation in licensor.client) and a release with its DVC."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from licensor.cli.main import app
from licensor.client import ComputerKeyClient
from licensor.protocol.computer_key import deactivation_code
from licensor.protocol.signing import PublicKeySet

runner = CliRunner()


@pytest.fixture
def environment(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LICENSOR_DATABASE_URL", database_url)
    monkeypatch.delenv("LICENSOR_MASTER_KEY", raising=False)
    return tmp_path


def run(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return result.output


def test_vendor_commands(environment: Path) -> None:
    run("init", "--company", "Acme")
    run("product", "create", "app", "--name", "App")
    issued = run("license", "create", "--product", "app", "--customer", "ann@example.com")
    key = issued["keys"][0] if "keys" in issued else issued["license_key"]
    limits = run(
        "qlm", "product", "app", "--max-activations-per-system", "3", "--vm-only",
        "--max-release-count", "2", "--max-release-period-days", "30",
        "--lookup-fields", "orderid", "--require-deactivation-code",
    )  # fmt: skip
    assert limits == {
        "product": "app",
        "max_activations_per_system": 3,
        "max_activations_per_system_vm_only": True,
        "max_release_count": 2,
        "max_release_period_days": 30,
        "release_requires_deactivation_code": True,
        "activation_lookup_fields": ["OrderID"],
    }
    assert "known: OrderID, ReceiptID" in refused("qlm", "product", "app", "--lookup-fields", "X")
    license_ = run("qlm", "license", key, "--features", "0:3;2:128", "--receipt-id", "R-1")
    assert license_["features"] == "0:3;1:0;2:128;3:0;" and license_["receipt_id"] == "R-1"
    assert "features" in refused("qlm", "license", key, "--features", "9:1")
    account = run(
        "qlm", "customer", "ann@example.com", "--password", "ann's password",
        "--allow-organization-users",
    )  # fmt: skip
    assert account == {
        "email": "ann@example.com",
        "has_password": True,
        "allow_organization_users": True,
    }

    # the vendor generates a Computer Key for the customer's ComputerID...
    issued_key = run("qlm", "computer-key", key, "--computer-id", "CUSTOMER-PC", "--computer-name", "box")  # fmt: skip
    assert issued_key["product"] == "app" and issued_key["reactivated"] is False
    public = run("public-key")
    keys = PublicKeySet.from_pem([k["public_key"] for k in public["keys"]])
    # ...and the customer's application accepts it offline
    customer_app = ComputerKeyClient(
        "app", keys, hardware_id="CUSTOMER-PC", storage_dir=environment / "customer"
    )
    installed = customer_app.install(issued_key["computer_key"])
    assert installed.feature_enabled(2, 128)
    assert customer_app.validate() == installed

    # releasing needs the code the application shows after deactivating offline
    assert "deactivation verification code" in refused(
        "qlm", "release", key, "--computer-id", "CUSTOMER-PC"
    )
    code = customer_app.deactivate_offline()
    assert code == deactivation_code(
        issued_key["computer_key"], "CUSTOMER-PC", datetime.now(UTC).date()
    )
    released = run("qlm", "release", key, "--computer-id", "CUSTOMER-PC", "--deactivation-code", code)  # fmt: skip
    assert released["released"] is True
