"""A ready demo: ``licensor serve --demo`` makes a demo product and license; then
``python -m licensor.demo activate KEY`` activates it from this computer and verifies the
signed answer. Uses only the public wire format (what any License API v4 client does)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.protocol.signing import PublicKeySet, SignatureError, license_signing_string

DEMO_FILE = "demo.json"
DEMO_PRODUCT = "demo"


@dataclass
class DemoInfo:
    server: str
    api_key: str
    shared_key: str
    product: str
    license_key: str
    public_keys: list[str]


def ensure_demo(settings: Any, server: str) -> DemoInfo:
    """Create (once) a demo company, API key, product and license; remember them in demo.json."""
    from licensor.keyring import Keyring
    from licensor.secrets_at_rest import MasterKey
    from licensor.services import catalogue
    from licensor.store import repository
    from licensor.store.db import Database

    path = settings.data_dir / DEMO_FILE
    keyring = Keyring.load(settings.resolved_keys_dir)
    pems = [k["public_key"] for k in keyring.public_keys()]
    if path.exists():
        info = DemoInfo(**json.loads(path.read_text()))
        info.server, info.public_keys = server, pems
    else:
        db = Database(settings.resolved_database_url)
        master = MasterKey.load_or_create(settings.data_dir, settings.master_key)
        with db.transaction(write=True) as session:
            company = repository.company_by_name(session, "Demo") or catalogue.create_company(
                session, "Demo"
            )
            key = catalogue.create_api_key(session, master, company.id, label="demo")
            if repository.product_by_code(session, company.id, DEMO_PRODUCT) is None:
                catalogue.create_product(
                    session,
                    company.id,
                    catalogue.ProductSpec(
                        DEMO_PRODUCT, "Demo Application", allow_trial=True, trial_days=14
                    ),
                )
            license_ = catalogue.create_license(
                session,
                company.id,
                DEMO_PRODUCT,
                catalogue.LicenseSpec(max_activations=2, max_transfers=3),
                now=datetime.now(UTC),
            )
            info = DemoInfo(
                server, key.api_key, key.shared_key, DEMO_PRODUCT, license_.license_key or "", pems
            )
        db.dispose()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(info), handle, indent=2)
    return info


def print_banner(info: DemoInfo) -> None:
    print(
        "\n  Licensor demo is ready\n"
        f"    server       {info.server}   (API docs: {info.server}/docs)\n"
        f"    product      {info.product}\n"
        f"    license key  {info.license_key}\n"
        f"    api key      {info.api_key}\n"
        f"    shared key   {info.shared_key}\n\n"
        "  Try it from another terminal (same directory):\n"
        f"    .venv/bin/python -m licensor.demo activate {info.license_key}\n"
        f"    .venv/bin/python -m licensor.demo check {info.license_key}\n"
        f"    .venv/bin/python -m licensor.demo deactivate {info.license_key}\n",
        flush=True,
    )


def this_computer() -> str:
    parts = [platform.node(), platform.machine(), platform.system()]
    machine_id = Path("/etc/machine-id")
    if machine_id.exists():
        parts.append(machine_id.read_text().strip())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def call(info: DemoInfo, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    date = http_date()
    headers = {
        "Date": date,
        "Authorization": format_authorization(info.api_key, hmac_signature(info.shared_key, date)),
        "Accept": "application/json",
    }
    url = info.server.rstrip("/") + path
    if method == "GET":
        response = httpx.get(url, params=payload, headers=headers, timeout=10)
    else:
        response = httpx.post(url, json=payload, headers=headers, timeout=10)
    keys = PublicKeySet.from_pem(info.public_keys)
    signature = response.headers.get("LicenseSignature", "")
    try:
        keys.verify(response.content, signature, algorithm="rsa-sha256")
    except SignatureError:
        raise SystemExit(
            "The answer's LicenseSignature does not verify: not trusting it."
        ) from None
    return response.status_code, response.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m licensor.demo")
    parser.add_argument("action", choices=["activate", "check", "deactivate"])
    parser.add_argument("license_key")
    parser.add_argument("--data-dir", default=os.environ.get("LICENSOR_DATA_DIR", "licensor-data"))
    parser.add_argument("--hardware-id", default=None, help="default: this computer")
    args = parser.parse_args(argv)
    path = Path(args.data_dir) / DEMO_FILE
    if not path.exists():
        print(f"No {path}: start the server with `make run` first.", file=sys.stderr)
        return 2
    info = DemoInfo(**json.loads(path.read_text()))
    hardware_id = args.hardware_id or this_computer()
    payload = {"product": info.product, "license_key": args.license_key, "hardware_id": hardware_id}
    if args.action == "activate":
        payload.update(hostname=socket.gethostname(), os_ver=platform.platform())
        status, body = call(info, "POST", "/api/v4/activate_license", payload)
    elif args.action == "check":
        status, body = call(info, "GET", "/api/v4/check_license", payload)
    else:
        status, body = call(info, "POST", "/api/v4/deactivate_license", payload)
    if status != 200:
        print(f"Refused ({status}): {body['code']} - {body['message']}")
        return 1
    if isinstance(body, dict):
        signing = license_signing_string(hardware_id, args.license_key, body["validity_period"])
        PublicKeySet.from_pem(info.public_keys).verify(
            signing.encode(), body["license_signature"], algorithm="rsa-sha256"
        )
        print(f"{args.action}: OK (signatures verified)")
        print(
            f"  license {body['license_key']}  type {body['license_type']}  "
            f"seats {body['times_activated']}/{body['max_activations']}  "
            f"expired {body['is_expired']}  device {body['device_id']}"
        )
    else:
        print(f"{args.action}: {body} (signature verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
