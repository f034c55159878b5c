"""Authentication of License API calls: HMAC Date signatures and OAuth client-credentials tokens."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Dialect
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.protocol.auth import (
    HMAC_ALGORITHM,
    REQUIRED_PAIRS,
    AuthorizationFormatError,
    hmac_signature,
    parse_authorization,
    parse_http_date,
)
from licensor.services.context import Caller, Scope, ServerKeys
from licensor.store import activation as credentials
from licensor.store import repository
from licensor.store.activation import DbapiConnection
from licensor.store.models import ApiKey

TOKEN_ISSUER = "licensor"
SHARED_KEY_CONTEXT = b"api_keys.shared_key"
# an OAuth client secret encrypted at rest (it signs offline request files, v4 §2.4)
OAUTH_SECRET_CONTEXT = b"oauth_clients.secret"
# Longest stored API key / OAuth client id (store/models.py); longer values cannot match.
MAX_CREDENTIAL_ID = 100

_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_WEEKDAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"\d{2}:\d{2}:\d{2}"
# RFC 7231 §7.1.1.1 HTTP-date: IMF-fixdate, and the obsolete RFC 850 and asctime forms that
# every recipient must accept. All are GMT; numeric offsets and other zones are not HTTP-dates.
_HTTP_DATE = re.compile(
    rf"{_DAY}, \d{{2}} {_MONTH} \d{{4}} {_TIME} GMT"
    rf"|{_WEEKDAY}, \d{{2}}-{_MONTH}-\d{{2}} {_TIME} GMT"
    rf"|{_DAY} {_MONTH} [ \d]\d {_TIME} \d{{4}}"
)


class OAuthError(Exception):
    """Token endpoint errors use the OAuth shape, not the License API error shape."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def check_date(date_value: str | None, now: datetime, window_seconds: int) -> datetime:
    """The ``Date`` header's time, when it is one and inside the window."""
    if not date_value:
        raise LicensorError("missing_headers", "must have required property 'date'")
    try:
        if _HTTP_DATE.fullmatch(date_value.strip()) is None:
            raise ValueError(date_value)
        sent = parse_http_date(date_value)
    except ValueError:
        raise LicensorError(
            "date_header_diff", "The Date header must be an RFC 7231 date in GMT"
        ) from None
    if abs((now - sent).total_seconds()) > window_seconds:
        raise LicensorError(
            "date_header_diff",
            f"The Date header differs from server time by more than {window_seconds // 60} minutes",
        )
    return sent


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str
    date_value: str


@dataclass(frozen=True, slots=True)
class HmacPresented:
    pairs: dict[str, str]  # (``hmac_pairs``: the format checked)
    date_value: str


