"""Wire error codes with their HTTP status and default message (License API v4 §4, DECISIONS §3)."""

from __future__ import annotations

from typing import NamedTuple


class ErrorSpec(NamedTuple):
    status: int
    message: str


ERROR_CODES: dict[str, ErrorSpec] = {
    # transport and request shape
    "not_found": ErrorSpec(404, "The requested resource was not found"),
    "method_not_allowed": ErrorSpec(405, "Method not allowed"),
    "validation_error": ErrorSpec(400, "The request is not valid"),
    "missing_parameters": ErrorSpec(400, "Some parameters are missing in the request"),
    "missing_headers": ErrorSpec(400, "Required headers are missing"),
    "missing_hardware_id": ErrorSpec(400, "The hardware_id missing in the request"),
    "license_key_required": ErrorSpec(400, "A license_key is required for this product"),
    "license_key_or_license_user_required": ErrorSpec(
        400, "The license_key or license user is missing"
    ),
    "invalid_json": ErrorSpec(400, "The request body is not valid JSON"),
    "payload_too_large": ErrorSpec(413, "The request body is too large"),
    "too_many_requests": ErrorSpec(429, "Too many requests"),
    "idempotency_key_reused": ErrorSpec(
        422, "This Idempotency-Key was already used with a different request"
    ),
    "unauthorized": ErrorSpec(401, "A valid management token is required"),
    "forbidden": ErrorSpec(403, "This token's role does not allow this action"),
    "license_has_active_devices": ErrorSpec(
        409, "The license still has active devices; deactivate them or force"
    ),
    "conflict": ErrorSpec(409, "A concurrent request changed the same data; retry"),
    "service_unavailable": ErrorSpec(503, "The service is temporarily unavailable"),
    "internal_error": ErrorSpec(500, "Internal server error"),
    # authentication
    "date_header_diff": ErrorSpec(400, "The Date header is outside the allowed window"),
    "authorization_invalid_headers": ErrorSpec(400, "Authorization header is malformed"),
    "authorization_missing_params": ErrorSpec(
        400, "Some parameters are missing in the authorization"
    ),
    "hmac_required": ErrorSpec(400, "The algorithm must be hmac-sha256"),
    "signature_mismatch": ErrorSpec(401, "The request signature does not match"),
    "invalid_api_key": ErrorSpec(400, "Invalid API key"),
    "revoked_api_key": ErrorSpec(400, "This API key has been revoked"),
    "read_only_api_key": ErrorSpec(400, "This API key is read-only"),
    "api_key_product_not_allowed": ErrorSpec(400, "This API key has no access to the product"),
    "oauth_required": ErrorSpec(400, "This company requires OAuth authorization"),
    "oauth_token_expired": ErrorSpec(401, "The OAuth token has expired"),
    "oauth_token_malformed": ErrorSpec(401, "The OAuth token is malformed or badly signed"),
    # catalogue
    "unknown_product": ErrorSpec(400, "Provided product was not found"),
    "unknown_policy": ErrorSpec(400, "The product has no license policy with this code"),
    "disabled_product": ErrorSpec(400, "The product is disabled"),
    "archived_product": ErrorSpec(400, "The product is archived"),
    "invalid_product_auth_method": ErrorSpec(400, "Product authorization method is invalid"),
    # licenses (the seed's codes are exact)
    "license_not_found": ErrorSpec(400, "License with the provided license user not found"),
    # offline request files (v4 §3.5-3.6; the codes after missing_content are Licensor's)
    "missing_content": ErrorSpec(400, "The offline request is empty"),
    "offline_activation_not_allowed": ErrorSpec(
        400, "Offline activation is not allowed for this license"
    ),
    "offline_request_replayed": ErrorSpec(
        409, "This offline request file has already been used: make a new one"
    ),
    "invalid_license_file": ErrorSpec(400, "This is not a license file"),
    "license_key_ambiguous": ErrorSpec(
        409, "More than one vendor on this server issued this key: ask your vendor"
    ),
    "offline_secret_unavailable": ErrorSpec(
        400, "This OAuth client cannot sign offline requests until its secret is rotated"
    ),
    "license_not_enabled": ErrorSpec(400, "The license is not enabled"),
    "license_not_active": ErrorSpec(400, "The license is not active"),
    "vm_not_allowed": ErrorSpec(400, "Virtual machine not allowed"),
    "offline_floating_cloud_not_supported": ErrorSpec(
        400, "Floating cloud licenses cannot be activated offline"
    ),
    "license_start_date_error": ErrorSpec(
        400, "This license cannot be activated before start date"
    ),
    "blacklisted": ErrorSpec(400, "This device is blacklisted"),
    "license_activated_max_times": ErrorSpec(
        400, "This license key has already been activated the maximum number of times"
    ),
    "license_user_activated_max_times": ErrorSpec(
        400, "License user has activated this license max times"
    ),
    "license_expired": ErrorSpec(400, "License validity period has expired"),
    "trial_expired": ErrorSpec(400, "The trial period for this license has expired"),
    "license_transferred_max_times": ErrorSpec(
        400, "This license has already been transferred the maximum number of times"
    ),
    "license_device_exists": ErrorSpec(
        409, "A device matching this hardware_id is already created on the license."
    ),
    "product_version_not_supported": ErrorSpec(
        400, "License product version does not support the app_ver sent in the request"
    ),
    "device_not_found": ErrorSpec(400, "Device not found on the license"),
    # floating cloud (v4 §3.4, §3.11-3.12, §5.5)
    "floating_not_available": ErrorSpec(400, "No available slots for floating license."),
    "active_license_required": ErrorSpec(400, "An active license is required"),
    "version_not_found": ErrorSpec(404, "file at requested version does not exist"),
    "license_borrow_not_allowed": ErrorSpec(400, "License does not allow borrowing"),
    "borrow_until_not_valid": ErrorSpec(400, "Borrow until field is not valid"),
    # features (v4 §3.8, §3.10; license_feature_expired is Licensor's)
    "invalid_license_feature_code": ErrorSpec(
        400, "License feature code is invalid or not assigned to the license."
    ),
    "unsupported_product_feature": ErrorSpec(
        400,
        "One or more of requested product features do not exists or they are not enabled on "
        "the product",
    ),
    "feature_not_enough_consumptions": ErrorSpec(400, "Not enough consumptions left"),
    "license_feature_expired": ErrorSpec(400, "This license feature has expired"),
    # consumption (v4 §3.9, §5.7)
    "license_not_consumption": ErrorSpec(400, "The license needs to be of consumption type"),
    "license_not_enough_consumptions": ErrorSpec(400, "Not enough consumptions left"),
    "negative_consumptions_not_allowed": ErrorSpec(
        400, "Negative consumptions are not allowed for this license"
    ),
    "invalid_credentials": ErrorSpec(400, "The username or password is not valid"),
    "trial_not_allowed": ErrorSpec(400, "Product does not allow trial"),
    "email_missing": ErrorSpec(400, "An email is missing for user-based product"),
    # QLM-style activation (DECISIONS §5)
    "license_exceeded_max_activations_per_system": ErrorSpec(
        400, "This computer has activated this license the maximum number of times"
    ),
    "license_exceeded_max_releases": ErrorSpec(
        400, "This license has been released the maximum number of times allowed in the period"
    ),
    "wrong_deactivation_verification_code": ErrorSpec(
        400, "The deactivation verification code is not valid for this computer"
    ),
    "authorization_code_invalid": ErrorSpec(400, "The authorization code is not valid"),
    "authorization_code_expired": ErrorSpec(
        400, "The authorization code has expired: request a new one"
    ),
    "authorization_code_used": ErrorSpec(400, "The authorization code has already been used"),
    "authorization_code_locked": ErrorSpec(
        400, "Too many wrong authorization codes: request a new one"
    ),
    "activation_field_not_allowed": ErrorSpec(400, "This field cannot be used to find a license"),
    "customer_not_found": ErrorSpec(400, "No customer with this e-mail address"),
    "computer_key_invalid": ErrorSpec(400, "The Computer Key is not valid"),
    "computer_key_mismatch": ErrorSpec(
        400, "The Computer Key belongs to another computer or license"
    ),
    "email_not_sent": ErrorSpec(503, "The e-mail could not be sent; try again later"),
    # license users and customers (v4 §3.17, §3.20-3.21)
    "change_password_not_allowed": ErrorSpec(400, "Change password not allowed for the company"),
    "customer_does_not_exist": ErrorSpec(400, "No customer with this e-mail address"),
    # bundles (v4 §3.7)
    "not_a_bundle": ErrorSpec(400, "This product is not a bundle"),
    "bundle_activation_required": ErrorSpec(
        400, "This product is a bundle: use the bundle endpoints (activate_bundle, check_bundle)"
    ),
    # single sign-on (OpenID Connect)
    "customer_account_not_found": ErrorSpec(400, "No customer account with this code"),
    "sso_not_configured": ErrorSpec(
        400, "Single sign-on is not configured for this customer account"
    ),
    "sso_token_expired": ErrorSpec(400, "The identity token has expired: log in again"),
    "sso_token_invalid": ErrorSpec(400, "The identity token is not valid"),
    "sso_code_invalid": ErrorSpec(
        400, "The authorization code was refused by the identity provider"
    ),
    "sso_redirect_uri_not_allowed": ErrorSpec(
        400, "This redirect_uri is not allowed for the customer account"
    ),
    "sso_user_not_allowed": ErrorSpec(400, "This identity may not use the customer's licenses"),
    "sso_provider_unavailable": ErrorSpec(
        503, "The identity provider could not be reached; try again later"
    ),
}
