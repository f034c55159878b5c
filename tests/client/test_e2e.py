"""End to end: the client and both wizards against a real ``licensor serve`` process.

The server is started with ``licensor init`` + ``licensor serve`` on a free port in a temporary data
directory; products, licenses and credentials are made with the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from _display import drive_tk_wizard
from _terminal import TerminalSession

from conftest import Clock
from licensor.client import (
    AsyncLicenseClient,
    ClockTamperingDetected,
    HmacCredentials,
    LicenseClient,
    LicenseRefused,
    NoSeatAvailable,
    NotActivated,
    OAuthCredentials,
    OfflineTooLong,
    ServerUnreachable,
    TamperedLicense,
    UntrustedResponse,
    WrongComputer,
)

pytest.importorskip("fastapi", reason="the server extra is not installed")
pytest.importorskip("sqlalchemy", reason="the server extra is not installed")

SRC = Path(__file__).resolve().parents[2] / "src"
CLI = "from licensor.cli.main import run; run()"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RealServer:
    url: str
    data_dir: Path
    env: dict[str, str]
    api_key: str
    shared_key: str
    public_keys: str

    def cli(self, *args: str) -> Any:
        result = subprocess.run(
            [sys.executable, "-c", CLI, *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    pool: dict[str, list[str]]

    def new_key(self, kind: str = "plain") -> str:
        """A fresh license issued at start-up (one CLI call per kind keeps the suite fast)."""
        return self.pool[kind].pop()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    data_dir = tmp_path_factory.mktemp("server") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_")}
    env["LICENSOR_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])

    def cli(*args: str) -> Any:
        result = subprocess.run(
            [sys.executable, "-c", CLI, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    created = json.loads(cli("init", "--json"))
    cli("product", "create", "app", "--name", "App", "--json")
    cli("product", "create", "team", "--name", "Team", "--authorization-method", "user", "--json")
    cli(
        "product", "create", "float", "--name", "Float", "--floating-users", "1",
        "--max-borrow-hours", "8", "--json",
    )  # fmt: skip
    public_keys = cli("public-key")
    port = free_port()
    log = (data_dir.parent / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/v4/public_keys", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                "licensor serve did not start: " + (data_dir.parent / "serve.log").read_text()
            )
        time.sleep(0.2)
    kinds = {
        "plain": ["--max-activations", "2"],
        "one-seat": ["--max-activations", "1"],
        "until-2030": ["--type", "time-limited", "--validity-period", "2030-01-01"],
        "expired": ["--type", "time-limited", "--validity-period", "2020-01-01"],
        "metered": ["--type", "consumption", "--max-consumptions", "5"],
    }
    pool: dict[str, list[str]] = {}
    for kind, options in kinds.items():
        issued = json.loads(
            cli("license", "create", "--product", "app", "--count", "16", *options, "--json")
        )
        pool[kind] = [item["license_key"] for item in issued]
    issued = json.loads(
        cli("license", "create", "--product", "float", "--count", "4", "--max-activations", "3",
            "--json")
    )  # fmt: skip
    pool["floating"] = [item["license_key"] for item in issued]
    try:
        yield RealServer(
            url, data_dir, env, created["api_key"], created["shared_key"], public_keys, pool
        )
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def make_real_client(
    real_server: RealServer, tmp_path: Path
) -> Iterator[Callable[..., LicenseClient]]:
    made: list[LicenseClient] = []

    def factory(**options: Any) -> LicenseClient:
        settings: dict[str, Any] = {"storage_dir": tmp_path / "store", "app_ver": "1.0.0"}
        settings.update(options)
        server = settings.pop("server", real_server.url)
        product = settings.pop("product", "app")
        credentials = settings.pop(
            "credentials", HmacCredentials(real_server.api_key, real_server.shared_key)
        )
        client = LicenseClient(server, product, [real_server.public_keys], credentials, **settings)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_activate_restart_offline_deactivate(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    key = real_server.new_key()
    activated = make_real_client().activate(license_key=key)
    assert activated.status == "active" and activated.license_key == key
    shutil.copytree(tmp_path / "store", tmp_path / "before-deactivation")

    # The application restarts with the network down: validate() works offline.
    offline = make_real_client(server=closed_port_url(), retries=0).validate()
    assert offline.status == "active" and not offline.checked_online
    assert offline.license_key == key

    online = make_real_client().check()
    assert online.checked_online and "license_signature_v2" in online.raw

    make_real_client().deactivate()
    with pytest.raises(NotActivated):
        make_real_client().validate()

    # A stored copy from before the deactivation is refused as soon as the server is asked.
    stale = make_real_client(storage_dir=tmp_path / "before-deactivation")
    with pytest.raises(LicenseRefused) as refused:
        stale.validate(force_check=True)
    assert refused.value.code in {"device_not_found", "license_not_active"}


def test_a_verdict_received_by_check_removes_the_stored_license(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    """The server takes the seat back (the customer deactivates from another copy, or the
    vendor frees it): the next call that hears it -- ``check()``, the variables -- removes the
    stored license, so the following offline ``validate()`` cannot run on the seat."""
    key = real_server.new_key()
    make_real_client().activate(license_key=key)
    shutil.copytree(tmp_path / "store", tmp_path / "elsewhere")
    make_real_client(storage_dir=tmp_path / "elsewhere").deactivate()  # the seat is freed
    client = make_real_client()
    with pytest.raises(LicenseRefused) as refused:
        client.check()
    assert refused.value.code in {"license_not_active", "device_not_found"}
    with pytest.raises(NotActivated):
        client.validate()  # no check due: offline -- and nothing is stored any more
    # the same through the variables, and a vendor freeing the seat
    make_real_client().activate(license_key=key)
    [device] = [d for d in real_server.cli("device", "list", key)["items"] if d["active"]]
    real_server.cli("device", "deactivate", str(device["id"]))
    with pytest.raises(LicenseRefused):
        make_real_client().variables()
    with pytest.raises(NotActivated):
        make_real_client().validate()


def test_the_async_client_removes_the_stored_license_on_a_verdict_too(
    real_server: RealServer, tmp_path: Path
) -> None:
    import asyncio

    async def scenario() -> None:
        key = real_server.new_key()
        client = AsyncLicenseClient(
            real_server.url,
            "app",
            [real_server.public_keys],
            HmacCredentials(real_server.api_key, real_server.shared_key),
            storage_dir=tmp_path / "store",
        )
        try:
            await client.activate(license_key=key)
            [device] = real_server.cli("device", "list", key)["items"]
            real_server.cli("device", "deactivate", str(device["id"]))
            with pytest.raises(LicenseRefused):
                await client.check()
            with pytest.raises(NotActivated):
                await client.validate()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_copied_flipped_and_clock_set_back_are_refused(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    key = real_server.new_key()
    client = make_real_client()
    client.activate(license_key=key)

    shutil.copytree(tmp_path / "store", tmp_path / "other-computer")
    other = make_real_client(storage_dir=tmp_path / "other-computer", hardware_id="f" * 64)
    with pytest.raises(WrongComputer):
        other.validate(online=False)

    shutil.copytree(tmp_path / "store", tmp_path / "flipped")
    flipped = make_real_client(storage_dir=tmp_path / "flipped")
    path = Path(flipped.store.license_path)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(TamperedLicense):
        flipped.validate(online=False)

    clock = Clock(datetime.now(UTC) - timedelta(days=3))
    with pytest.raises(ClockTamperingDetected):
        make_real_client(clock=clock, server=closed_port_url(), retries=0).validate()


class ManInTheMiddle(httpx.BaseTransport):
    """Forwards to the real server and changes ``validity_period`` in the answer."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        content = response.read()
        if b'"validity_period"' in content:
            data = json.loads(content)
            data["validity_period"] = "2099-12-31T00:00:00.000Z"
            content = json.dumps(data, separators=(",", ":")).encode()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=content)


