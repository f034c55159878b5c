"""What the License Wizard says (the terminal pages and the Tk window alike): its exit codes,
server refusals and local errors in plain words, and the lines of the status page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from licensor.client._errors import (
    BindingUnavailable,
    ClockTamperingDetected,
    InvalidLicenseFile,
    LicenseDisabled,
    LicenseExpired,
    LicenseNotValid,
    LicenseRefused,
    NotActivated,
    NoTrustedAnswer,
    OfflineTooLong,
    ServerUnreachable,
    TamperedLicense,
    WrongComputer,
)
from licensor.client._license import License, UserLicense

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_NOT_LICENSED = 5
EXIT_BINDING = 6
EXIT_CANCELLED = 130

# the default names of the files of activation without internet
REQUEST_FILE = "ls_activation.req"
RELEASE_FILE = "ls_deactivation.req"

_SIGN_IN_PROBLEM = (
    "The application could not sign in to the license server. Please contact the vendor."
)

PLAIN_MESSAGES: dict[str, str] = {
    "license_not_found": "No license matches what you entered. Check it for typing mistakes.",
    "invalid_credentials": "The username or password is not correct.",
    "license_not_enabled": "This license has been disabled by the vendor. Please contact them.",
    "license_not_active": "This license is not active.",
    "license_expired": "This license has expired. Renew it to continue.",
    "trial_expired": "The trial period has ended.",
    "trial_not_allowed": "This product does not offer a trial.",
    "license_activated_max_times": (
        "This license is already activated on as many computers as it allows. "
        "Deactivate it on another computer first, or contact the vendor."
    ),
    "license_user_activated_max_times": (
        "Your account has used all its activations. Deactivate another computer first."
    ),
    "license_transferred_max_times": (
        "This license has been moved between computers as many times as it allows. "
        "Contact the vendor to move it again."
    ),
    "license_device_exists": "This computer is already activated for this license.",
    "license_start_date_error": "This license cannot be used yet: its start date is ahead.",
    "vm_not_allowed": "This license cannot be used in a virtual machine.",
    "blacklisted": "This computer has been blocked by the vendor. Please contact them.",
    "product_version_not_supported": (
        "This version of the application is not covered by your license."
    ),
    "offline_floating_cloud_not_supported": "This license cannot be activated offline.",
    "offline_activation_not_allowed": (
        "This license cannot be activated without internet: activate it online, or ask the vendor."
    ),
    "unknown_product": (
        "The license server does not know this product: the application is misconfigured. "
        "Please contact the vendor."
    ),
    "disabled_product": "This product is not available from the license server any more.",
    "archived_product": "This product is not available from the license server any more.",
    "device_not_found": "This computer is not activated on the license server.",
    "date_header_diff": ("Your computer's date and time are wrong. Correct them, then try again."),
    "too_many_requests": "The license server is busy. Try again in a minute.",
    "invalid_api_key": _SIGN_IN_PROBLEM,
    "revoked_api_key": _SIGN_IN_PROBLEM,
    "read_only_api_key": _SIGN_IN_PROBLEM,
    "signature_mismatch": _SIGN_IN_PROBLEM,
    "api_key_product_not_allowed": _SIGN_IN_PROBLEM,
    "oauth_required": _SIGN_IN_PROBLEM,
    "oauth_token_expired": _SIGN_IN_PROBLEM,
    "oauth_token_malformed": _SIGN_IN_PROBLEM,
    "invalid_client": _SIGN_IN_PROBLEM,
}


def explain(error: BaseException) -> str:
    """The error in plain words for the person in front of the computer."""
    if isinstance(error, LicenseRefused):
        return PLAIN_MESSAGES.get(error.code, f"The license server refused: {error.message}")
    if isinstance(error, ServerUnreachable):
        return "The license server cannot be reached. Check the internet connection and try again."
    if isinstance(error, NoTrustedAnswer):
        return (
            "The answer from the license server could not be verified (it may have been "
            "altered on the way). Try again on another network, or contact the vendor."
        )
    if isinstance(error, NotActivated):
        return "This computer has no activated license."
    if isinstance(error, LicenseExpired):
        when = f" on {error.expired_at:%Y-%m-%d}" if error.expired_at else ""
        return f"The license expired{when}. Renew it, then check again."
    if isinstance(error, WrongComputer):
        return "The stored license belongs to another computer. Activate it on this computer."
    if isinstance(error, TamperedLicense):
        return "The stored license is damaged or was modified. Please activate again."
    if isinstance(error, ClockTamperingDetected):
        return "Your computer's clock is set earlier than it was. Correct the date and time."
    if isinstance(error, OfflineTooLong):
        return "The license needs to be confirmed online. Connect to the internet and try again."
    if isinstance(error, LicenseDisabled):
        return "This license has been disabled by the vendor. Please contact them."
    if isinstance(error, InvalidLicenseFile):
        return f"This license file cannot be used: {error}"
    if isinstance(error, BindingUnavailable):
        return f"This computer's identity cannot be read ({error.binding}): {error.reason}."
    return str(error)


def exit_code(error: BaseException) -> int:
    if isinstance(error, LicenseRefused):
        return EXIT_REFUSED
    if isinstance(error, NoTrustedAnswer | InvalidLicenseFile):
        return EXIT_UNREACHABLE
    if isinstance(error, BindingUnavailable):
        return EXIT_BINDING
    if isinstance(error, LicenseNotValid):
        return EXIT_NOT_LICENSED
    return EXIT_USAGE


def describe(license_: License) -> list[tuple[str, str]]:
    """The lines of the status page."""
    if license_.expires_at is None:
        validity = "does not expire"
    else:
        validity = f"until {license_.expires_at:%Y-%m-%d %H:%M} UTC"
        if license_.days_left is not None:
            validity += f" ({license_.days_left} days left)"
    state = {
        "active": "Active",
        "grace_period": "Expired — in grace period",
        "expired": "Expired",
    }[license_.status]
    rows = [
        ("Status", state),
        ("License", license_.license_key or license_.username or "?"),
        ("Type", (license_.license_type or "?") + (" (trial)" if license_.is_trial else "")),
        ("Valid", validity),
        ("Computer", license_.hardware_id[:16] + "…"),
        ("Last online check", f"{license_.last_online_check:%Y-%m-%d %H:%M} UTC"),
    ]
    rows += seats(license_.raw)
    if license_.features:
        rows.append(("Features", ", ".join(f.code for f in license_.features)))
    if license_.offline_reason:
        rows.append(("Note", "working offline: the server could not be asked"))
    return rows


def _number(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def seats(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The status page's lines of seats (as of the last answer from the server): computers
    activated, floating seats in use, consumption used."""
    rows = []
    taken, allowed = _number(raw, "times_activated"), _number(raw, "max_activations")
    if taken is not None:
        unlimited = raw.get("allow_unlimited_activations") is True
        of = "no limit" if unlimited or allowed is None else f"of {allowed}"
        rows.append(("Computers", f"{taken} activated ({of})"))
    if raw.get("is_floating_cloud") is True:
        in_use, users = _number(raw, "floating_in_use_devices"), _number(raw, "floating_users")
        text = f"{in_use if in_use is not None else '?'} of {users or '?'} in use at once"
        lent = raw.get("borrowed_until")
        if raw.get("is_borrowed") is True and isinstance(lent, str):
            text += f"; this computer borrowed one until {lent[:16].replace('T', ' ')} UTC"
        rows.append(("Seats", text))
    if raw.get("license_type") == "consumption":
        used, most = _number(raw, "total_consumptions"), _number(raw, "max_consumptions")
        limit = "no limit" if raw.get("allow_unlimited_consumptions") is True else f"of {most}"
        rows.append(("Used", f"{used if used is not None else '?'} ({limit})"))
    return rows


def license_choice(held: UserLicense) -> str:
    """One line of the license picker (a user of several licenses picks the one to use)."""
    kind = held.license_type or "license"
    until = f"until {held.validity_period:%Y-%m-%d}" if held.validity_period else "does not expire"
    state = "" if held.enabled else ", disabled"
    used = f"{held.total_activations} of {held.user_max_activations} of your computers"
    return f"License {held.id}: {kind}, {until}, {used}{state}"
