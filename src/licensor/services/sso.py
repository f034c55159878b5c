"""Single sign-on for user-based licenses: customer accounts and their OpenID Connect provider.

A user of a vendor's business customer logs in at the customer's identity provider; the client
sends the resulting ``id_token`` (implicit grant) or ``code`` (authorization-code grant) with the
``customer_account_code``. This module verifies that identity and names the license user it maps
to; ``licensing`` then applies its usual rules to that user (no copy of the activation logic).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.licensing import AuthorizationMethod
from licensor.secrets_at_rest import MasterKey
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef, resolve_product
from licensor.store import repository
from licensor.store.models import CustomerAccount, LicenseUser

CLIENT_SECRET_CONTEXT = b"customer_accounts.oidc_client_secret"
HTTP_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
METADATA_TTL_SECONDS = 3600.0
JWKS_TTL_SECONDS = 600.0
LEEWAY_SECONDS = 60
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# An SSO user has no password: this hash never verifies (argon2 refuses it as invalid).
NO_PASSWORD = "!sso"


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    email_claim: str = "email"
    auto_create_license_id: int | None = None


def create_customer_account(
    session: Session,
    master_key: MasterKey,
    company_id: int,
    code: str,
    *,
    name: str = "",
    oidc: OidcSettings | None = None,
) -> CustomerAccount:
    """A customer account, with its identity provider when ``oidc`` is given."""
    code = code.strip()
    if not code:
        raise LicensorError("validation_error", "code: must not be empty")
    if repository.customer_account_by_code(session, company_id, code) is not None:
        raise LicensorError("conflict", f"A customer account with code '{code}' already exists")
    account = CustomerAccount(company_id=company_id, code=code, name=name, oidc_redirect_uris=[])
    if oidc is not None:
        configure_oidc(session, master_key, account, oidc)
    session.add(account)
    session.flush()
    return account


def configure_oidc(
    session: Session, master_key: MasterKey, account: CustomerAccount, oidc: OidcSettings
) -> None:
    """Connect the account to its identity provider (the client secret is encrypted at rest)."""
    issuer = oidc.issuer.rstrip("/")
    if urlsplit(issuer).scheme not in ("https", "http") or not urlsplit(issuer).netloc:
        raise LicensorError("validation_error", "issuer: must be an absolute http(s) URL")
    if not oidc.client_id or not oidc.client_secret:
        raise LicensorError("validation_error", "client id and client secret are required")
    if not oidc.redirect_uris:
        raise LicensorError("validation_error", "at least one redirect URI is required")
    for uri in oidc.redirect_uris:
        if urlsplit(uri).scheme not in ("https", "http") or not urlsplit(uri).netloc:
            raise LicensorError("validation_error", f"redirect URI '{uri}' is not absolute")
    if oidc.auto_create_license_id is not None:
        license_ = repository.license_in_company(
            session, account.company_id, oidc.auto_create_license_id
        )
        if license_ is None:
            raise LicensorError("license_not_found", "The auto-create license does not exist")
    account.oidc_issuer = issuer
    account.oidc_client_id = oidc.client_id
    account.oidc_client_secret_encrypted = master_key.encrypt(
        oidc.client_secret, context=CLIENT_SECRET_CONTEXT
    )
    account.oidc_redirect_uris = list(oidc.redirect_uris)
    account.oidc_email_claim = oidc.email_claim or "email"
    account.auto_create_license_id = oidc.auto_create_license_id


@dataclass(frozen=True, slots=True)
class _Account:
    """A configured account with its secret in clear for the life of one request."""

    row: CustomerAccount
    issuer: str
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    email_claim: str


def _configured_account(session: Session, keys: ServerKeys, caller: Caller, code: str) -> _Account:
    row = repository.customer_account_by_code(session, caller.company_id, code)
    if row is None:
        raise LicensorError("customer_account_not_found", f"No customer account with code '{code}'")
    if not (row.oidc_issuer and row.oidc_client_id and row.oidc_client_secret_encrypted):
        raise LicensorError("sso_not_configured")
    secret = keys.master_key.decrypt(
        row.oidc_client_secret_encrypted, context=CLIENT_SECRET_CONTEXT
    )
    return _Account(
        row,
        row.oidc_issuer,
        row.oidc_client_id,
        secret,
        tuple(row.oidc_redirect_uris or ()),
        row.oidc_email_claim or "email",
    )


def _redirect_uri(account: _Account, requested: str | None) -> str:
    """The requested URI when allowed, else the first registered one. A registered loopback URI
    without a port allows any port (RFC 8252 §7.3), and without a path any path."""
    if not requested:
        return account.redirect_uris[0]
    wanted = urlsplit(requested)
    for allowed in account.redirect_uris:
        if requested == allowed:
            return requested
        registered = urlsplit(allowed)
        if (
            registered.hostname in ("127.0.0.1", "localhost", "::1")
            and registered.port is None
            and wanted.scheme == "http"
            and wanted.hostname == registered.hostname
            and registered.path.rstrip("/") in ("", wanted.path.rstrip("/"))
        ):
            return requested
    raise LicensorError("sso_redirect_uri_not_allowed")


# -- the provider: discovery and keys, cached ---------------------------------------------------


def _unavailable(what: str, exc: Exception | None = None) -> LicensorError:
    detail = f" ({type(exc).__name__})" if exc is not None else ""
    return LicensorError(
        "sso_provider_unavailable", f"The identity provider could not be reached: {what}{detail}"
    )


def _get_json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise _unavailable(what, exc) from None
    if response.status_code != 200:
        raise _unavailable(f"{what} answered {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise _unavailable(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise _unavailable(f"{what} is not a JSON object")
    return data


@dataclass(slots=True)
class _Provider:
    metadata: dict[str, Any]
    metadata_at: float
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    unnamed_keys: list[jwt.PyJWK] = field(default_factory=list)
    keys_at: float = 0.0


class ProviderDirectory:
    """Discovery documents and JWKS by issuer, cached; an unknown ``kid`` refetches the JWKS
    (the provider rotated its keys), at most once per ``min_refetch_seconds``."""

    def __init__(
        self,
        *,
        http_factory: Callable[[], httpx.Client] | None = None,
        min_refetch_seconds: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._providers: dict[str, _Provider] = {}
        self._http_factory = http_factory or (lambda: httpx.Client(timeout=HTTP_TIMEOUT))
        self.min_refetch_seconds = min_refetch_seconds

    def http(self) -> httpx.Client:
        return self._http_factory()

    def clear(self) -> None:
        with self._lock:
            self._providers.clear()

    def metadata(self, issuer: str) -> dict[str, Any]:
        with self._lock:
            cached = self._providers.get(issuer)
        if cached is not None and time.monotonic() - cached.metadata_at < METADATA_TTL_SECONDS:
            return cached.metadata
        with self.http() as http:
            data = _get_json(http, issuer + "/.well-known/openid-configuration", "discovery")
        if str(data.get("issuer", "")).rstrip("/") != issuer:
            raise LicensorError(
                "sso_not_configured", "The provider's discovery document names another issuer"
            )
        with self._lock:
            self._providers[issuer] = _Provider(data, time.monotonic())
        return data

    def _load_keys(self, issuer: str, provider: _Provider) -> None:
        uri = provider.metadata.get("jwks_uri")
        if not isinstance(uri, str):
            raise LicensorError("sso_not_configured", "The provider publishes no jwks_uri")
        with self.http() as http:
            data = _get_json(http, uri, "JWKS")
        named: dict[str, jwt.PyJWK] = {}
        unnamed: list[jwt.PyJWK] = []
        for entry in data.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this server cannot use
            if isinstance(entry.get("kid"), str):
                named[entry["kid"]] = key
            else:
                unnamed.append(key)
        with self._lock:
            provider.keys, provider.unnamed_keys = named, unnamed
            provider.keys_at = time.monotonic()

    def keys(self, issuer: str, kid: str | None) -> tuple[jwt.PyJWK | None, list[jwt.PyJWK]]:
        """The key named ``kid`` (or None) and every key the provider publishes."""
        self.metadata(issuer)
        provider = self._providers[issuer]
        age = time.monotonic() - provider.keys_at
        if provider.keys_at == 0.0 or age > JWKS_TTL_SECONDS:
            self._load_keys(issuer, provider)
        elif kid is not None and kid not in provider.keys and age >= self.min_refetch_seconds:
            self._load_keys(issuer, provider)  # rotation: a key we have not seen yet
        found = provider.keys.get(kid) if kid is not None else None
        return found, [*provider.keys.values(), *provider.unnamed_keys]


providers = ProviderDirectory()


# -- sso_url ------------------------------------------------------------------------------------


def sso_url(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    *,
    product: str,
    customer_account_code: str,
    response_type: str = "code",
    redirect_uri: str | None = None,
) -> dict[str, Any]:
    """The provider's authorization URL (with fresh ``state`` and ``nonce``) and its metadata."""
    found = resolve_product(session, caller, product)
    if found.authorization_method != AuthorizationMethod.USER:
        raise LicensorError(
            "invalid_product_auth_method", "Single sign-on needs a product with user-based licenses"
        )
    if response_type not in ("code", "token"):
        raise LicensorError("validation_error", "response_type: must be 'code' or 'token'")
    account = _configured_account(session, keys, caller, customer_account_code)
    metadata = providers.metadata(account.issuer)
    endpoint = metadata.get("authorization_endpoint")
    if not isinstance(endpoint, str):
        raise LicensorError("sso_not_configured", "The provider has no authorization_endpoint")
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    query = {
        "client_id": account.client_id,
        "response_type": "code" if response_type == "code" else "id_token token",
        "scope": "openid email profile",
        "redirect_uri": _redirect_uri(account, redirect_uri),
        "state": state,
        "nonce": nonce,
    }
    separator = "&" if "?" in endpoint else "?"
    names = (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "end_session_endpoint",
        "introspection_endpoint",
        "jwks_uri",
    )
    return {
        "url": endpoint + separator + urlencode(query),
        "openid_configuration": {name: metadata[name] for name in names if name in metadata},
        "state": state,
        "nonce": nonce,
    }


