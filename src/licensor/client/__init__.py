"""Licensor's client library: activate a license once online, validate it offline at every start.

Importing this package loads no network code; httpx is imported when a call first goes online.
"""

from typing import TYPE_CHECKING

from licensor.client._auth import HmacCredentials, OAuthCredentials
from licensor.client._client import AsyncLicenseClient, LicenseClient, load_public_keys
from licensor.client._consumption import Consumption
from licensor.client._errors import (
    BindingUnavailable,
    ClockTamperingDetected,
    InvalidLicenseFile,
    LicenseDisabled,
    LicenseExpired,
    LicenseNotValid,
    LicenseRefused,
    LicensorError,
    NoSeatAvailable,
    NotActivated,
    NoTrustedAnswer,
    OfflineTooLong,
    ServerUnreachable,
    TamperedLicense,
    UntrustedResponse,
    WrongComputer,
)
from licensor.client._license import (
    DeviceVariable,
    Feature,
    InstallationFile,
    License,
    ProductDetails,
    Release,
    Trial,
    UserLicense,
)
from licensor.client.hardware import Binding
from licensor.protocol.signing import PublicKeySet

if TYPE_CHECKING:
    from licensor.client._computer_key import (
        AsyncComputerKeyClient,
        ComputerKeyClient,
        ComputerKeyLicense,
        verify_computer_key,
    )
    from licensor.client._sso import SsoLoginFailed, sso_activate

# Loaded on first use: most applications never touch them, and start-up time matters.
_LAZY = {
    "AsyncComputerKeyClient": "licensor.client._computer_key",
    "ComputerKeyClient": "licensor.client._computer_key",
    "ComputerKeyLicense": "licensor.client._computer_key",
    "verify_computer_key": "licensor.client._computer_key",
    "SsoLoginFailed": "licensor.client._sso",
    "sso_activate": "licensor.client._sso",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'licensor.client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncComputerKeyClient",
    "AsyncLicenseClient",
    "Binding",
    "BindingUnavailable",
    "ClockTamperingDetected",
    "ComputerKeyClient",
    "ComputerKeyLicense",
    "Consumption",
    "DeviceVariable",
    "Feature",
    "HmacCredentials",
    "InstallationFile",
    "InvalidLicenseFile",
    "License",
    "LicenseClient",
    "LicenseDisabled",
    "LicenseExpired",
    "LicenseNotValid",
    "LicenseRefused",
    "LicensorError",
    "NoSeatAvailable",
    "NoTrustedAnswer",
    "NotActivated",
    "OAuthCredentials",
    "OfflineTooLong",
    "ProductDetails",
    "PublicKeySet",
    "Release",
    "ServerUnreachable",
    "SsoLoginFailed",
    "TamperedLicense",
    "Trial",
    "UntrustedResponse",
    "UserLicense",
    "WrongComputer",
    "load_public_keys",
    "sso_activate",
    "verify_computer_key",
]