def test_man_in_the_middle_changing_validity_is_refused(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer
) -> None:
    key = real_server.new_key("until-2030")
    client = make_real_client(transport=ManInTheMiddle())
    with pytest.raises(UntrustedResponse):
        client.activate(license_key=key)
    assert not Path(client.store.license_path).exists()
    honest = make_real_client().activate(license_key=key)
    assert honest.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


class LoseFirstAnswer(httpx.BaseTransport):
    """The first request to ``path`` reaches the server, but its answer is lost on the way
    back."""

    def __init__(self, path: str = "activate_license") -> None:
        self.inner = httpx.HTTPTransport()
        self.path = path
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        if self.lost == 0 and request.url.path.endswith(self.path):
            self.lost += 1
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_retried_activation_uses_one_seat(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer
) -> None:
    key = real_server.new_key("one-seat")
    transport = LoseFirstAnswer()
    sleeps: list[float] = []
    activated = make_real_client(transport=transport, sleep=sleeps.append).activate(license_key=key)
    assert transport.lost == 1 and len(sleeps) == 1
    assert activated.times_activated == 1


def test_consumption_reports_count_once_and_wait_while_offline(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    key = real_server.new_key("metered")
    make_real_client().activate(license_key=key)
    assert make_real_client().add_consumption(2).total_consumptions == 2
    # the answer is lost: the report is sent again with its id, and counted once
    transport = LoseFirstAnswer("add_consumption")
    sleeps: list[float] = []
    retried = make_real_client(transport=transport, sleep=sleeps.append).add_consumption()
    assert transport.lost == 1 and len(sleeps) == 1
    assert (retried.total_consumptions, retried.pending) == (3, 0)
    # offline: the reports wait on this computer, and go with the next call
    offline = make_real_client(server=closed_port_url(), retries=0)
    assert offline.add_consumption().pending == 1
    assert offline.add_consumption().pending == 2
    journal = tmp_path / "store" / "app.consumptions.json"
    assert journal.exists()
    sent = make_real_client().send_pending_consumptions()
    assert (sent.total_consumptions, sent.max_consumptions, sent.pending) == (5, 5, 0)
    assert not journal.exists()
    # past the maximum: refused in plain words, and that report is not kept
    with pytest.raises(LicenseRefused) as refused:
        make_real_client().add_consumption()
    assert refused.value.code == "license_not_enough_consumptions"
    assert not journal.exists()
    assert make_real_client().check().raw["total_consumptions"] == 5
    # a feature of the license, asked of the server
    real_server.cli("feature", "add", "app", "render", "--name", "Render")
    with pytest.raises(LicenseRefused) as missing:
        make_real_client().check_feature("render")
    assert missing.value.code == "invalid_license_feature_code"
    real_server.cli("feature", "attach", key, "render")
    assert make_real_client().check_feature("render").name == "Render"


def test_a_floating_seat_is_held_while_the_block_runs(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    key = real_server.new_key("floating")

    def computer(name: str, **options: Any) -> LicenseClient:
        return make_real_client(
            product="float", hardware_id=name, storage_dir=tmp_path / name, **options
        )

    a, b = computer("seat-a"), computer("seat-b")
    a.activate(license_key=key)
    b.activate(license_key=key)
    with a.floating_seat(refresh_every=0.1) as seat:
        assert (seat.raw["floating_users"], seat.raw["floating_in_use_devices"]) == (1, 1)
        with pytest.raises(NoSeatAvailable) as taken:
            b.check()
        assert taken.value.code == "floating_not_available"
        with pytest.raises(NoSeatAvailable), b.floating_seat():
            pass
        time.sleep(0.3)  # (a few refreshes from the background thread)
        assert a.check().raw["floating_in_use_devices"] == 1
    # released when the block ended: the other computer gets it
    with b.floating_seat() as seat:
        assert seat.raw["floating_in_use_devices"] == 1
    # borrowed: valid offline until the borrow ends, where a plain hold is not
    until = a.borrow(2)
    assert timedelta(hours=1.9) < until - datetime.now(UTC) <= timedelta(hours=2)
    assert computer("seat-a", server=closed_port_url(), retries=0).validate().status == "active"
    later = datetime.now(UTC) + timedelta(hours=3)
    with pytest.raises(OfflineTooLong):
        computer("seat-a", server=closed_port_url(), retries=0, clock=lambda: later).validate()
    a.release_floating()
    assert b.check().raw["floating_in_use_devices"] == 1


def test_floating_and_consumption_features(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    real_server.cli(
        "feature", "add", "app", "gpu", "--floating-users", "1", "--max-borrow-hours", "4",
    )  # fmt: skip
    real_server.cli(
        "feature", "add", "app", "credits", "--type", "consumption", "--max-consumption", "3",
        "--max-overages", "1", "--allow-negative",
    )  # fmt: skip
    key = real_server.new_key()
    real_server.cli("feature", "attach", key, "gpu")
    real_server.cli("feature", "attach", key, "credits")

    def computer(name: str) -> LicenseClient:
        return make_real_client(hardware_id=name, storage_dir=tmp_path / name)

    a, b = computer("feature-a"), computer("feature-b")
    a.activate(license_key=key)
    b.activate(license_key=key)
    assert a.check_feature("gpu").raw["floating_in_use_devices"] == 1
    with pytest.raises(NoSeatAvailable):
        b.check_feature("gpu")
    a.release_feature("gpu")
    until = b.borrow_feature("gpu", 2)
    assert timedelta(hours=1.9) < until - datetime.now(UTC) <= timedelta(hours=2)
    with pytest.raises(NoSeatAvailable):
        a.check_feature("gpu")
    # a consumption feature: its maximum, one overage, a refund
    assert a.add_feature_consumption("credits", 4).total_consumptions == 4
    with pytest.raises(LicenseRefused) as refused:
        b.add_feature_consumption("credits")
    assert refused.value.code == "feature_not_enough_consumptions"
    assert b.add_feature_consumption("credits", -2).total_consumptions == 2


def test_versions_and_installation_files(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer
) -> None:
    real_server.cli(
        "release", "add", "app", "1.0", "--date", "2024-01-10", "--environment", "linux"
    )
    real_server.cli(
        "release", "add", "app", "1.1", "--date", "2024-06-01", "--environment", "linux",
        "--download", "https://dl.example.com/app-1.1.tar.gz", "--md5", "B" * 32,
        "--size", "2048", "--requires-version", "1.0",
    )  # fmt: skip
    real_server.cli("release", "add", "app", "2.0", "--date", "2024-09-01", "--disabled")
    client = make_real_client()
    client.activate(license_key=real_server.new_key())
    assert [r.version for r in client.versions(env="linux")] == ["1.0", "1.1"]
    latest = client.installation_file(env="linux")
    assert (latest.version, latest.url, latest.hash_md5, latest.size) == (
        "1.1",
        "https://dl.example.com/app-1.1.tar.gz",
        "b" * 32,
        "2048",
    )
    assert latest.raw["requires_version"] == "1.0"
    with pytest.raises(LicenseRefused) as missing:
        client.installation_file("2.0")
    assert missing.value.code == "version_not_found"


def test_refusals_carry_the_servers_codes(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    with pytest.raises(LicenseRefused) as not_found:
        make_real_client().activate(license_key="NOPE-NOPE-NOPE")
    assert not_found.value.code == "license_not_found"

    expired = real_server.new_key("expired")
    with pytest.raises(LicenseRefused) as refused:
        make_real_client().activate(license_key=expired)
    assert refused.value.code == "license_expired"

    one_seat = real_server.new_key("one-seat")
    make_real_client(storage_dir=tmp_path / "a", hardware_id="1" * 64).activate(
        license_key=one_seat
    )
    with pytest.raises(LicenseRefused) as full:
        make_real_client(storage_dir=tmp_path / "b", hardware_id="2" * 64).activate(
            license_key=one_seat
        )
    assert full.value.code == "license_activated_max_times"

    with pytest.raises(ServerUnreachable):
        make_real_client(server=closed_port_url(), retries=0).product_details()


def test_oauth_and_user_based_products(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    oauth = real_server.cli("oauth-client", "create")
    credentials = OAuthCredentials(oauth["client_id"], oauth["client_secret"])
    key = real_server.new_key()
    client = make_real_client(credentials=credentials)
    assert client.activate(license_key=key).status == "active"
    assert client.check().checked_online

    real_server.cli(
        "license", "create", "--product", "team", "--user", "ann@example.com",
        "--password", "pw-123456",
    )  # fmt: skip
    team = make_real_client(product="team", storage_dir=tmp_path / "team")
    assert team.product_details().user_based
    license_ = team.activate(username="ann@example.com", password="pw-123456")
    assert license_.username == "ann@example.com"
    assert team.validate().status == "active"
    team.deactivate()


def test_variables_and_product_details(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer
) -> None:
    client = make_real_client()
    client.activate(license_key=real_server.new_key())
    saved = client.set_variables({"seats": 3})
    assert {v.variable: v.value for v in saved}["seats"] == "3"
    assert [v.variable for v in client.variables()] == ["seats"]
    assert client.product_details().short_code == "app"


# --------------------------------------------------------------------------- both wizards


def wizard_argv(real_server: RealServer, tmp_path: Path) -> list[str]:
    key_file = tmp_path / "vendor.pem"
    key_file.write_text(real_server.public_keys)
    return [
        sys.executable, "-m", "licensor.client.wizard",
        "--server", real_server.url, "--product", "app",
        "--api-key", real_server.api_key, "--shared-key", real_server.shared_key,
        "--public-key", str(key_file), "--storage-dir", str(tmp_path / "wizard"),
    ]  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_terminal_wizard_against_the_real_server(real_server: RealServer, tmp_path: Path) -> None:
    key = real_server.new_key()
    env = {k: v for k, v in real_server.env.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    session = TerminalSession(wizard_argv(real_server, tmp_path), env)
    try:
        session.expect(r"Choose: ")
        session.send("1")
        session.expect(r"License key: ")
        session.send(key)
        session.expect(r"This computer is activated")
        session.expect(r"Choose: ")
        session.send("2")
        session.expect(r"Status\s+Active")
        session.expect(rf"License\s+{key}")
        session.expect(r"Computers\s+1 activated \(of \d+\)")
        session.expect(r"Choose: ")
        session.send("3")
        session.expect(r"\[y/N\] ")
        session.send("yes")
        session.expect(r"This computer is deactivated")
        session.expect(r"Choose: ")
        session.send("2")
        session.expect(r"no activated license")
        session.expect(r"Choose: ")
        session.send("q")
        assert session.wait() == 5  # the last page said: no valid license
    finally:
        session.kill()


def test_tk_wizard_against_the_real_server(
    display: str,
    real_server: RealServer,
    make_real_client: Callable[..., LicenseClient],
    tmp_path: Path,
) -> None:
    key = real_server.new_key()
    client = make_real_client(storage_dir=tmp_path / "gui")
    drive_tk_wizard(client, display, "real-server", key)
    with pytest.raises(NotActivated):
        client.validate()


def _hand_in(real_server: RealServer, endpoint: str, content: bytes) -> httpx.Response:
    """What the computer with internet does with a request file: post it to the server."""
    from licensor.protocol.auth import format_authorization, hmac_signature, http_date

    date = http_date(datetime.now(UTC))
    headers = {
        "Date": date,
        "Authorization": format_authorization(
            real_server.api_key, hmac_signature(real_server.shared_key, date)
        ),
    }
    return httpx.post(
        f"{real_server.url}/api/v4/{endpoint}_offline", content=content, headers=headers
    )


def test_offline_activation_and_deactivation_through_files(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    from licensor.client import InvalidLicenseFile, LicenseExpired
    from licensor.protocol.offline import license_file

    key = real_server.new_key("until-2030")
    air_gapped = make_real_client(server=closed_port_url(), retries=0, hardware_id="air-gapped")
    request = air_gapped.offline_activation_request(tmp_path / "ls_activation.req", key)
    answer = _hand_in(real_server, "activate", Path(request).read_bytes())
    assert answer.status_code == 200, answer.text
    (tmp_path / "license.lic").write_bytes(license_file(answer.content))

    # a file edited by one byte, for another computer, signed by another server: refused
    content = answer.content
    edited = content.replace(b'"times_activated":1', b'"times_activated":0')
    assert edited != content
    with pytest.raises(InvalidLicenseFile, match="edited"):
        air_gapped.activate_offline(license_file(edited))
    elsewhere = make_real_client(server=closed_port_url(), hardware_id="another-computer")
    with pytest.raises(WrongComputer):
        elsewhere.activate_offline(tmp_path / "license.lic")
    from licensor.keyring import Keyring

    stranger = Keyring.load_or_create(tmp_path / "other-server")
    other_keys = [k["public_key"] for k in stranger.public_keys()]
    impostor = LicenseClient(
        closed_port_url(),
        "app",
        other_keys,
        HmacCredentials(real_server.api_key, real_server.shared_key),
        storage_dir=tmp_path / "impostor",
        hardware_id="air-gapped",
    )
    with pytest.raises(InvalidLicenseFile, match="another server"):
        impostor.activate_offline(tmp_path / "license.lic")
    # after its validity the file activates nothing
    late = make_real_client(
        server=closed_port_url(),
        hardware_id="air-gapped",
        storage_dir=tmp_path / "late",
        clock=lambda: datetime(2031, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(LicenseExpired):
        late.activate_offline(tmp_path / "license.lic")

    activated = air_gapped.activate_offline(tmp_path / "license.lic")
    assert activated.license_key == key and activated.status == "active"
    # the application starts with no network: validate() runs on the stored license
    started = make_real_client(server=closed_port_url(), retries=0, hardware_id="air-gapped")
    assert started.validate().license_key == key

    # the seat is taken on the server; the deactivation file frees it
    [device] = [d for d in real_server.cli("device", "list", key)["items"] if d["active"]]
    assert device["hardware_id"] == "air-gapped"
    release = started.offline_deactivation_request(tmp_path / "ls_deactivation.req")
    with pytest.raises(NotActivated):
        started.validate()
    assert _hand_in(real_server, "deactivate", Path(release).read_bytes()).json() == (
        "license_deactivated"
    )
    assert not [d for d in real_server.cli("device", "list", key)["items"] if d["active"]]
    # the same file again: refused, nothing changes
    again = _hand_in(real_server, "deactivate", Path(release).read_bytes())
    assert again.json()["code"] == "offline_request_replayed"


# --------------------------------------------------------------------------- wizards, no internet


def _license_file_for(real_server: RealServer, request: Path, target: Path) -> Path:
    """The other computer: the request file handed in, the license file written back."""
    from licensor.protocol.offline import license_file

    answer = _hand_in(real_server, "activate", request.read_bytes())
    assert answer.status_code == 200, answer.text
    target.write_bytes(license_file(answer.content))
    return target


def _active_devices(real_server: RealServer, key: str) -> list[str]:
    devices = real_server.cli("device", "list", key)["items"]
    return [d["hardware_id"] for d in devices if d["active"]]


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_terminal_wizard_without_internet(real_server: RealServer, tmp_path: Path) -> None:
    key = real_server.new_key()
    env = {k: v for k, v in real_server.env.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    argv = wizard_argv(real_server, tmp_path)
    argv[argv.index(real_server.url)] = closed_port_url()  # this computer has no internet
    request, release = tmp_path / "req" / "mine.req", tmp_path / "bye.req"
    request.parent.mkdir()
    session = TerminalSession(argv, env)
    try:
        session.expect(r"4\) Activate without internet")
        session.expect(r"Choose: ")
        session.send("4")
        session.expect(r"if you have it already \(Enter if not\): ")
        session.send("")
        session.expect(r"License key \(Enter to sign in with a username instead\): ")
        session.send(key)
        session.expect(r"Save the request file as \[ls_activation.req\]: ")
        session.send(str(request))
        session.expect(r"The request file is saved")
        session.expect(r"/offline")
        session.expect(r"Path of the license file \(Enter to finish later\): ")
        # a file that is no license file first, then the real one
        (tmp_path / "junk.lic").write_text("not a license file")
        lic = _license_file_for(real_server, request, tmp_path / "ls_license.lic")
        session.send(str(tmp_path / "junk.lic"))
        session.expect(r"This license file cannot be used")
        session.expect(r"Choose: ")
        session.send("4")
        session.expect(r"if you have it already \(Enter if not\): ")
        session.send(str(lic))
        session.expect(r"This computer is activated")
        session.expect(rf"License\s+{key}")
        session.expect(r"Choose: ")
        session.send("2")
        session.expect(r"Status\s+Active")
        session.expect(r"Choose: ")
        session.send("5")
        session.expect(rf"Remove {key} from this computer .*\[y/N\] ")
        session.send("y")
        session.expect(r"Save the file as \[ls_deactivation.req\]: ")
        session.send(str(release))
        session.expect(r"The license is removed from this computer")
        session.expect(r"Choose: ")
        session.send("q")
        assert session.wait() == 0
    finally:
        session.kill()
    assert _active_devices(real_server, key) != []
    freed = _hand_in(real_server, "deactivate", release.read_bytes())
    assert freed.json() == "license_deactivated", freed.text
    assert _active_devices(real_server, key) == []


def test_scripted_wizard_without_internet(real_server: RealServer, tmp_path: Path) -> None:
    key = real_server.new_key()
    argv = wizard_argv(real_server, tmp_path)
    argv[argv.index(real_server.url)] = closed_port_url()
    env = {**real_server.env, "NO_COLOR": "1"}

    def wizard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    request = tmp_path / "ls_activation.req"
    written = wizard("offline-request", "--key", key, "--output", str(request))
    assert written.returncode == 0, written.stdout + written.stderr
    assert str(request) in written.stdout
    lic = _license_file_for(real_server, request, tmp_path / "ls_license.lic")
    edited = tmp_path / "edited.lic"
    edited.write_bytes(lic.read_bytes()[:-8] + b"AAAAAAA=")
    refused = wizard("offline-activate", str(edited))
    assert refused.returncode == 4, refused.stdout
    assert "This license file cannot be used" in refused.stdout
    missing = wizard("offline-activate", str(tmp_path / "nowhere.lic"))
    assert missing.returncode == 2 and "cannot be read" in missing.stdout
    assert wizard("offline-activate", str(lic)).returncode == 0
    assert wizard("status").returncode == 0
    release = tmp_path / "ls_deactivation.req"
    done = wizard("offline-deactivate", "--yes", "--output", str(release))
    assert done.returncode == 0, done.stdout + done.stderr
    assert wizard("status").returncode == 5
    assert _hand_in(real_server, "deactivate", release.read_bytes()).status_code == 200
    assert _active_devices(real_server, key) == []


def test_tk_wizard_without_internet(
    display: str,
    real_server: RealServer,
    make_real_client: Callable[..., LicenseClient],
    tmp_path: Path,
) -> None:
    tk = pytest.importorskip("tkinter")
    from _display import screenshot, settle

    from licensor.client._wizard_tk import WizardWindow

    key = real_server.new_key()
    client = make_real_client(server=closed_port_url(), retries=0, storage_dir=tmp_path / "gui")
    saved: list[str] = []
    opened: list[str] = []

    def save_as(name: str) -> str:
        saved.append(name)
        return str(tmp_path / name)

    root = tk.Tk()
    window = WizardWindow(
        root, client, confirm=lambda _text: True, save_as=save_as, open_file=lambda: opened.pop()
    )
    window.use_user_login(False)
    try:
        window.pages.select(3)
        settle(root, window)
        window.request_button.invoke()
        assert "Please enter your license key" in str(window.offline_message.cget("text"))
        window.offline_key_entry.insert(0, key)
        window.request_button.invoke()
        assert saved == ["ls_activation.req"]
        assert "Saved ls_activation.req" in str(window.offline_message.cget("text"))
        screenshot(display, "offline-0-request-saved")
        lic = _license_file_for(
            real_server, tmp_path / "ls_activation.req", tmp_path / "ls_license.lic"
        )
        (tmp_path / "junk.lic").write_text("junk")
        opened.append(str(tmp_path / "junk.lic"))
        window.license_file_button.invoke()
        assert "This license file cannot be used" in str(window.offline_message.cget("text"))
        assert window.last_exit == 4
        opened.append(str(lic))
        window.license_file_button.invoke()
        assert "This computer is activated" in str(window.offline_message.cget("text"))
        assert window.last_exit == 0
        root.update()
        screenshot(display, "offline-1-activated")
        assert client.validate().license_key == key

        window.offline_deactivate_button.invoke()
        assert saved[-1] == "ls_deactivation.req"
        assert "removed from this computer" in str(window.offline_message.cget("text"))
        root.update()
        screenshot(display, "offline-2-deactivated")
    finally:
        root.destroy()
    with pytest.raises(NotActivated):
        client.validate()
    release = (tmp_path / "ls_deactivation.req").read_bytes()
    assert _hand_in(real_server, "deactivate", release).json() == "license_deactivated"
    assert _active_devices(real_server, key) == []


def test_bundles_through_the_client(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer
) -> None:
    for code in ("editor", "viewer"):
        real_server.cli("product", "create", code, "--name", code.title())
    made = real_server.cli(
        "product", "create", "suite", "--name", "Suite", "--bundle", "editor,viewer"
    )
    assert made["bundle"] == ["editor", "viewer"]
    key = real_server.cli("license", "create", "--product", "suite")["license_key"]
    suite = make_real_client(product="suite")
    licenses = suite.activate_bundle(key)
    assert sorted(licenses) == ["editor", "viewer"]
    assert all(found.status == "active" and found.license_key == key for found in licenses.values())
    # each product of the bundle validates at start-up as any license, online too
    editor = make_real_client(product="editor", bundle="suite")
    assert editor.validate(online=False).status == "active"
    assert editor.check().checked_online
    # a second computer cannot take the bundle's only seat, on any product
    other = make_real_client(product="suite", hardware_id="another-computer")
    with pytest.raises(LicenseRefused) as refused:
        other.activate_bundle(key)
    assert refused.value.code == "license_activated_max_times"
    suite.deactivate_bundle(key)
    assert editor.stored_license() is None
    assert make_real_client(product="viewer", bundle="suite").stored_license() is None
    assert other.activate_bundle(key)["viewer"].status == "active"


def test_license_users_through_the_client(
    make_real_client: Callable[..., LicenseClient], real_server: RealServer, tmp_path: Path
) -> None:
    for _ in range(2):
        real_server.cli(
            "license", "create", "--product", "team", "--user", "bea@example.com",
            "--password", "pw-initial-1", "--max-activations", "2",
        )  # fmt: skip
    team = make_real_client(product="team", storage_dir=tmp_path / "bea")
    team.change_password("bea@example.com", "pw-initial-1", "pw-changed-2")
    with pytest.raises(LicenseRefused) as wrong:
        team.change_password("bea@example.com", "pw-initial-1", "pw-changed-3")
    assert wrong.value.code == "invalid_credentials"
    held = team.user_licenses("bea@example.com", "pw-changed-2")
    assert len(held) == 2 and all(h.enabled and h.user_max_activations == 2 for h in held)
    # the second license, picked: its checks stay on it
    picked = team.activate(
        username="bea@example.com", password="pw-changed-2", license_id=held[1].id
    )
    assert picked.raw["id"] == held[1].id
    assert team.check().raw["id"] == held[1].id
    team.deactivate()


def _two_team_licenses(real_server: RealServer, email: str) -> list[int]:
    """Two licenses of the user-based product "team" for ``email``: their ids."""
    made = [
        real_server.cli(
            "license", "create", "--product", "team", "--user", email,
            "--password", "pw-picker-1", "--max-activations", "2",
        )["id"]
        for _ in range(2)
    ]  # fmt: skip
    return sorted(made)


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_terminal_wizard_lets_a_user_of_several_licenses_pick_one(
    real_server: RealServer, make_real_client: Callable[..., LicenseClient], tmp_path: Path
) -> None:
    first, second = _two_team_licenses(real_server, "dan@example.com")
    env = {k: v for k, v in real_server.env.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    argv = wizard_argv(real_server, tmp_path)
    argv[argv.index("app")] = "team"
    session = TerminalSession([*argv, "activate"], env)
    try:
        session.expect(r"Username \(e-mail\): ")
        session.send("dan@example.com")
        session.expect(r"Password: ")
        session.send("pw-picker-1")
        session.expect(r"You hold 2 licenses of this product")
        session.expect(rf"2\. License {second}: perpetual, does not expire, 0 of 2")
        session.expect(r"Which one should this computer use\? \[1-2, 1\]: ")
        session.send("7")
        session.expect(r"Please type a number from 1 to 2")
        session.send("2")
        session.expect(r"This computer is activated")
        assert session.wait() == 0
    finally:
        session.kill()
    stored = make_real_client(product="team", storage_dir=tmp_path / "wizard").stored_license()
    assert stored is not None and stored.raw["id"] == second != first


def test_tk_wizard_lets_a_user_of_several_licenses_pick_one(
    display: str,
    real_server: RealServer,
    make_real_client: Callable[..., LicenseClient],
    tmp_path: Path,
) -> None:
    tk = pytest.importorskip("tkinter")
    from _display import screenshot, settle

    from licensor.client._wizard_tk import WizardWindow

    first, second = _two_team_licenses(real_server, "eve@example.com")
    client = make_real_client(product="team", storage_dir=tmp_path / "gui")
    root = tk.Tk()
    try:
        window = WizardWindow(root, client)
        window.use_user_login(True)
        window.key_entry.insert(0, "eve@example.com")
        window.password_entry.insert(0, "pw-picker-1")
        window.activate_button.invoke()
        settle(root, window)
        assert "You hold 2 licenses" in str(window.activate_message.cget("text"))
        choices = list(window.choice_box.cget("values"))
        assert [c.split(":")[0] for c in choices] == [f"License {first}", f"License {second}"]
        assert client.stored_license() is None  # (nothing activated before the pick)
        window.choice_box.current(1)
        root.update()
        screenshot(display, "tk-wizard-license-picker")
        window.activate_button.invoke()
        settle(root, window)
        assert "This computer is activated" in str(window.activate_message.cget("text"))
        assert window.last_exit == 0
    finally:
        root.destroy()
    stored = client.stored_license()
    assert stored is not None and stored.raw["id"] == second