# -- identity ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SsoCredentials:
    customer_account_code: str
    id_token: str | None = None
    code: str | None = None
    redirect_uri: str | None = None
    nonce: str | None = None


def _invalid(why: str) -> LicensorError:
    return LicensorError("sso_token_invalid", f"The identity token is not valid: {why}")


def verify_id_token(
    issuer: str, client_id: str, client_secret: str, token: str, *, nonce: str | None = None
) -> dict[str, Any]:
    """The claims of an ``id_token`` signed by ``issuer``'s keys for ``client_id``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("malformed token") from None
    algorithm = header.get("alg")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        raise _invalid("unsigned tokens (alg none) are refused")
    key: Any
    if algorithm in HMAC_ALGORITHMS:
        _found, published = providers.keys(issuer, kid)
        supported = providers.metadata(issuer).get("id_token_signing_alg_values_supported", [])
        if any(k.key_type != "oct" for k in published) or algorithm not in supported:
            raise _invalid(
                f"HMAC-signed token ({algorithm}) refused: the provider signs with asymmetric keys"
            )
        key = client_secret.encode()
    elif algorithm in ASYMMETRIC_ALGORITHMS:
        found, published = providers.keys(issuer, kid)
        if found is None and kid is None:
            fitting = [k for k in published if k.algorithm_name in (algorithm, None)]
            found = fitting[0] if len(fitting) == 1 else None
        if found is None:
            raise _invalid("bad signature (signed with a key the provider does not publish)")
        key = found.key
    else:
        raise _invalid(f"algorithm {algorithm} is not accepted")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=client_id,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise LicensorError("sso_token_expired") from None
    except jwt.InvalidAudienceError:
        raise _invalid("wrong audience (issued for another client)") from None
    except jwt.InvalidIssuerError:
        raise _invalid("wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise _invalid("bad signature") from None
    except jwt.ImmatureSignatureError:
        raise _invalid("issued in the future") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"missing claim '{exc.claim}'") from None
    except jwt.PyJWTError as exc:
        raise _invalid(str(exc) or type(exc).__name__) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise _invalid("wrong audience (azp is not this client)")
    if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise _invalid("nonce does not match this login")
    return claims


def exchange_code(account: _Account, code: str, redirect_uri: str) -> str:
    """The ``id_token`` the provider's token endpoint gives for an authorization code."""
    metadata = providers.metadata(account.issuer)
    endpoint = metadata.get("token_endpoint")
    if not isinstance(endpoint, str):
        raise LicensorError("sso_not_configured", "The provider has no token_endpoint")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth: httpx.Auth | None = None
    if "client_secret_basic" in methods:
        auth = httpx.BasicAuth(account.client_id, account.client_secret)
    else:
        form.update(client_id=account.client_id, client_secret=account.client_secret)
    try:
        with providers.http() as http:
            response = http.post(
                endpoint,
                data=form,
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as exc:
        raise _unavailable("token endpoint", exc) from None
    if response.status_code >= 500:
        raise _unavailable(f"token endpoint answered {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200 or not isinstance(data, dict):
        error = data.get("error", response.status_code) if isinstance(data, dict) else "?"
        raise LicensorError("sso_code_invalid", f"The identity provider refused the code: {error}")
    token = data.get("id_token")
    if not isinstance(token, str):
        raise LicensorError("sso_code_invalid", "The identity provider returned no id_token")
    return token


def identify(
    session: Session, keys: ServerKeys, caller: Caller, credentials: SsoCredentials
) -> tuple[CustomerAccount, str]:
    """The verified e-mail (lower-cased) of the user behind an ``id_token`` or ``code``."""
    if (credentials.id_token is None) == (credentials.code is None):
        raise LicensorError(
            "missing_parameters", "Give either id_token or code with customer_account_code."
        )
    account = _configured_account(session, keys, caller, credentials.customer_account_code)
    if credentials.code is not None:
        redirect_uri = _redirect_uri(account, credentials.redirect_uri)
        token = exchange_code(account, credentials.code, redirect_uri)
    else:
        assert credentials.id_token is not None
        token = credentials.id_token
    claims = verify_id_token(
        account.issuer, account.client_id, account.client_secret, token, nonce=credentials.nonce
    )
    email = claims.get(account.email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise LicensorError(
            "sso_user_not_allowed", f"The identity token carries no '{account.email_claim}' claim"
        )
    if claims.get("email_verified") is False:
        raise LicensorError("sso_user_not_allowed", "The e-mail address is not verified")
    return account.row, email.strip().lower()


@dataclass(frozen=True, slots=True)
class SsoUser:
    """A user their identity provider vouched for. Found before the write transaction of the
    request: finding them may ask the provider (a code to exchange, its keys), and the write
    lock must not wait on the network."""

    email: str  # lower-cased
    auto_create_license_id: int | None  # the account's license new users are added to


def verified_user(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    product_code: str,
    credentials: SsoCredentials,
) -> SsoUser:
    """The user behind ``credentials``, for a product with user-based licenses."""
    product = resolve_product(session, caller, product_code)
    if product.authorization_method != AuthorizationMethod.USER:
        raise LicensorError(
            "invalid_product_auth_method", "Single sign-on needs a product with user-based licenses"
        )
    account, email = identify(session, keys, caller, credentials)
    return SsoUser(email, account.auto_create_license_id)


def resolve_ref(
    session: Session,
    caller: Caller,
    ref: LicenseRef,
    user: SsoUser,
    *,
    now: datetime,
    create_user: bool = False,
) -> LicenseRef:
    """``ref`` naming the verified SSO user; with ``create_user`` (activation, inside its write
    transaction), an unknown user is added to the account's auto-create license when one is
    configured."""
    if create_user and user.auto_create_license_id is not None:
        _ensure_user(session, caller, user.auto_create_license_id, ref.product, user.email, now)
    return replace(ref, username=user.email, password=None, verified_username=user.email)


def _ensure_user(
    session: Session,
    caller: Caller,
    license_id: int,
    product_code: str,
    email: str,
    now: datetime,
) -> None:
    product = resolve_product(session, caller, product_code)
    license_ = repository.license_in_company(session, caller.company_id, license_id)
    if license_ is None or license_.product_id != product.id:
        return  # the account's license is for another product: nothing to add here
    if repository.license_user_on_license(session, license_.id, email) is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                LicenseUser(
                    license_id=license_.id,
                    email=email,
                    password_hash=NO_PASSWORD,
                    is_initial_password=False,
                    max_activations=license_.max_activations,
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # created by a concurrent login of the same user
