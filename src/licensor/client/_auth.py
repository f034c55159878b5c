"""Request credentials: HMAC (api key + shared key) or OAuth 2.0 client credentials."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from licensor.client._errors import LicenseRefused, ServerUnreachable
from licensor.protocol.auth import format_authorization, hmac_signature, http_date

TOKEN_PATH = "/api/v4/oauth/token"
TOKEN_REFRESH_MARGIN = 30.0  # seconds before expiry at which a cached token is replaced


class HmacCredentials(NamedTuple):
    """The company API key and shared key (License API v4 §1.2)."""

    api_key: str
    shared_key: str

    def __repr__(self) -> str:
        return f"HmacCredentials(api_key={self.api_key!r}, shared_key='***')"

    def headers(self) -> dict[str, str]:
        date = http_date()
        return {
            "Date": date,
            "Authorization": format_authorization(
                self.api_key, hmac_signature(self.shared_key, date)
            ),
        }


class OAuthCredentials(NamedTuple):
    """An OAuth client id and secret; the token comes from ``{server}/api/v4/oauth/token``."""

    client_id: str
    client_secret: str
    token_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"OAuthCredentials(client_id={self.client_id!r}, client_secret='***', "
            f"token_url={self.token_url!r})"
        )


Credentials = HmacCredentials | OAuthCredentials


class TokenCache:
    """Holds a bearer token until shortly before ``expires_in`` runs out."""

    def __init__(self) -> None:
        self._token: str | None = None
        self._expires_at = 0.0

    def current(self) -> str | None:
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        return None

    def clear(self) -> None:
        self._token = None
        self._expires_at = 0.0

    def accept(self, status: int, data: Any) -> str:
        """Take the token endpoint's answer; raise the right branch when there is no token."""
        if status >= 500 or status == 429:
            raise ServerUnreachable(f"the token endpoint answered HTTP {status}", status=status)
        if status >= 400 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            description = data.get("error_description") if isinstance(data, dict) else None
            raise LicenseRefused(
                str(error or "invalid_client"), str(description or "token request refused"), status
            )
        token = data.get("access_token")
        expires_in = data.get("expires_in", 300)
        if not isinstance(token, str) or not token:
            raise ServerUnreachable("the token endpoint answered without an access_token")
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            expires_in = 300
        lifetime = max(float(expires_in) - TOKEN_REFRESH_MARGIN, float(expires_in) / 2)
        self._token = token
        self._expires_at = time.monotonic() + lifetime
        return token


def bearer_headers(token: str) -> dict[str, str]:
    return {"Date": http_date(), "Authorization": f"Bearer {token}"}


def token_form(credentials: OAuthCredentials) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
    }
