"""Licensor's wire error codes as QLM ``EServerErrorCode`` numbers (the ``<errorCode>`` element)."""

from __future__ import annotations

REQUEST_BLOCKED = 1
TIME_DIFFERENCE = 2
INVALID_FORMAT = 5
OPERATION_DISABLED = 7
AUTHENTICATION_ERROR = 8
LICENSE_ERROR = 200
NOT_PROVIDED = 206
MISSING_ARGUMENT = 208
RELEASE_NOT_ACTIVATED = 216

SERVER_ERROR_CODES: dict[str, int] = {
    # the request (RequestBlocked_*)
    "missing_headers": AUTHENTICATION_ERROR,
    "authorization_invalid_headers": AUTHENTICATION_ERROR,
    "authorization_missing_params": AUTHENTICATION_ERROR,
    "hmac_required": AUTHENTICATION_ERROR,
    "signature_mismatch": AUTHENTICATION_ERROR,
    "invalid_api_key": AUTHENTICATION_ERROR,
    "revoked_api_key": AUTHENTICATION_ERROR,
    "oauth_required": AUTHENTICATION_ERROR,
    "oauth_token_expired": AUTHENTICATION_ERROR,
    "oauth_token_malformed": AUTHENTICATION_ERROR,
    "date_header_diff": TIME_DIFFERENCE,
    "read_only_api_key": OPERATION_DISABLED,
    "api_key_product_not_allowed": OPERATION_DISABLED,
    "not_found": REQUEST_BLOCKED,
    "method_not_allowed": REQUEST_BLOCKED,
    "too_many_requests": REQUEST_BLOCKED,
    "payload_too_large": INVALID_FORMAT,
    "invalid_format": INVALID_FORMAT,
    # arguments
    "missing_parameters": MISSING_ARGUMENT,
    "missing_hardware_id": MISSING_ARGUMENT,
    "validation_error": MISSING_ARGUMENT,
    "activation_field_not_allowed": MISSING_ARGUMENT,
    "license_key_required": NOT_PROVIDED,
    # licenses (License_*)
    "license_not_enabled": 201,
    "blacklisted": 202,
    "license_not_found": 203,
    "invalid_product_auth_method": 204,
    "vm_not_allowed": 205,
    "license_start_date_error": 205,
    "computer_key_invalid": 205,
    "invalid_credentials": 205,
    "authorization_code_invalid": 205,
    "authorization_code_expired": 205,
    "authorization_code_used": 205,
    "authorization_code_locked": 205,
    "license_transferred_max_times": 207,
    "license_device_exists": 207,
    "license_expired": 209,
    "trial_expired": 209,
    "license_activated_max_times": 210,
    "floating_not_available": 210,
    "license_user_activated_max_times": 210,
    "product_version_not_supported": 211,
    "license_exceeded_max_releases": 212,
    "license_exceeded_max_activations_per_system": 214,
    "unknown_product": 218,
    "disabled_product": 218,
    "archived_product": 218,
    "license_not_active": 219,
    "device_not_found": 219,
    "conflict": 223,
    "wrong_deactivation_verification_code": 224,
    "computer_key_mismatch": 225,
    # others
    "customer_not_found": 1904,
    "service_unavailable": 2000,
    "email_not_sent": 2100,
    "internal_error": 3000,
}

# A release of a computer that holds no seat is License_Release_NotActivated.
RELEASE_ERROR_CODES = {"license_not_active": RELEASE_NOT_ACTIVATED, "device_not_found": 216}


def server_error_code(code: str, *, release: bool = False) -> int:
    if release and code in RELEASE_ERROR_CODES:
        return RELEASE_ERROR_CODES[code]
    return SERVER_ERROR_CODES.get(code, LICENSE_ERROR)