def presented(authorization: str | None, date_value: str | None) -> BearerToken | HmacPresented:
    """The credentials a request presents, their format checked (v4 §4.3), not yet looked up."""
    if not authorization:
        raise LicensorError("missing_headers", "must have required property 'authorization'")
    if not date_value:
        raise LicensorError("missing_headers", "must have required property 'date'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return BearerToken(token.strip(), date_value)
    return HmacPresented(hmac_pairs(authorization), date_value)


def authenticate(
    session: Session,
    keys: ServerKeys,
    *,
    authorization: str | None,
    date_value: str | None,
    now: datetime,
) -> Caller:
    found = presented(authorization, date_value)
    if isinstance(found, BearerToken):
        return authenticate_bearer_request(session, keys, found, now)
    connection = session.connection()
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    return hmac_request_caller(
        dbapi, connection.dialect, keys, pairs=found.pairs, date_value=found.date_value, now=now
    )


def authenticate_bearer_request(
    session: Session, keys: ServerKeys, found: BearerToken, now: datetime
) -> Caller:
    check_date(found.date_value, now, keys.settings.date_window_seconds)
    return authenticate_bearer(session, keys, found.token, now)


def hmac_request_caller(
    connection: DbapiConnection,
    dialect: Dialect,
    keys: ServerKeys,
    *,
    pairs: dict[str, str],
    date_value: str,
    now: datetime,
) -> Caller:
    """The caller of an HMAC-signed request (``hmac_pairs`` already checked), or the refusal:
    ``invalid_api_key``, ``revoked_api_key``, or ``hmac_caller``'s. One statement
    (``store.activation.credential``) reads the key and its company."""
    found = (
        credentials.credential(connection, dialect, pairs["apikey"])
        if storable(pairs["apikey"])
        else None
    )
    if found is None:
        raise LicensorError("invalid_api_key")
    return credential_caller(keys, found, pairs, date_value, now)


def credential_caller(
    keys: ServerKeys,
    found: credentials.Credential,
    pairs: dict[str, str],
    date_value: str,
    now: datetime,
) -> Caller:
    """The caller of a found API key row (``credential``), or the refusal."""
    if found.api_key.revoked:
        raise LicensorError("revoked_api_key")
    return hmac_caller(keys, found.api_key, found.oauth_required, pairs, date_value, now)


def hmac_pairs(authorization: str) -> dict[str, str]:
    """The pairs of an HMAC ``Authorization`` header, with the format rules of v4 §4.3 checked."""
    try:
        pairs = parse_authorization(authorization)
    except AuthorizationFormatError as exc:
        raise LicensorError("authorization_invalid_headers", str(exc)) from None
    missing = [name for name in REQUIRED_PAIRS if not pairs.get(name)]
    if missing:
        raise LicensorError(
            "authorization_missing_params",
            "Some parameters are missing in the authorization: " + ", ".join(missing),
        )
    if pairs["algorithm"].lower() != HMAC_ALGORITHM:
        raise LicensorError("hmac_required")
    if [h.strip().lower() for h in pairs["headers"].split()] != ["date"]:
        raise LicensorError(
            "authorization_invalid_headers", 'The headers value in the authorization must be "date"'
        )
    return pairs


def hmac_caller(
    keys: ServerKeys,
    api_key: ApiKey,
    oauth_required: bool,
    pairs: dict[str, str],
    date_value: str,
    now: datetime,
) -> Caller:
    """The caller of a found, unrevoked API key, once the Date and the HMAC signature check out."""
    if oauth_required:
        raise LicensorError("oauth_required")
    check_date(date_value, now, keys.settings.date_window_seconds)
    shared_key = keys.master_key.decrypt(api_key.shared_key_encrypted, context=SHARED_KEY_CONTEXT)
    signature = pairs["signature"]
    matches = signs(shared_key, date_value, signature)
    if not matches and in_overlap(api_key.previous_valid_until, now):
        assert api_key.previous_shared_key_encrypted is not None
        previous = keys.master_key.decrypt(
            api_key.previous_shared_key_encrypted, context=SHARED_KEY_CONTEXT
        )
        # the key rotated away is still accepted until the end of the overlap window
        if signs(previous, date_value, signature):
            matches, shared_key = True, previous
    if not matches:
        raise LicensorError("signature_mismatch")
    allowed = (
        frozenset(int(i) for i in api_key.allowed_product_ids)
        if api_key.allowed_product_ids is not None
        else None
    )
    return Caller(
        company_id=api_key.company_id,
        read_only=api_key.read_only,
        allowed_product_ids=allowed,
        api_key=api_key.api_key,
        shared_key=shared_key,
    )


def signs(shared_key: str, date_value: str, signature: str) -> bool:
    """Whether ``signature`` is the HMAC of this ``Date`` with this shared key (constant time)."""
    expected = hmac_signature(shared_key, date_value).encode()
    return hmac.compare_digest(expected, signature.encode())


def in_overlap(previous_valid_until: datetime | None, now: datetime) -> bool:
    """Whether a rotated-away credential is still inside its overlap window."""
    return previous_valid_until is not None and now < previous_valid_until


def storable(credential_id: str) -> bool:
    """Whether a presented key / client id could be stored at all (else it cannot match, and
    looking it up would make PostgreSQL refuse the query over a NUL byte)."""
    return len(credential_id) <= MAX_CREDENTIAL_ID and "\x00" not in credential_id


# -- OAuth -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int

    def as_response(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": "profile email",
        }


def issue_token(
    session: Session,
    keys: ServerKeys,
    *,
    grant_type: str | None,
    client_id: str | None,
    client_secret: str | None,
    now: datetime,
) -> IssuedToken:
    if grant_type != "client_credentials":
        raise OAuthError(
            "unsupported_grant_type", "Only the client_credentials grant is supported", 400
        )
    if not client_id or not client_secret:
        raise OAuthError("invalid_client", "Invalid client or Invalid client credentials")
    client = (
        repository.oauth_client_by_client_id(session, client_id) if storable(client_id) else None
    )
    if client is None or client.revoked:
        keys.master_key.verify_secret(client_secret, "0" * 64)  # same work whether or not found
        raise OAuthError("invalid_client", "Invalid client or Invalid client credentials")
    valid = keys.master_key.verify_secret(client_secret, client.secret_hash)
    if not valid and in_overlap(client.previous_valid_until, now):
        assert client.previous_secret_hash is not None
        # the secret rotated away is still accepted until the end of the overlap window
        valid = keys.master_key.verify_secret(client_secret, client.previous_secret_hash)
    if not valid:
        raise OAuthError("invalid_client", "Invalid client or Invalid client credentials")
    ttl = keys.settings.oauth_token_ttl_seconds
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": client.client_id,
        "company": client.company_id,
        "scope": client.scope,
        "customer": client.customer_id,
        "license": client.license_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, keys.master_key.token_key, algorithm="HS256")
    return IssuedToken(token, ttl)


def authenticate_bearer(session: Session, keys: ServerKeys, token: str, now: datetime) -> Caller:
    try:
        claims = jwt.decode(
            token,
            keys.master_key.token_key,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"], "verify_iat": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise LicensorError("oauth_token_expired") from None
    except jwt.PyJWTError:
        raise LicensorError("oauth_token_malformed") from None
    if claims["exp"] <= now.timestamp():
        raise LicensorError("oauth_token_expired")
    client = repository.oauth_client_by_client_id(session, str(claims["sub"]))
    if client is None or client.revoked:
        raise LicensorError("oauth_token_malformed", "The OAuth client no longer exists")
    scope: Scope = client.scope  # type: ignore[assignment]
    return Caller(
        company_id=client.company_id,
        scope=scope,
        scope_customer_id=client.customer_id if scope == "customer" else None,
        scope_license_id=client.license_id if scope == "license" else None,
        client_id=client.client_id,
    )
