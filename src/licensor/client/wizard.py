"""The License Wizard: what an end user sees to activate, inspect and move a license.

``licensor-wizard`` runs in the terminal; ``licensor-wizard --gui`` opens a Tk window with the same
pages. The vendor starts it with the server URL, product, credentials, public key file(s), binding
and storage location (on the command line or in a TOML ``--config`` file). Installers can script it:
``licensor-wizard [options] activate --key KEY`` / ``status`` / ``deactivate --yes``; on a computer
without internet ``offline-request --key KEY`` (writes the request file), ``offline-activate
FILE.lic`` and ``offline-deactivate --yes`` (writes the deactivation request file).

Exit codes (stable, for installers):

====  ===========================================================================
0     done: activated, the license is valid (status), or deactivated
2     usage or configuration error (missing option, unreadable key file, ...)
3     the server refused (a definite answer: wrong key, no seats left, expired ...)
4     the server could not be reached, or its answer could not be verified
5     no valid license on this computer (status: not activated, expired, ...)
6     this computer's identity (hardware binding) cannot be read
130   cancelled by the user
====  ===========================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from licensor.client._auth import Credentials, HmacCredentials, OAuthCredentials
from licensor.client._client import LicenseClient
from licensor.client._errors import (
    LicenseRefused,
    LicensorError,
)
from licensor.client._wizard_text import (
    EXIT_BINDING,
    EXIT_CANCELLED,
    EXIT_NOT_LICENSED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PLAIN_MESSAGES,
    RELEASE_FILE,
    REQUEST_FILE,
    describe,
    exit_code,
    explain,
    license_choice,
)

__all__ = [
    "EXIT_BINDING",
    "EXIT_CANCELLED",
    "EXIT_NOT_LICENSED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "PLAIN_MESSAGES",
    "WizardConfig",
    "build_config",
    "describe",
    "exit_code",
    "explain",
    "main",
]

# --------------------------------------------------------------------------- configuration


class ConfigError(ValueError):
    """The wizard was started with missing or unusable settings."""


@dataclass
class WizardConfig:
    server: str
    product: str
    credentials: Credentials
    public_keys: list[str | bytes]
    binding: str = "recommended"
    storage_dir: str | None = None
    app_ver: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def client(self) -> LicenseClient:
        return LicenseClient(
            self.server,
            self.product,
            self.public_keys,
            self.credentials,
            binding=self.binding,
            storage_dir=self.storage_dir,
            app_ver=self.app_ver,
            **self.options,
        )


def _read_config_file(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from exc
    section = data.get("licensor", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: expected a table of settings")
    return section


def build_config(args: argparse.Namespace) -> WizardConfig:
    settings: dict[str, Any] = _read_config_file(args.config) if args.config else {}
    base = Path(args.config).resolve().parent if args.config else Path.cwd()
    for name in (
        "server",
        "product",
        "api_key",
        "shared_key",
        "client_id",
        "client_secret",
        "token_url",
        "binding",
        "storage_dir",
        "app_ver",
    ):
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    if args.public_key:
        settings["public_keys"] = list(args.public_key)
    missing = [name for name in ("server", "product") if not settings.get(name)]
    if missing:
        raise ConfigError("missing " + ", ".join(f"--{m.replace('_', '-')}" for m in missing))
    credentials: Credentials
    if settings.get("api_key") and settings.get("shared_key"):
        credentials = HmacCredentials(str(settings["api_key"]), str(settings["shared_key"]))
    elif settings.get("client_id") and settings.get("client_secret"):
        credentials = OAuthCredentials(
            str(settings["client_id"]),
            str(settings["client_secret"]),
            settings.get("token_url"),
        )
    else:
        raise ConfigError(
            "credentials are missing: give --api-key and --shared-key, "
            "or --client-id and --client-secret"
        )
    raw_keys = settings.get("public_keys") or []
    if isinstance(raw_keys, str):
        raw_keys = [raw_keys]
    if not raw_keys:
        raise ConfigError("missing --public-key (the vendor's public key file)")
    pems: list[str | bytes] = []
    for item in raw_keys:
        text = str(item)
        if "-----BEGIN" in text:
            pems.append(text)
            continue
        path = Path(text) if Path(text).is_absolute() else base / text
        try:
            pems.append(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read the public key file {path}: {exc.strerror}") from exc
    storage_dir = settings.get("storage_dir")
    return WizardConfig(
        server=str(settings["server"]),
        product=str(settings["product"]),
        credentials=credentials,
        public_keys=pems,
        binding=str(settings.get("binding") or "recommended"),
        storage_dir=str(storage_dir) if storage_dir else None,
        app_ver=str(settings["app_ver"]) if settings.get("app_ver") else None,
    )


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="licensor-wizard",
        description="Activate, inspect and deactivate this computer's license.",
        epilog="Exit codes: 0 ok, 2 usage, 3 refused by the server, 4 server unreachable or "
        "answer not verifiable, 5 no valid license, 6 hardware identity unreadable, "
        "130 cancelled.",
    )
    parse.add_argument("--config", help="TOML file with the settings below ([licensor] table)")
    parse.add_argument("--server", help="license server URL")
    parse.add_argument("--product", help="product short code")
    parse.add_argument("--api-key", dest="api_key")
    parse.add_argument("--shared-key", dest="shared_key")
    parse.add_argument("--client-id", dest="client_id", help="OAuth client id")
    parse.add_argument("--client-secret", dest="client_secret", help="OAuth client secret")
    parse.add_argument("--token-url", dest="token_url", help="OAuth token endpoint override")
    parse.add_argument(
        "--public-key", action="append", help="the vendor's public key (PEM file); repeatable"
    )
    parse.add_argument("--binding", help="hardware binding (default: recommended)")
    parse.add_argument("--storage-dir", dest="storage_dir", help="where the license is stored")
    parse.add_argument("--app-ver", dest="app_ver", help="application version sent to the server")
    parse.add_argument("--gui", action="store_true", help="open a window instead of the terminal")
    commands = parse.add_subparsers(dest="command")
    activate = commands.add_parser("activate", help="activate online and exit")
    activate.add_argument("--key", help="license key")
    activate.add_argument("--username", help="username (user-based products)")
    activate.add_argument("--password", help="password (prompted when omitted)")
    commands.add_parser("status", help="show the license on this computer and exit")
    deactivate = commands.add_parser("deactivate", help="deactivate this computer and exit")
    deactivate.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    request = commands.add_parser(
        "offline-request", help="write the request file that activates without internet"
    )
    request.add_argument("--key", help="license key")
    request.add_argument("--username", help="username (user-based products)")
    request.add_argument("--password", help="password (prompted when omitted)")
    request.add_argument("--output", help=f"where to write it [default: ./{REQUEST_FILE}]")
    take = commands.add_parser("offline-activate", help="activate from a license file")
    take.add_argument("license_file", help="the license file the request file turned into")
    release = commands.add_parser(
        "offline-deactivate", help="write the deactivation request file and remove the license"
    )
    release.add_argument("--output", help=f"where to write it [default: ./{RELEASE_FILE}]")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parse


# --------------------------------------------------------------------------- terminal pages


class Terminal:
    """Prompts and messages; coloured with rich when it is installed and output is a terminal."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._console: Any = None
        if self.stdout.isatty() and not os.environ.get("NO_COLOR"):
            try:
                from rich.console import Console
            except ImportError:
                pass
            else:
                self._console = Console(file=self.stdout, highlight=False)

    def say(self, text: str = "", style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, style=style, markup=False)
        else:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def ask(self, prompt: str, *, secret: bool = False) -> str:
        if secret and self.stdin is sys.stdin and sys.stdin.isatty():
            return getpass.getpass(prompt, stream=self.stdout)
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")


