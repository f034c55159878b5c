"""Computer Keys in the client (DECISIONS §5): verify offline, activate manually, QLM-style online.

A Computer Key (``LK1-...``) is the whole license of one computer, signed by the server's Ed25519
key: an application can run from it alone. The vendor may generate one for a customer's
ComputerID and send it by mail (manual / offline activation: ``install``), or the application gets
one online through any QLM-style variant (by key, authorization code, order field, customer
account). ``validate`` then needs no network at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from licensor.client._auth import (
    TOKEN_PATH,
    Credentials,
    HmacCredentials,
    OAuthCredentials,
    TokenCache,
    bearer_headers,
    token_form,
)
from licensor.client._errors import (
    ClockTamperingDetected,
    LicenseExpired,
    LicenseNotValid,
    NotActivated,
    ServerUnreachable,
    TamperedLicense,
    UntrustedResponse,
    WrongComputer,
)
from licensor.client._filelock import InterProcessLock
from licensor.client._store import ClockRecord, clock_key, default_storage_dir, safe_name
from licensor.client._verify import interpret
from licensor.client.hardware import Binding, hardware_id
from licensor.protocol.computer_key import (
    ComputerKey,
    ComputerKeyError,
    deactivation_code,
    decode_computer_key,
    features_text,
)
from licensor.protocol.signing import PublicKeySet

if TYPE_CHECKING:
    import httpx

API = "/api/v4"


@dataclass(frozen=True, slots=True)
class ComputerKeyLicense:
    """A verified Computer Key: what the application may rely on."""

    computer_key: str
    license_id: int
    product: str
    license_model: str  # permanent, trial, subscription (QLM's ELicenseModel names)
    license_type: str
    features: int
    issued_at: datetime
    expires_at: datetime | None

    def feature_enabled(self, feature_set: int, feature_id: int) -> bool:
        """QLM-style feature check: ``feature_id`` 1, 2, 4, ... 128 in set 0-3."""
        return bool(self.features & (feature_id << (8 * feature_set)))

    @property
    def features_text(self) -> str:
        return features_text(self.features)

    @classmethod
    def from_claims(cls, claims: ComputerKey) -> ComputerKeyLicense:
        return cls(
            computer_key=claims.text,
            license_id=claims.license_id,
            product=claims.product,
            license_model=claims.license_model.wire_name,
            license_type=claims.license_type,
            features=claims.features,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )


def verify_computer_key(
    computer_key: str,
    public_keys: PublicKeySet,
    *,
    hardware_id: str,
    product: str | None = None,
    now: datetime | None = None,
) -> ComputerKeyLicense:
    """Verify a Computer Key offline for this computer (and product), now.

    Raises ``TamperedLicense`` (not a key, or a signature that does not verify), ``WrongComputer``,
    ``LicenseNotValid`` (another product) or ``LicenseExpired``.
    """
    claims = _bound_claims(computer_key, public_keys, hardware_id, product)
    return _unexpired(claims, now or datetime.now(UTC))


def _bound_claims(
    computer_key: str, public_keys: PublicKeySet, hardware_id: str, product: str | None
) -> ComputerKey:
    try:
        claims = decode_computer_key(computer_key, public_keys)
    except ComputerKeyError as exc:
        raise TamperedLicense(f"not a valid Computer Key: {exc}") from None
    if not claims.is_bound_to(hardware_id):
        raise WrongComputer("this Computer Key was issued for another computer")
    if product is not None and claims.product != product:
        raise LicenseNotValid(f"this Computer Key is for product {claims.product!r}")
    return claims


def _unexpired(claims: ComputerKey, moment: datetime) -> ComputerKeyLicense:
    if claims.is_expired(moment):
        raise LicenseExpired(
            "the license of this Computer Key has expired", expired_at=claims.expires_at
        )
    return ComputerKeyLicense.from_claims(claims)


class _ComputerKeyCore:
    """What the sync and async clients share: identity, storage, offline validation, requests."""

    def __init__(
        self,
        product: str,
        public_keys: PublicKeySet,
        *,
        server: str | None = None,
        credentials: Credentials | None = None,
        binding: Binding | str | Sequence[Binding | str] = Binding.RECOMMENDED,
        hardware_id: str | None = None,
        user_defined_binding: str | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] | None = None,
        clock_tolerance: timedelta = timedelta(minutes=15),
    ) -> None:
        self.product = product
        self.public_keys = public_keys
        self.server = server.rstrip("/") if server else None
        self.credentials = credentials
        self.binding = binding
        self.user_defined_binding = user_defined_binding
        self._hardware_id = hardware_id
        self.storage_dir = os.fspath(storage_dir) if storage_dir is not None else None
        self.timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))
        self.clock_tolerance = clock_tolerance
        self._tokens = TokenCache()

    # ------------------------------------------------------------------ offline

    @property
    def hardware_id(self) -> str:
        """This computer's ComputerID under the configured binding (``BindingUnavailable``)."""
        if self._hardware_id is None:
            self._hardware_id = hardware_id(self.binding, user_defined=self.user_defined_binding)
        return self._hardware_id

    @property
    def path(self) -> str:
        directory = self.storage_dir or default_storage_dir()
        return os.path.join(directory, f"{safe_name(self.product)}.computer-key")

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def verify(self, computer_key: str) -> ComputerKeyLicense:
        """Verify a Computer Key for this computer and product, its expiry judged at the trusted
        time (``ClockTamperingDetected`` when the clock was set back: see ``_trusted_now``)."""
        return self._verified(computer_key, fresh_resets=False)

    def install(self, computer_key: str) -> ComputerKeyLicense:
        """Manual (offline) activation: verify a Computer Key for this computer, then store it.
        A key issued within ``clock_tolerance`` of the clock vouches for the clock: it resets a
        time record left too far ahead by a clock that was once set ahead."""
        verified = self._verified(computer_key, fresh_resets=True)
        self._write(verified.computer_key)
        return verified

    def _verified(self, computer_key: str, *, fresh_resets: bool) -> ComputerKeyLicense:
        claims = _bound_claims(computer_key, self.public_keys, self.hardware_id, self.product)
        return _unexpired(claims, self._trusted_now(claims.issued_at, fresh_resets=fresh_resets))

    def _trusted_now(self, issued_at: datetime, *, fresh_resets: bool) -> datetime:
        """The later of the clock and the high-water mark of time seen here (kept beside the
        Computer Key, MAC'd) and the key's signed issue time; raises ``ClockTamperingDetected``
        when the clock is more than ``clock_tolerance`` earlier than that mark, so an expired
        key does not come back with a clock set back. The mark moves forward as time is seen."""
        now = self._now()
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        name = safe_name(self.product)
        record = ClockRecord(
            os.path.join(directory, f"{name}.computer-key.clock.json"), self.product
        )
        key = clock_key(self.hardware_id, self.product)
        fresh = fresh_resets and abs(now - issued_at) <= self.clock_tolerance
        with InterProcessLock(os.path.join(directory, f"{name}.computer-key.lock")):
            recorded = None if fresh else record.load(key)  # (a fresh key outranks the record)
            high_water = max(issued_at, recorded) if recorded is not None else issued_at
            if now < high_water - self.clock_tolerance:
                raise ClockTamperingDetected(
                    "the computer's clock is earlier than a time already seen; correct the clock",
                    now=now,
                    high_water=high_water,
                )
            trusted = max(now, high_water)
            if recorded is None or trusted >= recorded + ClockRecord.STEP:
                record.save(trusted, key)
        return trusted

    def stored_computer_key(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read().strip() or None
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise TamperedLicense(f"the stored Computer Key is unreadable: {exc}") from None

    def validate(self) -> ComputerKeyLicense:
        """Validate the application from the stored Computer Key alone (no network)."""
        stored = self.stored_computer_key()
        if stored is None:
            raise NotActivated(f"no Computer Key is stored for {self.product!r}")
        return self.verify(stored)

    def deactivate_offline(self) -> str:
        """Delete the stored Computer Key and return the Deactivation Verification Code the
        customer gives the vendor (valid today and tomorrow, UTC) so the seat can be released."""
        stored = self.stored_computer_key()
        if stored is None:
            raise NotActivated(f"no Computer Key is stored for {self.product!r}")
        code = deactivation_code(stored, self.hardware_id, self._now().date())
        self.forget()
        return code

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _write(self, computer_key: str) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".computer-key-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(computer_key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    # ------------------------------------------------------------------ online requests

    def _activate_body(
        self,
        license_key: str,
        computer_name: str,
        user_data: str,
        affiliate_id: str,
        computer_type: str,
        increment_activation_count: bool,
        customer: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "license_key": license_key,
            **self._options(
                computer_name, user_data, affiliate_id, computer_type, increment_activation_count
            ),
        }
        if customer is not None:
            body["customer"] = dict(customer)
        return body

    def _code_request_body(self, email: str) -> dict[str, Any]:
        return {"email": email, "product": self.product, "hardware_id": self.hardware_id}

    def _code_body(self, code: str, email: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"authorization_code": code, **self._options()}
        if email is not None:
            body["email"] = email
        return body

    def _release_body(self, license_key: str) -> dict[str, Any]:
        return {
            "product": self.product,
            "license_key": license_key,
            "hardware_id": self.hardware_id,
        }

    def _options(
        self,
        computer_name: str = "",
        user_data: str = "",
        affiliate_id: str = "",
        computer_type: str = "",
        increment_activation_count: bool = True,
    ) -> dict[str, Any]:
        return {
            "product": self.product,
            "hardware_id": self.hardware_id,
            "computer_name": computer_name,
            "user_data": user_data,
            "affiliate_id": affiliate_id,
            "computer_type": computer_type,
            "increment_activation_count": increment_activation_count,
        }

    def _url(self, endpoint: str) -> str:
        if self.server is None or self.credentials is None:
            raise TypeError("online calls need server= and credentials=")
        return f"{self.server}{API}/{endpoint}"

    def _token_url(self, credentials: OAuthCredentials) -> str:
        return credentials.token_url or f"{self.server}{TOKEN_PATH}"

    def _answer(self, response: httpx.Response) -> Any:
        return interpret(
            self.public_keys, response.status_code, response.headers, response.content
        ).data

    def _install_answer(self, data: Any) -> ComputerKeyLicense:
        key = data.get("computer_key") if isinstance(data, dict) else None
        if not isinstance(key, str):
            raise UntrustedResponse("the answer carries no Computer Key")
        return self.install(key)


class ComputerKeyClient(_ComputerKeyCore):
    """One product's Computer Key on this computer: offline validation, manual activation and the
    QLM-style online activations (``server`` and ``credentials`` needed only for those)."""

    def activate(
        self,
        license_key: str,
        *,
        computer_name: str = "",
        user_data: str = "",
        affiliate_id: str = "",
        computer_type: str = "",
        increment_activation_count: bool = True,
        customer: Mapping[str, Any] | None = None,
    ) -> ComputerKeyLicense:
        """``ActivateLicense`` (and its Ex / ForUser variants): by Activation Key.

        ``customer``: ``{"email", "full_name", "company", "privacy_consent"}`` to register."""
        body = self._activate_body(
            license_key,
            computer_name,
            user_data,
            affiliate_id,
            computer_type,
            increment_activation_count,
            customer,
        )
        return self._install_answer(self._post("activate_license_by_key", body))

    def request_authorization_code(self, email: str) -> None:
        """Step 1: the server e-mails a 6-digit code for a license of this e-mail."""
        self._post("request_authorization_code", self._code_request_body(email))

    def activate_by_code(self, code: str, *, email: str | None = None) -> ComputerKeyLicense:
        """Step 2: the code from the e-mail activates this computer."""
        return self._install_answer(
            self._post("activate_license_by_code", self._code_body(code, email))
        )

    def activate_by_field(self, field: str, value: str, email: str) -> ComputerKeyLicense:
        """``ActivateLicenseByField``: by ``OrderID`` or ``ReceiptID`` and the buyer's e-mail."""
        body = {"field": field, "value": value, "email": email, **self._options()}
        return self._install_answer(self._post("activate_license_by_field", body))

    def activate_by_credentials(self, username: str, password: str) -> ComputerKeyLicense:
        """``ActivateLicenseByBasicAuthentication``: the customer's account."""
        body = {"username": username, "password": password, **self._options()}
        return self._install_answer(self._post("activate_license_by_credentials", body))

    def release(self, license_key: str) -> None:
        """Release this computer's seat online and delete the stored Computer Key."""
        self._post("release_license", self._release_body(license_key))
        self.forget()

    def _post(self, endpoint: str, body: dict[str, Any]) -> Any:
        url = self._url(endpoint)
        import httpx

        headers = {"Licensor-Accept-Signature": "ed25519", **self._auth_headers()}
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return self._answer(response)

    def _auth_headers(self) -> dict[str, str]:
        credentials = self.credentials
        if isinstance(credentials, HmacCredentials):
            return credentials.headers()
        assert isinstance(credentials, OAuthCredentials)
        token = self._tokens.current()
        if token is None:
            import httpx

            try:
                response = httpx.post(
                    self._token_url(credentials),
                    data=token_form(credentials),
                    timeout=self.timeout,
                )
            except httpx.HTTPError as exc:
                raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
            token = self._tokens.accept(response.status_code, _json_or_none(response))
        return bearer_headers(token)


class AsyncComputerKeyClient(_ComputerKeyCore):
    """``ComputerKeyClient`` for asyncio: the same methods; the online ones are coroutines."""

    async def activate(
        self,
        license_key: str,
        *,
        computer_name: str = "",
        user_data: str = "",
        affiliate_id: str = "",
        computer_type: str = "",
        increment_activation_count: bool = True,
        customer: Mapping[str, Any] | None = None,
    ) -> ComputerKeyLicense:
        body = self._activate_body(
            license_key,
            computer_name,
            user_data,
            affiliate_id,
            computer_type,
            increment_activation_count,
            customer,
        )
        return self._install_answer(await self._post("activate_license_by_key", body))

    async def request_authorization_code(self, email: str) -> None:
        await self._post("request_authorization_code", self._code_request_body(email))

    async def activate_by_code(self, code: str, *, email: str | None = None) -> ComputerKeyLicense:
        return self._install_answer(
            await self._post("activate_license_by_code", self._code_body(code, email))
        )

    async def activate_by_field(self, field: str, value: str, email: str) -> ComputerKeyLicense:
        body = {"field": field, "value": value, "email": email, **self._options()}
        return self._install_answer(await self._post("activate_license_by_field", body))

    async def activate_by_credentials(self, username: str, password: str) -> ComputerKeyLicense:
        body = {"username": username, "password": password, **self._options()}
        return self._install_answer(await self._post("activate_license_by_credentials", body))

    async def release(self, license_key: str) -> None:
        await self._post("release_license", self._release_body(license_key))
        self.forget()

    async def _post(self, endpoint: str, body: dict[str, Any]) -> Any:
        url = self._url(endpoint)
        import httpx

        headers = {"Licensor-Accept-Signature": "ed25519", **(await self._auth_headers())}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return self._answer(response)

    async def _auth_headers(self) -> dict[str, str]:
        credentials = self.credentials
        if isinstance(credentials, HmacCredentials):
            return credentials.headers()
        assert isinstance(credentials, OAuthCredentials)
        token = self._tokens.current()
        if token is None:
            import httpx

            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.post(
                        self._token_url(credentials), data=token_form(credentials)
                    )
            except httpx.HTTPError as exc:
                raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
            token = self._tokens.accept(response.status_code, _json_or_none(response))
        return bearer_headers(token)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
