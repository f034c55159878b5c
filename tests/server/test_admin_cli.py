"""The vendor CLI: on this host's database (local mode), and through a real ``licensor serve``
process with ``--server`` and a management token (remote mode), following the README."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from licensor.api.app import create_app
from licensor.cli import backend
from licensor.cli.main import app
from licensor.keyring import Keyring
from licensor.protocol.auth import offline_signature
from licensor.protocol.offline import read_license_file
from licensor.protocol.signing import PublicKeySet, parse_iso_datetime, v2_signing_bytes
from licensor.services import catalogue, credentials
from licensor.settings import Settings
from licensor.store import repository
from tests.server.processes import Deployment, prepare, serve
from tests.server.support import Api, error_of, shared_keys_dir

runner = CliRunner()


@pytest.fixture
def data_dir(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh local installation: its own data dir and database, no server, no token."""
    directory = tmp_path / "data"
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(directory))
    monkeypatch.setenv("LICENSOR_KEYS_DIR", str(shared_keys_dir(tmp_path_factory.getbasetemp())))
    for name in ("LICENSOR_DATABASE_URL", "LICENSOR_MASTER_KEY", "LICENSOR_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LICENSOR_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(backend, "CONFIG_FILE", tmp_path / "no-cli-config.json")
    return directory


def cli(*args: str, code: int = 0) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def error_text(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.fixture
def license_api(data_dir: Path) -> Iterator[Api]:
    """``licensor init`` + a product, and the License API of this installation, in process."""
    made = cli_json("init", "--company", "Acme")
    cli_json("product", "create", "app", "--name", "App")
    settings = Settings()
    keys = PublicKeySet.from_pem(
        [k["public_key"] for k in Keyring.load(settings.resolved_keys_dir).public_keys()]
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client, keys, made["api_key"], made["shared_key"])


def activate(api: Api, key: str, hw: str) -> httpx.Response:
    return api.activate(product="app", license_key=key, hardware_id=hw)


# -- local mode --------------------------------------------------------------------------------


def test_local_vendor_commands(license_api: Api) -> None:
    issued = cli_json(
        "license", "create", "--product", "app", "--count", "5", "--customer", "x@y.com"
    )
    keys = [item["license_key"] for item in issued]
    assert len(set(keys)) == 5
    key = keys[0]

    listed = cli_json("license", "list")
    assert listed["total"] == 5
    assert [item["license_key"] for item in listed["items"]] == keys
    assert {item["customer"] for item in listed["items"]} == {"x@y.com"}
    assert cli_json("license", "list", "--customer", "X@Y.com")["total"] == 5
    assert cli_json("license", "list", "--product", "app", "--per-page", "2")["total"] == 5
    assert len(cli_json("license", "list", "--per-page", "2", "--page", "3")["items"]) == 1
    assert cli_json("license", "list", "--product", "other")["total"] == 0
    newest = cli_json("license", "list", "--sort", "-id")["items"]
    assert [item["license_key"] for item in newest] == keys[::-1]

    shown = cli_json("license", "show", key)
    assert shown["license_key"] == key
    assert cli_json("license", "show", str(shown["id"])) == shown
    assert cli_json("license", "show", key.lower().replace("-", ""))["id"] == shown["id"]

    assert cli_json("license", "disable", key)["enabled"] is False
    assert [i["license_key"] for i in cli_json("license", "list", "--disabled")["items"]] == [key]
    assert error_of(activate(license_api, key, "hw-1")) == (400, "license_not_enabled")
    assert cli_json("license", "enable", str(shown["id"]))["enabled"] is True
    assert cli_json("license", "list", "--enabled")["total"] == 5

    before = datetime.now(UTC)
    extended = cli_json("license", "extend", key, "--days", "30")
    end = parse_iso_datetime(extended["validity_period"])
    assert before + timedelta(days=30) - timedelta(seconds=1) <= end
    assert end <= datetime.now(UTC) + timedelta(days=30)
    until = cli_json("license", "extend", key, "--until", "2031-01-01")
    assert until["validity_period"] == "2031-01-01T00:00:00.000Z"

    first = activate(license_api, key, "hw-1")
    assert first.status_code == 200, first.text
    devices = cli_json("device", "list", key)["items"]
    assert [(d["id"], d["hardware_id"], d["active"]) for d in devices] == [
        (first.json()["device_id"], "hw-1", True)
    ]
    assert cli_json("device", "list", str(shown["id"]))["items"] == devices
    done = cli_json("device", "deactivate", str(devices[0]["id"]))
    assert done["active"] is False
    assert error_of(license_api.check(product="app", license_key=key, hardware_id="hw-1")) == (
        400,
        "license_not_active",
    )
    assert activate(license_api, key, "hw-2").status_code == 200  # the seat was freed
    assert cli_json("license", "show", key)["times_activated"] == 1
    reset = cli_json("license", "reset", key)
    assert reset["times_activated"] == 0
    assert not any(d["active"] for d in cli_json("device", "list", key)["items"])

    banned = cli_json("device", "blacklist", "hw-bad", "--reason", "chargeback")
    assert banned["hardware_id"] == "hw-bad"
    assert error_of(activate(license_api, keys[1], "hw-bad")) == (400, "blacklisted")
    twice = cli("device", "blacklist", "hw-bad", code=1)
    assert "already blacklisted" in error_text(twice)

    customers = cli_json("customer", "list")
    assert [c["email"] for c in customers["items"]] == ["x@y.com"]
    assert cli_json("customer", "list", "--search", "Y.COM")["total"] == 1
    assert cli_json("customer", "list", "--search", "nobody")["total"] == 0
    customer = cli_json("customer", "show", str(customers["items"][0]["id"]))
    assert customer["email"] == "x@y.com"
    assert sorted(item["license_key"] for item in customer["licenses"]) == sorted(keys)

    token = cli_json("token", "create", "--name", "ci", "--role", "support")
    assert token["token"].startswith("lsa_")
    assert token["role"] == "support"
    tokens = cli_json("token", "list")["items"]
    assert [(t["name"], t["role"], t["revoked"]) for t in tokens] == [("ci", "support", False)]
    assert token["token"] not in json.dumps(tokens)
    assert cli_json("token", "revoke", str(token["id"]))["revoked"] is True
    assert cli_json("token", "list")["items"][0]["revoked"] is True

    log = cli_json("audit", "--per-page", "100")
    assert log["total"] == len(log["items"])
    seen = [(e["action"], e["actor"]) for e in log["items"][::-1]]
    vendor = [a for a in seen if a[1] == "cli:local"]
    assert vendor == [
        ("license.create", "cli:local"),
        ("license.disable", "cli:local"),
        ("license.enable", "cli:local"),
        ("license.extend", "cli:local"),
        ("license.extend", "cli:local"),
        ("device.deactivate", "cli:local"),
        ("license.reset", "cli:local"),
        ("blacklist.add", "cli:local"),
        ("token.create", "cli:local"),
        ("token.revoke", "cli:local"),
    ]
    api_actor = "api-key:" + license_api.api_key[:8]
    assert [a for a in seen if a[1] == api_actor] == [
        ("device.activate", api_actor),
        ("device.activate", api_actor),
    ]
    licenses_only = cli_json("audit", "--action", "license.*")["items"]
    assert {e["action"] for e in licenses_only} == {
        "license.create",
        "license.disable",
        "license.enable",
        "license.extend",
        "license.reset",
    }
    one = cli_json("audit", "--object-type", "license", "--object-id", str(shown["id"]))
    assert [e["action"] for e in one["items"]] == [
        "license.reset",
        "license.extend",
        "license.extend",
        "license.enable",
        "license.disable",
    ]
    disabled = next(e for e in licenses_only if e["action"] == "license.disable")
    assert (disabled["before"]["enabled"], disabled["after"]["enabled"]) == (True, False)


def test_local_tables_for_people(license_api: Api) -> None:
    (key,) = cli(
        "license", "create", "--product", "app", "--customer", "ann@acme.io"
    ).stdout.split()
    assert activate(license_api, key, "hw-table-1").status_code == 200
    table = cli("license", "list").stdout
    assert key in table
    assert "1/1" in table  # seats used / seats
    assert "of 1" in table
    assert key in cli("license", "show", key).stdout
    assert "hw-table-1" in cli("device", "list", key).stdout
    assert "ann@acme.io" in cli("customer", "list").stdout
    assert "ann@acme.io" in cli("customer", "show", "1").stdout
    assert "disabled" in cli("license", "disable", key).stdout
    made = cli("token", "create", "--name", "desk", "--role", "read-only").stdout
    assert "lsa_" in made
    assert "shown once" in made
    listing = cli("token", "list").stdout
    assert "desk" in listing
    assert "lsa_" in listing  # the prefix only
    assert made.split()[1] not in listing
    assert "license.disable" in cli("audit").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["license", "show", "NOPE-NOPE"], "not found"),
        (["license", "show", "999"], "license 999 not found"),
        (["license", "disable", "999"], "not found"),
        (["license", "extend", "1"], "days"),
        (["license", "extend", "1", "--until", "someday"], "not a date"),
        (["device", "deactivate", "999"], "device 999 not found"),
        (["device", "list", "999"], "not found"),
        (["device", "blacklist", "hw", "--product", "nope"], "nope"),
        (["customer", "show", "999"], "not found"),
        (["token", "create", "--name", "x", "--role", "boss"], "role"),
        (["token", "revoke", "999"], "not found"),
        (["license", "list", "--sort", "colour"], "sort"),
        (["export", "licenses", "--format", "xml"], "csv or json"),
    ],
)
def test_local_errors_are_clear(license_api: Api, args: list[str], message: str) -> None:
    cli("license", "create", "--product", "app")
    result = cli(*args, code=2 if args[0] == "export" else 1)
    assert message in error_text(result)
    assert "Traceback" not in result.output