def activate_page(
    client: LicenseClient,
    term: Terminal,
    *,
    key: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> int:
    term.say("Activate online", style="bold")
    if key is None and username is None:
        user_based = False
        # Unknown (offline)? Ask for a key; the activation itself reports any problem.
        with contextlib.suppress(LicensorError):
            user_based = client.product_details(timeout=5).user_based
        if user_based:
            username = term.ask("Username (e-mail): ").strip()
        else:
            key = term.ask("License key: ").strip()
    if username is not None and password is None:
        password = term.ask("Password: ", secret=True)
    if not (key or username):
        term.say("Nothing entered.", style="yellow")
        return EXIT_USAGE
    term.say("Contacting the license server…")
    try:
        license_id = None
        if username and password:
            license_id = pick_license(client, term, username, password)
        license_ = client.activate(
            license_key=key, username=username, password=password, license_id=license_id
        )
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        if isinstance(exc, LicenseRefused):
            term.say(f"(server code: {exc.code})", style="dim")
        return exit_code(exc)
    term.say("This computer is activated.", style="green")
    for name, value in describe(license_):
        term.say(f"  {name:<18} {value}")
    return EXIT_OK


def pick_license(client: LicenseClient, term: Terminal, username: str, password: str) -> int | None:
    """The license a user of several picks (``None``: the one they hold, or the server's
    choice when it cannot list them)."""
    try:
        held = client.user_licenses(username, password, timeout=10)
    except LicensorError as exc:  # (a server that cannot list them: the activation picks)
        if isinstance(exc, LicenseRefused) and exc.code == "invalid_credentials":
            raise
        return None
    if len(held) < 2:
        return None
    term.say(f"You hold {len(held)} licenses of this product:")
    for number, found in enumerate(held, 1):
        term.say(f"  {number}. {license_choice(found)}")
    while True:
        answer = term.ask(f"Which one should this computer use? [1-{len(held)}, 1]: ").strip()
        if not answer:
            return held[0].id
        if answer.isdigit() and 1 <= int(answer) <= len(held):
            return held[int(answer) - 1].id
        term.say(f"Please type a number from 1 to {len(held)}.", style="yellow")


def status_page(client: LicenseClient, term: Terminal) -> int:
    term.say("License status", style="bold")
    try:
        license_ = client.validate()
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        if isinstance(exc, LicenseRefused):
            term.say(f"(server code: {exc.code})", style="dim")
        return exit_code(exc) if not isinstance(exc, LicenseRefused) else EXIT_NOT_LICENSED
    for name, value in describe(license_):
        term.say(f"  {name:<18} {value}")
    return EXIT_OK


def deactivate_page(client: LicenseClient, term: Terminal, *, confirmed: bool = False) -> int:
    term.say("Deactivate", style="bold")
    try:
        stored = client.stored_license()
    except LicensorError as exc:
        stored = None
        term.say(explain(exc), style="yellow")
    if stored is None:
        term.say("This computer has no activated license.")
        return EXIT_NOT_LICENSED
    if not confirmed:
        answer = term.ask(
            f"Deactivate {stored.license_key or stored.username} on this computer? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            term.say("Nothing was changed.")
            return EXIT_CANCELLED
    try:
        client.deactivate()
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        return exit_code(exc)
    term.say(
        "This computer is deactivated. You can now activate the license on another computer.",
        style="green",
    )
    return EXIT_OK


def _upload_page(client: LicenseClient) -> str:
    return client.server.rstrip("/") + "/offline"


def take_license_file_page(client: LicenseClient, term: Terminal, path: str) -> int:
    if not Path(path).expanduser().is_file():
        term.say(f"There is no file {path}: the license file cannot be read.", style="red")
        return EXIT_USAGE
    try:
        license_ = client.activate_offline(Path(path).expanduser())
    except OSError as exc:
        term.say(f"The license file cannot be read: {exc.strerror or exc}.", style="red")
        return EXIT_USAGE
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        return exit_code(exc)
    term.say("This computer is activated.", style="green")
    for name, value in describe(license_):
        term.say(f"  {name:<18} {value}")
    return EXIT_OK


def offline_request_page(
    client: LicenseClient,
    term: Terminal,
    *,
    key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    output: str | None = None,
    interactive: bool = True,
) -> int:
    """Write the request file; interactively, then take the license file back."""
    term.say("Activate without internet", style="bold")
    if interactive and key is None and username is None:
        have = term.ask("Path of the license file, if you have it already (Enter if not): ")
        if have.strip():
            return take_license_file_page(client, term, have.strip())
        key = term.ask("License key (Enter to sign in with a username instead): ").strip()
        if not key:
            username = term.ask("Username (e-mail): ").strip()
    if username is not None and password is None:
        password = term.ask("Password: ", secret=True)
    if not (key or username):
        term.say("Nothing entered.", style="yellow")
        return EXIT_USAGE
    if output is None and interactive:
        output = term.ask(f"Save the request file as [{REQUEST_FILE}]: ").strip() or None
    target = Path(output or REQUEST_FILE).expanduser()
    try:
        written = client.offline_activation_request(
            target, key or None, username=username or None, password=password
        )
    except OSError as exc:
        term.say(f"The request file cannot be written: {exc.strerror or exc}.", style="red")
        return EXIT_USAGE
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        return exit_code(exc)
    term.say(f"The request file is saved: {Path(written).resolve()}", style="green")
    term.say("Take it to a computer with internet, open this page and upload it there:")
    term.say(f"  {_upload_page(client)}")
    term.say("(or send it to your vendor). You get a license file back.")
    if not interactive:
        return EXIT_OK
    path = term.ask("Path of the license file (Enter to finish later): ").strip()
    if not path:
        term.say("Come back to this page with the license file when you have it.")
        return EXIT_OK
    return take_license_file_page(client, term, path)


def offline_deactivate_page(
    client: LicenseClient,
    term: Terminal,
    *,
    output: str | None = None,
    confirmed: bool = False,
) -> int:
    term.say("Deactivate without internet", style="bold")
    try:
        stored = client.stored_license()
    except LicensorError as exc:
        stored = None
        term.say(explain(exc), style="yellow")
    if stored is None:
        term.say("This computer has no activated license.")
        return EXIT_NOT_LICENSED
    if not confirmed:
        answer = term.ask(
            f"Remove {stored.license_key or stored.username} from this computer and write "
            "the file that frees its seat? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            term.say("Nothing was changed.")
            return EXIT_CANCELLED
        output = output or term.ask(f"Save the file as [{RELEASE_FILE}]: ").strip() or None
    target = Path(output or RELEASE_FILE).expanduser()
    try:
        written = client.offline_deactivation_request(target)
    except OSError as exc:
        term.say(
            f"The file cannot be written ({exc.strerror or exc}); the license stays here.",
            style="red",
        )
        return EXIT_USAGE
    except LicensorError as exc:
        term.say(explain(exc), style="red")
        return exit_code(exc)
    term.say("The license is removed from this computer.", style="green")
    term.say(f"To free its seat, upload {Path(written).resolve()} at")
    term.say(f"  {_upload_page(client)}")
    term.say("from a computer with internet (or send it to your vendor).")
    return EXIT_OK


def menu(client: LicenseClient, term: Terminal) -> int:
    pages: dict[str, Callable[[], int]] = {
        "1": lambda: activate_page(client, term),
        "2": lambda: status_page(client, term),
        "3": lambda: deactivate_page(client, term),
        "4": lambda: offline_request_page(client, term),
        "5": lambda: offline_deactivate_page(client, term),
    }
    last = EXIT_OK
    term.say(f"License Wizard — {client.product} ({client.server})", style="bold")
    while True:
        term.say("")
        term.say("  1) Activate online")
        term.say("  2) License status")
        term.say("  3) Deactivate this computer")
        term.say("  4) Activate without internet")
        term.say("  5) Deactivate without internet")
        term.say("  q) Quit")
        choice = term.ask("Choose: ").strip().lower()
        if choice in ("q", "quit", "exit"):
            return last
        page = pages.get(choice)
        if page is None:
            term.say("Please type 1, 2, 3, 4, 5 or q.")
            continue
        term.say("")
        last = page()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as exc:
        sys.stderr.write(f"licensor-wizard: {exc}\n")
        return EXIT_USAGE
    try:
        client = config.client()
    except (LicensorError, ValueError, TypeError) as exc:
        sys.stderr.write(f"licensor-wizard: {exc}\n")
        return EXIT_USAGE
    try:
        if args.gui:
            from licensor.client._wizard_tk import run_window

            return run_window(client)
        term = Terminal()
        if args.command == "activate":
            return activate_page(
                client, term, key=args.key, username=args.username, password=args.password
            )
        if args.command == "status":
            return status_page(client, term)
        if args.command == "deactivate":
            return deactivate_page(client, term, confirmed=args.yes)
        if args.command == "offline-request":
            return offline_request_page(
                client,
                term,
                key=args.key,
                username=args.username,
                password=args.password,
                output=args.output,
                interactive=False,
            )
        if args.command == "offline-activate":
            return take_license_file_page(client, term, args.license_file)
        if args.command == "offline-deactivate":
            return offline_deactivate_page(client, term, output=args.output, confirmed=args.yes)
        return menu(client, term)
    except (KeyboardInterrupt, EOFError):
        sys.stdout.write("\n")
        return EXIT_CANCELLED
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
