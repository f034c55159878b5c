"""The wire format shared by the server and the client library.

Only the standard library and ``cryptography`` may be imported here: the client ships this package.
The names below are loaded on first use, so importing one submodule (as the client does at start)
does not import the others.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from licensor.protocol.auth import (
        AuthorizationFormatError,
        format_authorization,
        hmac_signature,
        http_date,
        offline_signature,
        parse_authorization,
        parse_http_date,
        request_signing_string,
    )
    from licensor.protocol.computer_key import (
        ComputerKey,
        ComputerKeyError,
        LicenseModel,
        computer_id_hash,
        deactivation_code,
        decode_computer_key,
        encode_computer_key,
        read_computer_key,
        verify_deactivation_code,
    )
    from licensor.protocol.errors import ERROR_CODES, ErrorSpec
    from licensor.protocol.signing import (
        SIGNATURE_ALGORITHMS,
        PublicKeySet,
        SignatureError,
        compact_json,
        format_licensor_signature,
        iso_ms_z,
        key_id,
        license_signing_string,
        parse_iso_datetime,
        parse_licensor_signature,
        sign_bytes,
        v2_signing_bytes,
        verify_bytes,
    )

__all__ = [
    "ERROR_CODES",
    "SIGNATURE_ALGORITHMS",
    "AuthorizationFormatError",
    "ComputerKey",
    "ComputerKeyError",
    "ErrorSpec",
    "LicenseModel",
    "PublicKeySet",
    "SignatureError",
    "compact_json",
    "computer_id_hash",
    "deactivation_code",
    "decode_computer_key",
    "encode_computer_key",
    "format_authorization",
    "format_licensor_signature",
    "hmac_signature",
    "http_date",
    "iso_ms_z",
    "key_id",
    "license_signing_string",
    "offline_signature",
    "parse_authorization",
    "parse_http_date",
    "parse_iso_datetime",
    "parse_licensor_signature",
    "read_computer_key",
    "request_signing_string",
    "sign_bytes",
    "v2_signing_bytes",
    "verify_bytes",
    "verify_deactivation_code",
]

_SUBMODULE = {
    "AuthorizationFormatError": "auth",
    "format_authorization": "auth",
    "hmac_signature": "auth",
    "http_date": "auth",
    "offline_signature": "auth",
    "parse_authorization": "auth",
    "parse_http_date": "auth",
    "request_signing_string": "auth",
    "ComputerKey": "computer_key",
    "ComputerKeyError": "computer_key",
    "LicenseModel": "computer_key",
    "computer_id_hash": "computer_key",
    "deactivation_code": "computer_key",
    "decode_computer_key": "computer_key",
    "encode_computer_key": "computer_key",
    "read_computer_key": "computer_key",
    "verify_deactivation_code": "computer_key",
    "ERROR_CODES": "errors",
    "ErrorSpec": "errors",
    "SIGNATURE_ALGORITHMS": "signing",
    "PublicKeySet": "signing",
    "SignatureError": "signing",
    "compact_json": "signing",
    "format_licensor_signature": "signing",
    "iso_ms_z": "signing",
    "key_id": "signing",
    "license_signing_string": "signing",
    "parse_iso_datetime": "signing",
    "parse_licensor_signature": "signing",
    "sign_bytes": "signing",
    "v2_signing_bytes": "signing",
    "verify_bytes": "signing",
}


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
