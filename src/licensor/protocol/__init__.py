"""The wire format shared by the server and the client library.

Only the standard library and ``cryptography`` may be imported here: the client ships this package.
"""

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
    "ErrorSpec",
    "PublicKeySet",
    "SignatureError",
    "compact_json",
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
    "request_signing_string",
    "sign_bytes",
    "v2_signing_bytes",
    "verify_bytes",
]