def test_local_mode_works_on_one_company_at_a_time(license_api: Api) -> None:
    cli_json("company", "create", "Other")
    (key,) = cli("license", "create", "--product", "app", "--company", "Acme").stdout.split()
    several = cli("license", "list", code=1)
    assert "several companies exist" in error_text(several)
    assert cli_json("license", "list", "--company", "Acme")["total"] == 1
    assert cli_json("license", "list", "--company", "Other")["total"] == 0
    assert "not found" in error_text(cli("license", "show", key, "--company", "Other", code=1))
    assert "not found" in error_text(cli("license", "disable", "1", "--company", "Other", code=1))
    assert cli_json("license", "show", key, "--company", "Acme")["enabled"] is True


def test_import_refuses_a_file_with_incomplete_rows(license_api: Api, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("product,license_key\napp,AAAA-BBBB\napp,\n")
    result = cli("import", "licenses", str(bad), code=1)
    assert "rows [2]" in error_text(result)
    assert "nothing imported" in error_text(result)
    assert cli_json("license", "list")["total"] == 0


# -- export and import -------------------------------------------------------------------------

ROUND_TRIP_FIELDS = [
    "product",
    "license_key",
    "license_type",
    "enabled",
    "validity_period",
    "validity_days",
    "grace_period",
    "max_activations",
    "allow_unlimited_activations",
    "max_transfers",
    "prevent_vm",
    "version_spec",
    "order_id",
    "customer",
    "is_trial",
    "trial_days",
]


def comparable(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(item[f] for f in ROUND_TRIP_FIELDS) for item in items)


@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_export_then_import_into_a_fresh_installation(
    license_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str
) -> None:
    cli_json("product", "create", "pro", "--name", "Pro")
    cli_json("license", "create", "--product", "app", "--count", "3", "--customer", "a@b.io")
    cli_json(
        "license",
        "create",
        "--product",
        "pro",
        "--type",
        "subscription",
        "--validity-period",
        "2030-06-30",
        "--grace-period",
        "48",
        "--max-activations",
        "4",
        "--max-transfers",
        "-1",
        "--versions",
        ">=2,<3",
        "--order-id",
        "order-9",
    )
    cli_json("license", "create", "--product", "app", "--unlimited-activations", "--prevent-vm")
    cli_json(
        "license", "create", "--product", "app", "--type", "time-limited", "--validity-days", "30"
    )
    cli_json("license", "create", "--product", "app", "--trial", "--trial-days", "14")
    disabled = cli_json("license", "create", "--product", "app", "--key", "KEEP-ME-OFF")
    cli_json("license", "disable", str(disabled["id"]))
    original = cli_json("license", "list", "--per-page", "500")["items"]
    assert len(original) == 8

    exported = tmp_path / f"licenses.{file_format}"
    cli("export", "licenses", "--format", file_format, "--output", str(exported))
    if file_format == "csv":
        rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    else:
        rows = json.loads(exported.read_text())
    assert sorted(r["license_key"] for r in rows) == sorted(i["license_key"] for i in original)

    # a fresh installation with the same products
    monkeypatch.setenv("LICENSOR_DATA_DIR", str(tmp_path / "fresh"))
    cli_json("init", "--company", "Acme")
    cli_json("product", "create", "app", "--name", "App")
    cli_json("product", "create", "pro", "--name", "Pro")
    assert cli_json("import", "licenses", str(exported)) == {"created": 8, "skipped": 0}
    imported = cli_json("license", "list", "--per-page", "500")["items"]
    assert comparable(imported) == comparable(original)
    assert cli_json("customer", "list")["total"] == 1

    assert cli_json("import", "licenses", str(exported)) == {"created": 0, "skipped": 8}
    again = cli_json("license", "list", "--per-page", "500")
    assert again["total"] == 8
    assert comparable(again["items"]) == comparable(original)
    assert cli_json("customer", "list")["total"] == 1


def test_export_pages_through_more_than_500_licenses(data_dir: Path, tmp_path: Path) -> None:
    cli_json("init")
    cli_json("product", "create", "app", "--name", "App")
    cli_json("product", "create", "pro", "--name", "Pro")
    issued = cli_json("license", "create", "--product", "app", "--count", "1200")
    cli_json("license", "create", "--product", "pro", "--count", "3")
    assert len(issued) == 1200

    out_csv = tmp_path / "all.csv"
    cli("export", "licenses", "--format", "csv", "--output", str(out_csv))
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == 1203
    assert len({r["license_key"] for r in rows}) == 1203
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert {r["license_key"] for r in rows} >= {i["license_key"] for i in issued}

    as_json = cli("export", "licenses", "--format", "json").stdout
    items = json.loads(as_json)
    assert len(items) == 1203
    assert len({i["id"] for i in items}) == 1203

    only_app = tmp_path / "app.json"
    cli("export", "licenses", "--format", "json", "--product", "app", "--output", str(only_app))
    assert len(json.loads(only_app.read_text())) == 1200


# -- remote mode: a real server process --------------------------------------------------------


@dataclass
class Remote:
    deployment: Deployment
    url: str
    env: dict[str, str]  # this host's settings, as on the server host
    http: httpx.Client
    api: Api  # the customer's application, over the License API

    def token(self, role: str, name: str) -> str:
        with self.deployment.db.transaction(write=True) as session:
            made = credentials.bootstrap_token(
                session,
                self.deployment.master_key,
                self.deployment.company_id,
                name=name,
                role=role,
                now=datetime.now(UTC),
            )
        token: str = made["token"]
        return token

    def license(self, product: str = "app") -> str:
        with self.deployment.db.transaction(write=True) as session:
            if repository.product_by_code(session, self.deployment.company_id, product) is None:
                catalogue.create_product(
                    session, self.deployment.company_id, catalogue.ProductSpec(product, product)
                )
            made = catalogue.create_license(
                session,
                self.deployment.company_id,
                product,
                catalogue.LicenseSpec(customer_email="ann@example.com"),
                now=datetime.now(UTC),
            )
        assert made.license_key
        return made.license_key


@pytest.fixture
def remote(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    """``licensor serve`` in its own process, on each database."""
    monkeypatch.setattr(backend, "CONFIG_FILE", tmp_path / "no-cli-config.json")
    deployment = prepare(database_url, tmp_path / "data")
    # no stray CLI configuration of the machine running the tests
    env = {**deployment.env, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    with serve(deployment) as url, httpx.Client(base_url=url, timeout=30) as http:
        api = Api(http, deployment.public_keys, deployment.api_key, deployment.shared_key)
        yield Remote(deployment, url, env, http, api)


def run_cli(
    env: dict[str, str], *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m licensor.cli.main ARGS`` in a new process, as a person at a terminal."""
    full_env = dict(env)
    full_env.pop("LICENSOR_ADMIN_TOKEN", None)
    full_env.pop("LICENSOR_SERVER", None)
    if token is not None:
        full_env["LICENSOR_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "licensor.cli.main", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_json(env: dict[str, str], *args: str, token: str | None = None) -> Any:
    done = run_cli(env, *args, "--json", token=token)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


def remote_cli(
    remote: Remote, *args: str, token: str | None, code: int = 0, as_json: bool = True
) -> Any:
    """The same CLI in this process (faster), still talking to the server process."""
    env = {"LICENSOR_ADMIN_TOKEN": token, "LICENSOR_SERVER": None}
    extra = ["--json"] if as_json else []
    result = runner.invoke(app, [*args, "--server", remote.url, *extra], env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return json.loads(result.stdout) if as_json and code == 0 else result


def test_readme_newcomer_path_against_a_real_server(remote: Remote) -> None:
    env = remote.env
    # on the server host: the first token, a product, a license (README "Managing licenses")
    shop = run_json(env, "token", "create", "--name", "shop", "--role", "admin")["token"]
    run_json(env, "product", "create", "photo", "--name", "Photo Pro")
    issued = run_json(
        env, "license", "create", "--product", "photo", "--customer", "ann@example.com"
    )
    key = issued["license_key"]

    # from anywhere: the management API through --server and LICENSOR_ADMIN_TOKEN
    server = ("--server", remote.url)
    listed = run_json(
        env, "license", "list", "--product", "photo", "--sort", "-created_at", *server, token=shop
    )
    assert [item["license_key"] for item in listed["items"]] == [key]
    assert listed["items"][0]["customer"] == "ann@example.com"

    # the customer's application activates it over the License API
    activated = remote.api.activate(
        product="photo", license_key=key, hardware_id="ann-laptop", hostname="ann"
    )
    assert activated.status_code == 200, activated.text

    table = run_cli(env, "device", "list", key, *server, token=shop)
    assert table.returncode == 0, table.stderr
    assert "ann-laptop" in table.stdout
    devices = remote_cli(remote, "device", "list", key, token=shop)["items"]
    assert [(d["hardware_id"], d["active"], d["hostname"]) for d in devices] == [
        ("ann-laptop", True, "ann")
    ]
    device_id = str(devices[0]["id"])
    done = run_cli(env, "device", "deactivate", device_id, *server, token=shop)
    assert done.returncode == 0, done.stderr
    assert f"Device {device_id} deactivated" in done.stdout

    check = remote.api.check(product="photo", license_key=key, hardware_id="ann-laptop")
    assert error_of(check) == (400, "license_not_active")
    assert remote_cli(remote, "license", "show", key, token=shop)["times_activated"] == 0
    log = remote_cli(remote, "audit", "--action", "device.*", token=shop)["items"]
    assert [(e["action"], e["actor"]) for e in log] == [
        ("device.deactivate", "token:shop"),
        ("device.activate", "api-key:" + remote.deployment.api_key[:8]),
    ]


def test_a_support_token_deactivates_devices_but_cannot_disable(remote: Remote) -> None:
    key = remote.license()
    shop = remote.token("admin", "shop")
    server = ("--server", remote.url)
    made = run_json(
        remote.env, "token", "create", "--name", "desk", "--role", "support", *server, token=shop
    )
    support = made["token"]
    assert made["role"] == "support"
    activated = remote.api.activate(product="app", license_key=key, hardware_id="ann-pc")
    assert activated.status_code == 200, activated.text

    device_id = str(activated.json()["device_id"])
    freed = run_json(remote.env, "device", "deactivate", device_id, *server, token=support)
    assert freed["active"] is False
    refused = run_cli(remote.env, "license", "disable", key, *server, token=support)
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert "The support role does not allow this" in message
    assert "(forbidden)" in message
    assert "Traceback" not in refused.stderr + refused.stdout
    shown = remote_cli(remote, "license", "show", key, token=support)
    assert (shown["enabled"], shown["times_activated"]) == (True, 0)
    for args in (
        ("license", "reset", key),
        ("license", "extend", key, "--days", "5"),
        ("device", "blacklist", "hw-x"),
        ("token", "create", "--name", "x", "--role", "admin"),
        ("token", "list"),
    ):
        result = remote_cli(remote, *args, token=support, code=1)
        assert "forbidden" in error_text(result), args
    assert remote_cli(remote, "license", "show", key, token=shop)["validity_period"] is None


def test_remote_export_import_and_connection_errors(remote: Remote, tmp_path: Path) -> None:
    keys = [remote.license() for _ in range(3)]
    shop = remote.token("admin", "shop")
    off = remote_cli(remote, "license", "disable", keys[1], token=shop)
    assert off["enabled"] is False
    before = remote_cli(remote, "license", "list", token=shop)["items"]

    backup = tmp_path / "backup.csv"
    remote_cli(remote, "export", "licenses", "--output", str(backup), token=shop, as_json=False)
    as_json = tmp_path / "backup.json"
    remote_cli(
        remote,
        "export",
        "licenses",
        "--format",
        "json",
        "--output",
        str(as_json),
        token=shop,
        as_json=False,
    )
    assert remote_cli(remote, "import", "licenses", str(as_json), token=shop) == {
        "created": 0,
        "skipped": 3,
    }
    # lost on the server, restored from the backup through the management API, as they were
    for item in before[:2]:
        deleted = remote.http.delete(
            f"/api/management/v1/licenses/{item['id']}",
            headers={"Authorization": f"Bearer {shop}"},
        )
        assert deleted.status_code == 204, deleted.text
    restored = remote_cli(remote, "import", "licenses", str(backup), token=shop)
    assert restored == {"created": 2, "skipped": 1}
    after = remote_cli(remote, "license", "list", token=shop)["items"]
    same = ("license_key", "product", "enabled", "customer", "license_type", "max_activations")
    assert sorted(tuple(i[f] for f in same) for i in after) == sorted(
        tuple(i[f] for f in same) for i in before
    )

    # no token, a wrong token, a server that is not there
    missing = remote_cli(remote, "license", "list", token=None, code=1)
    assert "LICENSOR_ADMIN_TOKEN" in error_text(missing)
    wrong = remote_cli(remote, "license", "list", token="lsa_not-a-real-token", code=1)
    assert "(unauthorized)" in error_text(wrong)
    gone = runner.invoke(
        app,
        ["license", "list", "--server", "http://127.0.0.1:9"],
        env={"LICENSOR_ADMIN_TOKEN": shop, "LICENSOR_SERVER": None},
    )
    assert gone.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in error_text(gone)


# -- features, policies, releases, orders, license users, credentials --------------------------


def test_local_catalogue_and_credential_commands(license_api: Api) -> None:
    export = cli_json("feature", "add", "app", "export", "--name", "Export")
    assert (export["code"], export["name"], export["feature_type"]) == (
        "export",
        "Export",
        "activation",
    )
    cli_json("feature", "add", "app", "credits", "--type", "consumption", "--max-consumption", "10")
    assert [f["code"] for f in cli_json("feature", "list", "app")["items"]] == ["export", "credits"]
    assert "credits" in cli("feature", "list", "app").stdout

    annual = cli_json(
        "policy", "create", "app", "annual", "--type", "subscription", "--validity-days", "365",
        "--max-activations", "3", "--feature", "export", "--default",
    )  # fmt: skip
    assert (annual["is_default"], annual["features"]) == (True, {"export": {}})
    assert [p["code"] for p in cli_json("policy", "list", "app")["items"]] == ["annual"]
    assert "annual" in cli("policy", "list", "app").stdout
    assert cli_json("policy", "show", "app", "annual") == annual
    assert "365" in cli("policy", "show", "app", "annual").stdout
    cli_json("policy", "create", "app", "spare", "--max-activations", "2")
    assert cli_json("policy", "default", "app", "spare")["is_default"] is True
    assert cli_json("policy", "show", "app", "annual")["is_default"] is False
    assert cli_json("policy", "default", "app", "annual")["is_default"] is True
    assert cli_json("policy", "delete", "app", "spare")["deleted"] is True
    assert [p["code"] for p in cli_json("policy", "list", "app")["items"]] == ["annual"]
    assert "policy 'spare' not found" in error_text(cli("policy", "delete", "app", "spare", code=1))

    edition = cli_json("custom-field", "add", "app", "edition", "--default", "basic")
    assert (edition["name"], edition["default_value"]) == ("edition", "basic")
    assert (
        cli_json("custom-field", "set-default", "app", "edition", "pro")["default_value"] == "pro"
    )
    assert [f["name"] for f in cli_json("custom-field", "list", "app")["items"]] == ["edition"]
    assert "pro" in cli("custom-field", "list", "app").stdout
    assert cli_json("custom-field", "remove", "app", "edition")["removed"] is True
    assert cli_json("custom-field", "list", "app")["items"] == []

    own = cli_json(
        "license", "create", "--product", "app", "--policy", "annual", "--max-activations", "5"
    )
    shown = cli_json("license", "show", own["license_key"])
    assert (shown["license_type"], shown["validity_days"], shown["max_activations"]) == (
        "subscription",
        365,
        5,
    )
    assert (shown["features"], shown["policy_id"]) == ({"export": {}}, annual["id"])
    # a policy carries consumption and floating terms too
    metered = cli_json(
        "policy", "create", "app", "metered", "--type", "consumption", "--max-consumptions", "100",
        "--overages", "10", "--negative-consumptions", "--consumption-period", "monthly",
        "--floating-users", "4", "--floating-timeout", "15", "--max-borrow-hours", "12",
    )  # fmt: skip
    assert (metered["max_consumptions"], metered["max_overages"], metered["floating_users"]) == (
        100,
        10,
        4,
    )
    issued = cli_json("license", "show", cli_json(
        "license", "create", "--product", "app", "--policy", "metered", "--floating-users", "6",
    )["license_key"])  # fmt: skip
    assert (issued["license_type"], issued["max_consumptions"], issued["allow_overages"]) == (
        "consumption",
        100,
        True,
    )
    assert (issued["consumption_period"], issued["allow_negative_consumptions"]) == (
        "monthly",
        True,
    )
    assert (issued["is_floating_cloud"], issued["floating_users"], issued["max_borrow_time"]) == (
        True,
        6,  # (the request's own value wins)
        12,
    )
    assert "only a consumption policy" in error_text(
        cli("policy", "create", "app", "bad", "--max-consumptions", "5", code=1)
    )
    by_default = cli_json(
        "license", "show", cli_json("license", "create", "--product", "app")["license_key"]
    )
    assert (by_default["license_type"], by_default["max_activations"]) == ("subscription", 3)
    refused = cli("license", "create", "--product", "app", "--policy", "nope", code=1)
    assert "no policy 'nope'" in error_text(refused)

    key = own["license_key"]
    attached = cli_json("feature", "attach", key, "credits", "--max-consumption", "4")
    assert attached["features"]["credits"] == {"max_consumption": 4}
    body = activate(license_api, key, "hw-1").json()
    assert [(f["code"], f["max_consumption"]) for f in body["product_features"]] == [
        ("export", 0),
        ("credits", 4),
    ]
    assert set(cli_json("feature", "detach", key, "credits")["features"]) == {"export"}
    assert cli_json("feature", "remove", "app", "credits")["removed"] is True
    assert [f["code"] for f in cli_json("feature", "list", "app")["items"]] == ["export"]

    release = cli_json(
        "release", "add", "app", "1.0", "--date", "2026-01-01", "--channel", "stable"
    )
    assert (release["version"], release["channel"]) == ("1.0", "stable")
    assert [r["version"] for r in cli_json("release", "list", "app")["items"]] == ["1.0"]
    assert "stable" in cli("release", "list", "app").stdout

    ordered = cli_json("license", "create", "--product", "app", "--order-id", "o-7", "--count", "2")
    order = cli_json("order", "show", "o-7")
    assert sorted(i["id"] for i in order["items"]) == sorted(i["id"] for i in ordered)
    assert "o-7" in cli("order", "show", "o-7").stdout

    cli_json("product", "create", "team", "--name", "Team", "--authorization-method", "user")
    team = cli_json(
        "license", "create", "--product", "team", "--user", "a@x.io", "--password", "pw-123456"
    )
    user = cli_json(
        "license-user", "create", str(team["id"]), "--email", "b@x.io", "--password", "pw-654321"
    )
    assert user["email"] == "b@x.io"
    reset = cli_json("license-user", "reset-password", str(user["id"]))
    assert len(reset["password"]) >= 8
    assert "password" not in cli_json(
        "license-user", "reset-password", str(user["id"]), "--password", "pw-000000"
    )

    keys = cli_json("api-key", "list")["items"]
    assert [k["api_key"] for k in keys] == [license_api.api_key]
    rotated = cli_json("api-key", "rotate", str(keys[0]["id"]), "--overlap", "60")
    assert rotated["shared_key"] and rotated["previous_valid_until"]
    assert cli_json("api-key", "revoke", str(keys[0]["id"]))["revoked"] is True
    client = cli_json("oauth-client", "create")
    (listed,) = cli_json("oauth-client", "list")["items"]
    assert listed["client_id"] == client["client_id"]
    assert cli_json("oauth-client", "rotate", str(listed["id"]))["client_secret"]
    assert cli_json("oauth-client", "revoke", str(listed["id"]))["revoked"] is True
    actions = {e["action"] for e in cli_json("audit", "--per-page", "500")["items"]}
    assert {"policy.create", "feature.create", "api_key.rotate", "oauth_client.revoke"} <= actions

    # what creation prints is enough to rotate and revoke: the id, or the credential itself
    made = cli_json("api-key", "create", "--label", "ci")
    assert made["id"] and made["api_key"] and made["shared_key"]
    rotated = cli_json("api-key", "rotate", made["api_key"])
    assert rotated["id"] == made["id"] and rotated["shared_key"] != made["shared_key"]
    assert cli_json("api-key", "revoke", made["api_key"])["revoked"] is True
    other = cli_json("oauth-client", "create")
    assert other["id"] and other["client_id"] and other["client_secret"]
    assert cli_json("oauth-client", "rotate", other["client_id"])["id"] == other["id"]
    assert cli_json("oauth-client", "revoke", other["client_id"])["revoked"] is True
    token = cli_json("token", "create", "--name", "script", "--role", "read-only")
    assert token["id"] and token["token"].startswith("lsa_")
    assert cli_json("token", "revoke", token["token"])["revoked"] is True
    unknown = CliRunner().invoke(app, ["api-key", "revoke", "no-such-key", "--json"])
    assert unknown.exit_code != 0 and "no api key 'no-such-key'" in unknown.output


def test_remote_catalogue_and_credential_commands(remote: Remote) -> None:
    key = remote.license()
    shop = remote.token("admin", "shop")
    desk = remote.token("support", "desk")
    assert remote_cli(remote, "feature", "add", "app", "export", token=shop)["code"] == "export"
    assert [
        f["code"] for f in remote_cli(remote, "feature", "list", "app", token=desk)["items"]
    ] == ["export"]
    refused = remote_cli(remote, "feature", "add", "app", "other", token=desk, code=1)
    assert "forbidden" in error_text(refused)
    added = remote_cli(remote, "custom-field", "add", "app", "tier", "--default", "a", token=shop)
    assert added["name"] == "tier"
    listed = remote_cli(remote, "custom-field", "list", "app", token=desk)["items"]
    assert [f["name"] for f in listed] == ["tier"]
    denied = remote_cli(remote, "custom-field", "remove", "app", "tier", token=desk, code=1)
    assert "forbidden" in error_text(denied)
    remote_cli(
        remote, "policy", "create", "app", "pro", "--max-activations", "4", "--feature", "export",
        "--trial-days", "14", token=shop,
    )  # fmt: skip
    assert remote_cli(remote, "policy", "show", "app", "pro", token=desk)["trial_days"] == 14
    assert [
        p["code"] for p in remote_cli(remote, "policy", "list", "app", token=desk)["items"]
    ] == ["pro"]
    issued = remote_cli(
        remote, "license", "create", "--product", "app", "--policy", "pro", "--order-id", "o-1",
        token=shop,
    )  # fmt: skip
    shown = remote_cli(remote, "license", "show", issued["license_key"], token=shop)
    assert (shown["max_activations"], shown["is_trial"], shown["features"]) == (
        4,
        True,
        {"export": {}},
    )
    activated = remote.api.activate(
        product="app", license_key=issued["license_key"], hardware_id="pc"
    )
    assert [f["code"] for f in activated.json()["product_features"]] == ["export"]
    assert [i["id"] for i in remote_cli(remote, "order", "show", "o-1", token=desk)["items"]] == [
        issued["id"]
    ]
    remote_cli(remote, "release", "add", "app", "2.0", "--date", "2026-02-01", token=shop)
    assert [
        r["version"] for r in remote_cli(remote, "release", "list", "app", token=desk)["items"]
    ] == ["2.0"]
    assert remote_cli(remote, "feature", "detach", key, "export", token=shop, code=1)
    remote_cli(remote, "feature", "attach", key, "export", token=shop)
    assert remote_cli(remote, "feature", "remove", "app", "export", token=shop)["removed"] is True
    assert remote_cli(remote, "license", "show", key, token=shop)["features"] == {}

    made = remote_cli(remote, "api-key", "create", "--label", "ci", token=shop)
    assert made["label"] == "ci" and made["shared_key"]
    assert (
        remote_cli(remote, "api-key", "rotate", str(made["id"]), token=shop)["shared_key"]
        != made["shared_key"]
    )
    assert remote_cli(remote, "api-key", "revoke", str(made["id"]), token=shop)["revoked"] is True
    assert "forbidden" in error_text(remote_cli(remote, "api-key", "list", token=desk, code=1))
    client = remote_cli(remote, "oauth-client", "create", token=shop)
    assert client["client_secret"]
    assert remote_cli(remote, "oauth-client", "rotate", str(client["id"]), token=shop)[
        "client_secret"
    ]
    assert (
        remote_cli(remote, "oauth-client", "revoke", str(client["id"]), token=shop)["revoked"]
        is True
    )


# -- request files sent by e-mail (offline activation) ------------------------------------------


def _request_file(api: Api, key: str, request: str = "activation", hw: str = "air-gapped") -> bytes:
    from tests.server.test_offline import request_file

    return request_file(api, key, request=request, hardware_id=hw)


def test_remote_offline_files_by_email(remote: Remote, tmp_path: Path) -> None:
    key = remote.license()
    support = remote.token("support", "desk")
    req = tmp_path / "ls_activation.req"
    req.write_bytes(_request_file(remote.api, key))

    done = remote_cli(
        remote, "offline", "activate", str(req), "-o", str(tmp_path / "out.lic"), token=support
    )
    assert (done["license_key"], done["hardware_id"]) == (key, "air-gapped")
    license_file = json.loads(read_license_file((tmp_path / "out.lic").read_bytes()))
    assert license_file["offline_signature"] == offline_signature(
        remote.api.shared_key, license_file["date"], key, "air-gapped", remote.api.api_key
    )
    remote.deployment.public_keys.verify(
        v2_signing_bytes(license_file), license_file["license_signature_v2"], algorithm="rsa-sha256"
    )
    # the same file again: refused by name, nothing changed
    again = remote_cli(
        remote, "offline", "activate", str(req), token=support, code=1, as_json=False
    )
    assert "(offline_request_replayed)" in error_text(again)
    assert remote_cli(remote, "license", "show", key, token=support)["times_activated"] == 1
    assert (
        remote.api.check(product="app", license_key=key, hardware_id="air-gapped").status_code
        == 200
    )

    bye = tmp_path / "ls_deactivation.req"
    bye.write_bytes(_request_file(remote.api, key, "deactivation"))
    freed = run_cli(
        remote.env, "offline", "deactivate", str(bye), "--server", remote.url, token=support
    )
    assert freed.returncode == 0, freed.stderr
    assert "Deactivated" in freed.stdout
    assert remote_cli(remote, "license", "show", key, token=support)["times_activated"] == 0
    log = remote_cli(remote, "audit", "--action", "device.*", token=support)["items"]
    assert [(e["action"], e["actor"]) for e in log] == [
        ("device.deactivate_offline", "token:desk"),
        ("device.activate_offline", "token:desk"),
    ]
    # a read-only token may not; a file that is not one gets its code, through the API too
    reader = remote.token("read-only", "viewer")
    refused = remote_cli(
        remote, "offline", "activate", str(req), token=reader, code=1, as_json=False
    )
    assert "(forbidden)" in error_text(refused)
    bad = remote.http.post(
        "/api/management/v1/offline/activate",
        json={"request_file": "not a file"},
        headers={"Authorization": f"Bearer {support}"},
    )
    assert error_of(bad) == (400, "authorization_missing_params"), bad.text
    empty = remote.http.post(
        "/api/management/v1/offline/activate",
        json={},
        headers={"Authorization": f"Bearer {support}"},
    )
    assert error_of(empty) == (400, "validation_error"), empty.text


def test_remote_offline_file_of_another_company_is_refused(remote: Remote, tmp_path: Path) -> None:
    key = remote.license()
    with remote.deployment.db.transaction(write=True) as session:
        other = catalogue.create_company(session, "Other Co")
        made = catalogue.create_api_key(session, remote.deployment.master_key, other.id)
        other_api = Api(remote.http, remote.deployment.public_keys, made.api_key, made.shared_key)
    req = tmp_path / "theirs.req"
    req.write_bytes(_request_file(other_api, key))
    shop = remote.token("admin", "shop")
    refused = remote_cli(remote, "offline", "activate", str(req), token=shop, code=1, as_json=False)
    assert "(invalid_api_key)" in error_text(refused)
    assert not (tmp_path / "theirs.lic").exists()
    assert remote_cli(remote, "license", "show", key, token=shop)["times_activated"] == 0


def test_local_offline_files_and_the_switch(license_api: Api, tmp_path: Path) -> None:
    key = cli_json("license", "create", "--product", "app", "--max-activations", "3")["license_key"]
    req = tmp_path / "first.req"
    req.write_bytes(_request_file(license_api, key, hw="pc-1"))
    cli("offline", "activate", str(req))
    assert (
        json.loads(read_license_file((tmp_path / "first.lic").read_bytes()))["hardware_id"]
        == "pc-1"
    )
    assert cli_json("audit", "--action", "device.*")["items"][0]["actor"] == "cli:local"

    # the product's switch off: refused by name; a license may switch it back on for itself
    assert (
        cli_json("product", "update", "app", "--no-offline-activation")["allow_offline_activation"]
        is False
    )
    second = tmp_path / "second.req"
    second.write_bytes(_request_file(license_api, key, hw="pc-2"))
    refused = cli("offline", "activate", str(second), code=1)
    assert "(offline_activation_not_allowed)" in error_text(refused)
    assert not (tmp_path / "second.lic").exists()
    online = activate(license_api, key, "pc-online")
    assert online.status_code == 200, online.text  # online activation is not concerned
    shown = cli_json("license", "show", key)
    assert shown["allow_offline_activation"] is None and shown["times_activated"] == 2

    cli_json("product", "update", "app", "--offline-activation")
    own = cli_json("license", "create", "--product", "app", "--no-offline-activation")[
        "license_key"
    ]
    assert cli_json("license", "show", own)["allow_offline_activation"] is False
    third = tmp_path / "third.req"
    third.write_bytes(_request_file(license_api, own, hw="pc-3"))
    assert "(offline_activation_not_allowed)" in error_text(
        cli("offline", "activate", str(third), code=1)
    )

    policy = cli_json("policy", "create", "app", "kiosk", "--no-offline-activation")
    assert policy["allow_offline_activation"] is False
    from_policy = cli_json("license", "create", "--product", "app", "--policy", "kiosk")
    fourth = tmp_path / "fourth.req"
    fourth.write_bytes(_request_file(license_api, from_policy["license_key"], hw="pc-4"))
    assert "(offline_activation_not_allowed)" in error_text(
        cli("offline", "activate", str(fourth), code=1)
    )
    assert "nothing to change" in error_text(cli("product", "update", "app", code=1))
    # checked as the management API checks it, in local mode too; nothing changed
    too_long = error_text(cli("product", "update", "app", "--name", "x" * 201, code=1))
    assert "(validation_error)" in too_long and "name" in too_long
    assert cli_json("product", "update", "app", "--name", "App 2")["name"] == "App 2"


def test_seats_and_consumptions_from_the_terminal(license_api: Api) -> None:
    floating = cli_json(
        "license", "create", "--product", "app", "--max-activations", "3", "--floating-users", "1"
    )["license_key"]
    assert activate(license_api, floating, "desk-1").status_code == 200
    assert (
        license_api.check(product="app", license_key=floating, hardware_id="desk-1").status_code
        == 200
    )
    seats = cli_json("license", "seats", floating)
    assert (seats["in_use"], seats["floating_users"]) == (1, 1)
    assert seats["items"][0]["hardware_id"] == "desk-1"
    table = cli("license", "seats", floating).stdout
    assert "1 of 1 seats in use" in table and "desk-1" in table
    device = str(seats["items"][0]["device_id"])
    cli("license", "release-seat", floating, device)
    assert cli_json("license", "seats", floating)["in_use"] == 0
    assert "floating slot of device" in error_text(
        cli("license", "release-seat", floating, device, code=1)
    )

    metered = cli_json(
        "license", "create", "--product", "app", "--type", "consumption", "--max-consumptions", "9"
    )["license_key"]
    assert activate(license_api, metered, "meter-1").status_code == 200
    body = {"product": "app", "license_key": metered, "hardware_id": "meter-1", "consumptions": 4}
    assert license_api.call("POST", "/api/v4/add_consumption", json=body).status_code == 200
    history = cli_json("license", "consumptions", metered)
    assert history["total_consumptions"] == 4
    assert [(e["consumptions"], e["total_after"]) for e in history["items"]] == [(4, 4)]
    assert "4 used of 9" in cli("license", "consumptions", metered).stdout
