"""An application that refuses to start without a valid license — the whole integration.

Run it against a Licensor server (see "Client library: protect your app" in README.md for the vendor side):

    python examples/protect_app.py --server http://127.0.0.1:8080 --product demo \\
        --api-key KEY --shared-key SECRET --public-key vendor.pem            # first start: asks
    python examples/protect_app.py --server ... --activate XXXX-XXXX-XXXX  # or give the key

Later starts validate offline (no network needed) and only call the server when a check is due.
Exit status: 0 after the app ran, 1 when there is no valid license, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from licensor.client import (
    BindingUnavailable,
    HmacCredentials,
    License,
    LicenseClient,
    LicenseNotValid,
    LicenseRefused,
    LicensorError,
    NotActivated,
    NoTrustedAnswer,
)
from licensor.client.wizard import explain


def licensed_client(args: argparse.Namespace) -> LicenseClient:
    with open(args.public_key, "rb") as handle:
        public_keys = [handle.read()]  # embed this in your app; several keys allow rotation
    return LicenseClient(
        args.server,
        args.product,
        public_keys,
        HmacCredentials(args.api_key, args.shared_key),
        app_ver="2.4.0",
        max_days_offline=14,  # refuse after two weeks without a successful online check
        check_interval=timedelta(days=1),  # try a check at most once a day
        storage_dir=args.storage_dir,  # default: the user's data directory
    )


def obtain_license(client: LicenseClient, key: str | None) -> License:
    """validate() at every start; activate once when nothing is stored yet."""
    try:
        return client.validate()
    except NotActivated:
        if key is None and not sys.stdin.isatty():
            raise
    if key is None:
        key = input("Enter your license key: ").strip()
    print("Activating this computer…")
    return client.activate(license_key=key)


def run_application(license_: License) -> None:
    print(f"Welcome! Licensed to {license_.license_key or license_.username}.")
    if license_.expires_at is not None:
        print(f"Your license is valid until {license_.expires_at:%Y-%m-%d} "
              f"({license_.days_left} days left).")  # fmt: skip
    if license_.status == "grace_period":
        print("Your subscription has ended; please renew (grace period).")
    if license_.offline_reason:
        print("(Working offline: the license server could not be reached.)")
    print("Export feature:", "enabled" if license_.has_feature("export") else "not licensed")
    print("… the application runs here …")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A license-protected example application.")
    parser.add_argument("--server", required=True)
    parser.add_argument("--product", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--shared-key", required=True)
    parser.add_argument("--public-key", required=True, help="the vendor's public key (PEM)")
    parser.add_argument("--storage-dir", help="where the license is stored")
    parser.add_argument("--activate", metavar="KEY", help="activate with this key if needed")
    args = parser.parse_args(argv)

    try:
        with licensed_client(args) as client:
            license_ = obtain_license(client, args.activate)
    except OSError as exc:
        print(f"Cannot read the public key: {exc}", file=sys.stderr)
        return 2
    except (LicenseRefused, LicenseNotValid, NoTrustedAnswer, BindingUnavailable) as exc:
        # Every way of not having a usable license ends here: the app does not start.
        print(f"This application is not licensed: {explain(exc)}", file=sys.stderr)
        return 1
    except (LicensorError, EOFError, KeyboardInterrupt) as exc:
        print(f"This application is not licensed: {exc}", file=sys.stderr)
        return 1
    run_application(license_)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
