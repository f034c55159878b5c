"""``LicenseClient`` and ``AsyncLicenseClient``: the same methods, over httpx, sync and async.

Everything that is not I/O (building requests, verifying answers, the offline validation rules, the
store) lives in ``_ClientCore`` so both clients behave identically. httpx is imported only when a
call goes online, so an application that validates offline never loads the network stack.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import threading
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from licensor import __version__
from licensor.client._auth import (
    TOKEN_PATH,
    Credentials,
    HmacCredentials,
    OAuthCredentials,
    TokenCache,
    bearer_headers,
    token_form,
)
from licensor.client._consumption import Consumption, Journal, Report
from licensor.client._errors import (
    ClockTamperingDetected,
    InvalidLicenseFile,
    LicenseExpired,
    LicenseRefused,
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
    evaluate,
    feature_from,
    installation_file_from,
    product_details_from,
    releases_from,
    server_date,
    trial_from,
    user_licenses_from,
    variables_from,
)
from licensor.client._store import (
    LicenseStore,
    SignedAnswer,
    StoredLicense,
    clock_key,
    default_storage_dir,
)
from licensor.client._verify import (
    VerifiedAnswer,
    interpret,
    verify_body,
    verify_license,
)
from licensor.client.hardware import Binding, device_facts, hardware_id
from licensor.protocol.signing import PublicKeySet, parse_iso_datetime

if TYPE_CHECKING:
    import httpx

SDK_VERSION = f"licensor-python/{__version__}"
API = "/api/v4"

# Refusals that are a verdict on this license or device: the stored license is removed.
LICENSE_VERDICTS = frozenset(
    {
        "license_not_found",
        "license_not_enabled",
        "license_not_active",
        "device_not_found",
        "blacklisted",
        "license_expired",
        "trial_expired",
        "unknown_product",
        "disabled_product",
        "archived_product",
    }
)
# Asking again with a fresh token may succeed.
_TOKEN_CODES = frozenset({"oauth_token_expired", "oauth_token_malformed"})

PublicKeysLike = PublicKeySet | Iterable[str | bytes | os.PathLike[str]]


def load_public_keys(keys: PublicKeysLike) -> PublicKeySet:
    """A ``PublicKeySet`` from one, or from PEM texts/bytes and PEM file paths."""
    if isinstance(keys, PublicKeySet):
        return keys
    pems: list[str | bytes] = []
    for item in keys:
        if isinstance(item, os.PathLike):
            with open(item, "rb") as handle:
                pems.append(handle.read())
        else:
            pems.append(item)
    return PublicKeySet.from_pem(pems)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Request(NamedTuple):
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    idempotency_key: str | None = None


class _OfflineState(NamedTuple):
    stored: StoredLicense
    body: dict[str, Any]
    last_online: datetime
    now: datetime
    trusted_now: datetime
    clock_set_back: bool
    check_due: bool
    too_long: bool


class _ClientCore:
    def __init__(
        self,
        server: str,
        product: str,
        public_keys: PublicKeysLike,
        credentials: Credentials,
        *,
        binding: Binding | str | Sequence[Binding | str] = Binding.RECOMMENDED,
        hardware_id: str | None = None,
        user_defined_binding: str | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_days_offline: float | None = 7.0,
        check_interval: timedelta | None = timedelta(days=1),
        clock_tolerance: timedelta = timedelta(minutes=15),
        app_ver: str | None = None,
        send_device_facts: bool = True,
        clock: Callable[[], datetime] | None = None,
        bundle: str | None = None,
    ) -> None:
        if not isinstance(credentials, HmacCredentials | OAuthCredentials):
            raise TypeError("credentials must be HmacCredentials or OAuthCredentials")
        self.server = server.rstrip("/")
        self.product = product
        self.public_keys = load_public_keys(public_keys)
        self.credentials = credentials
        self.binding = binding
        self.user_defined_binding = user_defined_binding
        self._hardware_id = hardware_id
        self.storage_dir = os.fspath(storage_dir) if storage_dir is not None else None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_days_offline = max_days_offline
        self.check_interval = check_interval
        self.clock_tolerance = clock_tolerance
        self.app_ver = app_ver
        self.send_device_facts = send_device_facts
        self._clock = clock or _utc_now
        self.bundle = bundle
        self._tokens = TokenCache()
        self._store: LicenseStore | None = None

    # ------------------------------------------------------------------ identity and storage

    @property
    def hardware_id(self) -> str:
        """This computer's id under the configured binding (raises ``BindingUnavailable``)."""
        if self._hardware_id is None:
            self._hardware_id = hardware_id(self.binding, user_defined=self.user_defined_binding)
        return self._hardware_id

    @property
    def store(self) -> LicenseStore:
        if self._store is None:
            self._store = LicenseStore(self.storage_dir or default_storage_dir(), self.product)
        return self._store

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    # ------------------------------------------------------------------ requests

    def _device_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = device_facts() if self.send_device_facts else {}
        if self.app_ver is not None:
            fields["app_ver"] = self.app_ver
        fields["sdk_ver"] = SDK_VERSION
        return fields

    def _activate_request(
        self,
        license_key: str | None,
        username: str | None,
        password: str | None,
        variables: Mapping[str, Any] | None,
        path: str = "activate_license",
        license_id: int | None = None,
    ) -> _Request:
        if (license_key is None) == (username is None):
            raise ValueError("give either license_key or username (with password)")
        if username is not None and password is None:
            raise ValueError("a username needs a password")
        body: dict[str, Any] = {"hardware_id": self.hardware_id, "product": self.product}
        if license_key is not None:
            body["license_key"] = license_key
        else:
            body["username"] = username
            body["password"] = password
        if self.bundle is not None:
            body["bundle_code"] = self.bundle
        if license_id is not None:
            body["license_id"] = license_id
        body.update(self._device_fields())
        if variables:
            body["variables"] = dict(variables)
        return _Request("POST", path, json=body, idempotency_key=str(uuid.uuid4()))

    def _identity(self, holder: StoredLicense | Mapping[str, Any]) -> dict[str, Any]:
        """``hardware_id``, ``product`` and ``license_key`` or ``username`` for a request."""
        if isinstance(holder, StoredLicense):
            license_key, username = holder.license_key, holder.username
            license_id = _license_id(holder) if username is not None else None
        else:
            license_key, username = holder.get("license_key"), holder.get("username")
            license_id = holder.get("license_id")
        identity: dict[str, Any] = {"hardware_id": self.hardware_id, "product": self.product}
        if license_key is not None:
            identity["license_key"] = license_key
        else:
            identity["username"] = username
            if license_id is not None:  # (a user of several licenses: the one activated)
                identity["license_id"] = license_id
        if self.bundle is not None:
            identity["bundle_code"] = self.bundle
        return identity

    # ------------------------------------------------------------------ bundles, users

    def _sub_client(self, product: str) -> Self:
        """This client for one product of the bundle ``self.product`` (same server, keys,
        credentials, storage and HTTP client)."""
        sub = copy.copy(self)
        sub.product, sub.bundle, sub._store = product, self.product, None
        return sub

    def _bundle_products(self, answer: VerifiedAnswer) -> list[str]:
        """The products of a bundle answer (an array of license objects for this computer)."""
        items = answer.data
        if not isinstance(items, list) or not items:
            raise UntrustedResponse("the bundle answer is not a list of licenses")
        codes = []
        for item in items:
            details = item.get("product_details") if isinstance(item, dict) else None
            code = details.get("short_code") if isinstance(details, dict) else None
            if not isinstance(code, str) or item.get("hardware_id") != self.hardware_id:
                raise UntrustedResponse("the bundle answer is not for this computer")
            codes.append(code)
        return codes

    def _bundle_request(self, path: str, license_key: str) -> _Request:
        identity: dict[str, Any] = {
            "hardware_id": self.hardware_id,
            "product": self.product,
            "license_key": license_key,
        }
        if path == "check_bundle":
            identity.update(self._device_fields())
            return _Request("GET", path, params={k: _query_value(v) for k, v in identity.items()})
        return _Request("POST", path, json=identity)

    def _change_password_request(self, username: str, password: str, new: str) -> _Request:
        body = {"username": username, "password": password, "new_password": new}
        return _Request("POST", "change_password", json=body)

    def _user_licenses_request(self, username: str, password: str) -> _Request:
        params = {"product": self.product, "username": username, "password": password}
        return _Request("GET", "user_licenses", params=params)

    @property
    def _journal(self) -> Journal:
        return Journal(self.store.directory, self.product)

    def _feature_request(self, code: str, include_expired: bool) -> _Request:
        params = self._identity(self._stored_for_online())
        params["feature"] = code
        if include_expired:
            params["include_expired_features"] = "true"
        return _Request("GET", "check_license_feature", params=params)

    def _release_request(
        self, path: str, env: str | None, channel: str | None, version: str | None = None
    ) -> _Request:
        params = self._identity(self._stored_for_online())
        for name, value in (("env", env), ("channel", channel), ("version", version)):
            if value:
                params[name] = value
        return _Request("GET", path, params=params)

    def _feature_body(self, code: str) -> dict[str, Any]:
        body = self._identity(self._stored_for_online())
        body["feature"] = code
        return body

    def _feature_consumption_request(self, code: str, count: int) -> _Request:
        body = self._feature_body(code)
        body["consumptions"] = count
        key = str(uuid.uuid4())  # (a retry of this call counts once)
        return _Request("POST", "add_feature_consumption", json=body, idempotency_key=key)

    def _feature_borrow_request(self, code: str, hours: float | None) -> _Request:
        body = self._feature_body(code)
        body["borrowed_until"] = _borrow_time(self._now(), hours)
        return _Request("POST", "floating/feature_borrow", json=body)

    def _consumption_request(self, stored: StoredLicense, report: Report) -> _Request:
        body = self._identity(stored)
        body["consumptions"] = report.count
        return _Request("POST", "add_consumption", json=body, idempotency_key=report.id)

    def _check_request(self, holder: StoredLicense | Mapping[str, Any]) -> _Request:
        params = self._identity(holder)
        params.update(self._device_fields())
        params = {k: _query_value(v) for k, v in params.items()}
        return _Request("GET", "check_license", params=params)

    def _headers(self, request: _Request, auth: dict[str, str]) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Licensor-Accept-Signature": "ed25519",
            "User-Agent": SDK_VERSION,
            **auth,
        }
        if request.idempotency_key is not None:
            headers["Idempotency-Key"] = request.idempotency_key
        return headers

    def _token_url(self, credentials: OAuthCredentials) -> str:
        return credentials.token_url or f"{self.server}{TOKEN_PATH}"

    def _delay(self, attempt: int, error: ServerUnreachable) -> float:
        """Exponential backoff with jitter; a ``Retry-After`` the server sent is honoured (capped)."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_backoff)
        import random

        ceiling = min(self.max_backoff, self.backoff * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    # ------------------------------------------------------------------ answers

    def _license_answer(
        self, answer: VerifiedAnswer, identity: Mapping[str, Any]
    ) -> dict[str, Any]:
        return verify_license(
            self.public_keys,
            answer,
            hardware_id=self.hardware_id,
            license_key=identity.get("license_key"),
            username=identity.get("username"),
        )

    def _verify_stored(self, stored: StoredLicense) -> list[dict[str, Any]]:
        """Re-verify every stored answer against the public keys; raise ``TamperedLicense``."""
        bodies: list[dict[str, Any]] = []
        for signed in (stored.activation, stored.check):
            if signed is None:
                continue
            try:
                verify_body(self.public_keys, signed.body, signed.signature)
                answer = VerifiedAnswer(200, signed.body, _json(signed.body), signed.signature)
                body = verify_license(
                    self.public_keys,
                    answer,
                    hardware_id=stored.hardware_id,
                    license_key=stored.license_key,
                    username=stored.username,
                )
                server_date(body)
            except (UntrustedResponse, ValueError) as exc:
                raise TamperedLicense(f"the stored license does not verify: {exc}") from exc
            bodies.append(body)
        return bodies

    def _load_verified(self) -> tuple[StoredLicense, list[dict[str, Any]]]:
        stored = self.store.load()
        if stored is None:
            raise NotActivated(f"no license for {self.product!r} is activated on this computer")
        bodies = self._verify_stored(stored)
        if stored.hardware_id != self.hardware_id:
            raise WrongComputer("the stored license belongs to another computer")
        return stored, bodies

    def _offline_state(self) -> _OfflineState:
        stored, bodies = self._load_verified()
        dated = [(server_date(body), index, body) for index, body in enumerate(bodies)]
        last_online, _, latest = max(dated, key=lambda item: (item[0], item[1]))
        recorded = self.store.clock.load(clock_key(stored.hardware_id, self.product))
        high_water = max(recorded, last_online) if recorded else last_online
        now = self._now()
        trusted_now = max(now, high_water)
        since = trusted_now - last_online
        return _OfflineState(
            stored=stored,
            body=latest,
            last_online=last_online,
            now=now,
            trusted_now=trusted_now,
            clock_set_back=now < high_water - self.clock_tolerance,
            check_due=self.check_interval is not None and since >= self.check_interval,
            too_long=self.max_days_offline is not None
            and since > timedelta(days=self.max_days_offline),
        )

    def _advance_high_water(self, hardware: str, moment: datetime, *, reset: bool = False) -> None:
        with self.store.lock:
            self.store.clock.advance(moment, clock_key(hardware, self.product), reset=reset)

    def _save_activation(self, answer: VerifiedAnswer, identity: Mapping[str, Any]) -> License:
        body = self._license_answer(answer, identity)
        stored = StoredLicense(
            product=self.product,
            hardware_id=self.hardware_id,
            license_key=identity.get("license_key"),
            username=identity.get("username"),
            activation=SignedAnswer(answer.content, answer.signature),
            check=None,
        )
        signed_now = server_date(body)
        license_ = evaluate(
            body,
            product=self.product,
            now=max(self._now(), signed_now),
            last_online_check=signed_now,
            checked_online=True,
            allow_expired=True,
        )
        self.store.save(stored)
        self._advance_high_water(self.hardware_id, max(self._now(), signed_now), reset=True)
        return license_

    def _save_check(self, answer: VerifiedAnswer, stored: StoredLicense) -> License:
        body = self._license_answer(answer, self._identity(stored))
        signed_now = server_date(body)
        previous = [server_date(b) for b in self._verify_stored(stored)]
        last_online = max(previous)
        if signed_now < last_online:
            raise UntrustedResponse("the answer is older than one already seen (replayed)")
        with self.store.lock:
            current = self.store.load()
            if current is None:
                raise NotActivated("the license was removed while it was being checked")
            self.store.save(
                StoredLicense(
                    product=current.product,
                    hardware_id=current.hardware_id,
                    license_key=current.license_key,
                    username=current.username,
                    activation=current.activation,
                    check=SignedAnswer(answer.content, answer.signature),
                )
            )
            # Only a fresh signed time may pull the mark back (a clock once set ahead recovers).
            fresh = signed_now > last_online
            self._advance_high_water(current.hardware_id, max(self._now(), signed_now), reset=fresh)
        trusted_now = max(self._now(), signed_now)
        return evaluate(
            body,
            product=self.product,
            now=trusted_now,
            last_online_check=signed_now,
            checked_online=True,
            allow_expired=True,
        )

    # ------------------------------------------------------------------ offline files

    def _write_activation_request(
        self,
        path: str | os.PathLike[str],
        license_key: str | None,
        username: str | None,
        password: str | None,
        variables: Mapping[str, Any] | None,
    ) -> str:
        from licensor.client._offline import request_file, write_new_file

        fields = self._activate_request(license_key, username, password, variables).json
        assert fields is not None
        write_new_file(
            path, request_file(self.credentials, fields, request="activation", now=self._now())
        )
        return os.fspath(path)

    def _activate_from_file(self, license_file: str | os.PathLike[str] | bytes) -> License:
        from licensor.client._offline import read_license

        content = (
            license_file
            if isinstance(license_file, bytes)
            else _read_file(license_file, "license file")
        )
        answer, identity = read_license(
            self.public_keys, self.credentials, content, hardware_id=self.hardware_id
        )
        try:
            body = self._license_answer(answer, identity)
            signed_now = server_date(body)
        except (UntrustedResponse, ValueError) as exc:
            raise InvalidLicenseFile(f"the license file does not verify: {exc}") from None
        details = body.get("product_details")
        if isinstance(details, dict) and details.get("short_code") not in (None, self.product):
            raise InvalidLicenseFile(
                f"the license file is for product {details.get('short_code')!r}, "
                f"not {self.product!r}"
            )
        # an expired or disabled license is refused before anything is stored
        evaluate(
            body,
            product=self.product,
            now=max(self._now(), signed_now),
            last_online_check=signed_now,
            checked_online=True,
        )
        with self.store.lock:
            return self._save_activation(answer, identity)

    def _write_deactivation_request(
        self, path: str | os.PathLike[str], variables: Mapping[str, Any] | None
    ) -> str:
        from licensor.client._offline import request_file, write_new_file

        stored = self._stored_for_online()
        fields = self._identity(stored)
        fields["sdk_ver"] = SDK_VERSION
        if variables:
            fields["variables"] = dict(variables)
        content = request_file(self.credentials, fields, request="deactivation", now=self._now())
        write_new_file(path, content)  # (durable before the license is removed)
        self._forget()
        return os.fspath(path)

    def offline_activation_request(
        self,
        path: str | os.PathLike[str],
        license_key: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        """Write the request file that activates this computer without internet; take it
        to a computer that has internet (the server's ``/offline`` page, or the vendor), and
        give the license file it turns into to ``activate_offline``. Returns the path."""
        return self._write_activation_request(path, license_key, username, password, variables)

    def activate_offline(self, license_file: str | os.PathLike[str] | bytes) -> License:
        """Store the license of a license file (its path, or its bytes) once it verifies:
        signed by this application's server, for this computer and these credentials, not
        expired. Raises ``InvalidLicenseFile``, ``WrongComputer``, ``LicenseExpired``."""
        return self._activate_from_file(license_file)

    def offline_deactivation_request(
        self, path: str | os.PathLike[str], *, variables: Mapping[str, Any] | None = None
    ) -> str:
        """Write the request file that frees this computer's seat without internet, then
        remove the stored license (only once the file is safely written). Returns the path."""
        return self._write_deactivation_request(path, variables)

    def _forget(self) -> None:
        with self.store.lock:
            self.store.delete()

    def _stored_for_online(self) -> StoredLicense:
        stored, _ = self._load_verified()
        return stored

    def stored_license(self) -> License | None:
        """The stored license as it stands now, offline, without raising for expiry or clock.

        ``None`` when nothing is activated. Still raises ``TamperedLicense`` and ``WrongComputer``.
        """
        try:
            state = self._offline_state()
        except NotActivated:
            return None
        return evaluate(
            state.body,
            product=self.product,
            now=state.trusted_now,
            last_online_check=state.last_online,
            checked_online=False,
            allow_expired=True,
        )

    def _needs_online(self, state: _OfflineState, force: bool) -> bool:
        if force or state.check_due or state.too_long or state.clock_set_back:
            return True
        return _is_expired(state)

    def _finish_offline(self, state: _OfflineState, reason: str | None) -> License:
        """Decide with what is stored, after an online check was not possible (or not needed)."""
        if state.clock_set_back:
            raise ClockTamperingDetected(
                "the computer's clock is earlier than a time already seen; correct the clock",
                now=state.now,
                high_water=state.trusted_now,
            )
        # Record the time even when the license is refused below: a clock set back later must
        # not bring an expired license back.
        self._advance_high_water(state.stored.hardware_id, state.trusted_now)
        seat_until = _floating_seat_until(state)
        if seat_until is not None and state.trusted_now > seat_until:
            raise OfflineTooLong(
                "a floating license needs the server to hold a seat (or a borrow: "
                "client.borrow(hours)); its seat was free again at "
                f"{seat_until:%Y-%m-%d %H:%M} UTC"
                + (f"; last attempt: {reason}" if reason else ""),
                last_online=state.last_online,
            )
        if state.too_long:
            raise OfflineTooLong(
                f"no successful online check since {state.last_online:%Y-%m-%d %H:%M} UTC "
                f"(limit {self.max_days_offline:g} days)"
                + (f"; last attempt: {reason}" if reason else ""),
                last_online=state.last_online,
            )
        return evaluate(
            state.body,
            product=self.product,
            now=state.trusted_now,
            last_online_check=state.last_online,
            checked_online=False,
            offline_reason=reason,
        )

    def _finish_online(self, checked: License) -> License:
        if checked.status == "expired":
            raise LicenseExpired(
                "the license has expired"
                + (f" on {checked.expires_at:%Y-%m-%d}" if checked.expires_at else ""),
                expired_at=checked.grace_ends_at or checked.expires_at,
            )
        state = self._offline_state()
        if state.clock_set_back:
            return self._finish_offline(state, None)
        return checked

    def _verdict(self, error: LicenseRefused) -> None:
        """A verdict on the license or the device removes the stored license, whichever call
        about it received the verdict (``check``, ``validate``, variables, ...): the server
        took the seat back, and no later offline ``validate`` may accept it."""
        if error.code in LICENSE_VERDICTS:
            self._forget()

    def _refusal_during_validate(self, error: LicenseRefused) -> str:
        """A verdict on the license (already removed) is raised, and so is a floating
        license's "no seat free"; a refusal of the request is like no answer."""
        if error.code in LICENSE_VERDICTS or isinstance(error, NoSeatAvailable):
            raise error
        return f"{error.code}: {error.message}"

    def _sso_url_request(
        self, customer_account_code: str, response_type: str, redirect_uri: str | None
    ) -> _Request:
        params = {
            "product": self.product,
            "customer_account_code": customer_account_code,
            "response_type": response_type,
        }
        if redirect_uri is not None:
            params["redirect_uri"] = redirect_uri
        return _Request("GET", "sso_url", params=params)

    def _sso_activate_request(
        self,
        customer_account_code: str,
        id_token: str | None,
        code: str | None,
        redirect_uri: str | None,
        nonce: str | None,
    ) -> _Request:
        if (id_token is None) == (code is None):
            raise ValueError("give either id_token or code")
        body: dict[str, Any] = {
            "hardware_id": self.hardware_id,
            "product": self.product,
            "customer_account_code": customer_account_code,
        }
        for name, value in (
            ("id_token", id_token),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("nonce", nonce),
        ):
            if value is not None:
                body[name] = value
        body.update(self._device_fields())

        return _Request("POST", "activate_license", json=body, idempotency_key=str(uuid.uuid4()))


def _license_id(stored: StoredLicense) -> int | None:
    """The id of the license a stored activation is of."""
    body = _json(stored.activation.body)
    found = body.get("id") if isinstance(body, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def _refusal(error: LicenseRefused) -> LicenseRefused:
    """The refusal to raise: ``NoSeatAvailable`` for a floating license's "no seat free"."""
    if error.code == "floating_not_available" and not isinstance(error, NoSeatAvailable):
        return NoSeatAvailable(error.message, error.status)
    return error


def _half_timeout(seat: License) -> float:
    minutes = seat.raw.get("floating_timeout")
    return 30.0 * (minutes if isinstance(minutes, int) and minutes > 0 else 5)


def _borrow_time(now: datetime, hours: float | None) -> str | None:
    if hours is None:
        return None
    if hours <= 0:
        raise ValueError("hours must be positive")
    return (now + timedelta(hours=hours)).astimezone(UTC).isoformat()


def _borrowed_until(answer: VerifiedAnswer) -> datetime:
    data = answer.data
    value = data.get("borrowed_until") if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise UntrustedResponse("unexpected borrow answer")
    return parse_iso_datetime(value)


def _floating_seat_until(state: _OfflineState) -> datetime | None:
    """Until when a floating license's seat is held without the server (the timeout after the
    last check, or the borrow's end); ``None`` for other licenses."""
    body = state.body
    if body.get("is_floating_cloud") is not True:
        return None
    minutes = body.get("floating_timeout")
    held = state.last_online + timedelta(
        minutes=minutes if isinstance(minutes, int) and minutes > 0 else 5
    )
    lent = body.get("borrowed_until")
    if body.get("is_borrowed") is True and isinstance(lent, str):
        with contextlib.suppress(ValueError):
            held = max(held, parse_iso_datetime(lent))
    return held


def _is_expired(state: _OfflineState) -> bool:
    try:
        evaluate(
            state.body,
            product="",
            now=state.trusted_now,
            last_online_check=state.last_online,
            checked_online=False,
        )
    except LicenseExpired:
        return True
    except Exception:  # any other problem is reported by the real evaluation
        return False
    return False


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(1024 * 1024)
    except OSError as exc:
        raise InvalidLicenseFile(f"the {what} cannot be read: {exc.strerror or exc}") from None


def _json(content: bytes) -> Any:
    import json

    return json.loads(content)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _unreachable(exc: Exception) -> ServerUnreachable:
    return ServerUnreachable(f"cannot reach the license server: {type(exc).__name__}: {exc}")


def _retry_after(error: ServerUnreachable, response: httpx.Response) -> None:
    value = response.headers.get("Retry-After")
    if value is not None:
        with contextlib.suppress(ValueError):
            error.retry_after = float(value)


def _sso_url_answer(answer: VerifiedAnswer) -> dict[str, Any]:
    if not isinstance(answer.data, dict) or not isinstance(answer.data.get("url"), str):
        raise UntrustedResponse("unexpected sso_url answer")
    return dict(answer.data)


def _sso_user(answer: VerifiedAnswer) -> str:
    user = answer.data.get("user") if isinstance(answer.data, dict) else None
    if not isinstance(user, dict) or not isinstance(user.get("email"), str):
        raise UntrustedResponse("the SSO activation names no license user")
    return str(user["email"])


class LicenseClient(_ClientCore):
    """Activate, check, deactivate and validate a license — synchronous.

    >>> client = LicenseClient("https://licensing.example.com", "myapp", [PEM],
    ...                        HmacCredentials(api_key, shared_key))
    >>> client.activate(license_key="ABCD-EFGH-IJKL-MNOP")   # once, online
    >>> client.validate()                                     # at every start, offline
    """

    def __init__(
        self,
        server: str,
        product: str,
        public_keys: PublicKeysLike,
        credentials: Credentials,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **options: Any,
    ) -> None:
        super().__init__(server, product, public_keys, credentials, **options)
        self._transport = transport
        self._sleep = sleep
        self._http: httpx.Client | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------------ transport

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=self.timeout, transport=self._transport)
        return self._http

    def _auth_headers(self, timeout: float | None) -> dict[str, str]:
        credentials = self.credentials
        if isinstance(credentials, HmacCredentials):
            return credentials.headers()
        token = self._tokens.current()
        if token is None:
            import httpx

            try:
                response = self._client().post(
                    self._token_url(credentials),
                    data=token_form(credentials),
                    headers={"Accept": "application/json"},
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                raise _unreachable(exc) from exc
            token = self._tokens.accept(response.status_code, _safe_json(response.content))
        return bearer_headers(token)

    def _send_once(self, request: _Request, timeout: float | None) -> VerifiedAnswer:
        import httpx

        for fresh_token in (False, True):
            try:
                response = self._client().request(
                    request.method,
                    f"{self.server}{API}/{request.path}",
                    params=request.params,
                    json=request.json,
                    headers=self._headers(request, self._auth_headers(timeout)),
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                raise _unreachable(exc) from exc
            try:
                return interpret(
                    self.public_keys, response.status_code, response.headers, response.content
                )
            except ServerUnreachable as exc:
                _retry_after(exc, response)
                raise
            except LicenseRefused as exc:
                if exc.code in _TOKEN_CODES and not fresh_token:
                    self._tokens.clear()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, request: _Request, timeout: float | None = None) -> VerifiedAnswer:
        for attempt in range(self.retries + 1):
            try:
                return self._send_once(request, timeout)
            except ServerUnreachable as exc:
                if attempt >= self.retries:
                    raise
                self._sleep(self._delay(attempt, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_about_stored(self, request: _Request, timeout: float | None = None) -> VerifiedAnswer:
        """``_send`` for a request about the stored license: a verdict removes it."""
        try:
            return self._send(request, timeout)
        except LicenseRefused as exc:
            self._verdict(exc)
            raise _refusal(exc) from None

    # ------------------------------------------------------------------ License API

    def activate(
        self,
        license_key: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        variables: Mapping[str, Any] | None = None,
        license_id: int | None = None,
        timeout: float | None = None,
    ) -> License:
        """Activate this computer online and store the computer-bound license."""
        request = self._activate_request(
            license_key, username, password, variables, license_id=license_id
        )
        identity = {"license_key": license_key, "username": username, "license_id": license_id}
        with self.store.lock:
            try:
                answer = self._send(request, timeout)
            except LicenseRefused as exc:
                if exc.code != "license_device_exists":
                    raise
                # Already active on the server (e.g. reinstalled): fetch its license instead.
                answer = self._send(self._check_request(identity), timeout)
            return self._save_activation(answer, identity)

    def check(self, *, timeout: float | None = None) -> License:
        """Check the stored license online; the answer is stored (status may be ``"expired"``)."""
        stored = self._stored_for_online()
        answer = self._send_about_stored(self._check_request(stored), timeout)
        return self._save_check(answer, stored)

    def sso_url(
        self,
        customer_account_code: str,
        *,
        response_type: str = "code",
        redirect_uri: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The customer's identity provider login URL: ``url``, ``state``, ``nonce`` and
        ``openid_configuration`` (single sign-on; see ``licensor.client.sso_activate``)."""
        request = self._sso_url_request(customer_account_code, response_type, redirect_uri)
        return _sso_url_answer(self._send(request, timeout))

    def activate_sso(
        self,
        customer_account_code: str,
        *,
        id_token: str | None = None,
        code: str | None = None,
        redirect_uri: str | None = None,
        nonce: str | None = None,
        timeout: float | None = None,
    ) -> License:
        """Activate with single sign-on credentials (``id_token`` or ``code``); later checks name
        the license user the server verified."""
        request = self._sso_activate_request(
            customer_account_code, id_token, code, redirect_uri, nonce
        )
        with self.store.lock:
            answer = self._send(request, timeout)
            return self._save_activation(answer, {"username": _sso_user(answer)})

    def validate(self, *, online: bool = True, force_check: bool = False) -> License:
        """The call to make at every start: offline, with an online check only when one is due.

        Raises a ``LicenseNotValid`` subclass (or ``LicenseRefused`` when the server withdrew the
        license) — never returns an unusable license.
        """
        state = self._offline_state()
        reason: str | None = None
        if online and self._needs_online(state, force_check):
            try:
                return self._finish_online(self.check())
            except NoTrustedAnswer as exc:
                reason = str(exc)
            except LicenseRefused as exc:
                reason = self._refusal_during_validate(exc)
        return self._finish_offline(state, reason)

    def deactivate(self, *, timeout: float | None = None) -> None:
        """Release this computer's activation on the server and remove the stored license."""
        stored = self._stored_for_online()
        request = _Request("POST", "deactivate_license", json=self._identity(stored))
        try:
            answer = self._send(request, timeout)
        except LicenseRefused as exc:
            if exc.code != "device_not_found":
                self._verdict(exc)
                raise
        else:
            if answer.data != "license_deactivated":
                raise UntrustedResponse("unexpected deactivation answer")
        self._forget()

    def activate_bundle(
        self,
        license_key: str,
        *,
        variables: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, License]:
        """Activate this computer on every product of the bundle ``product`` (all of them or
        none) and store each product's license: a client of one of them
        (``LicenseClient(..., product="editor", bundle="suite")``) then validates it at
        start-up as any other. The licenses by product code."""
        request = self._activate_request(license_key, None, None, variables, "activate_bundle")
        codes = self._bundle_products(self._send(request, timeout))
        identity = {"license_key": license_key, "username": None}
        licenses = {}
        for code in codes:
            sub = self._sub_client(code)
            with sub.store.lock:
                answer = sub._send(sub._check_request(identity), timeout)
                licenses[code] = sub._save_activation(answer, identity)
        return licenses

    def deactivate_bundle(self, license_key: str, *, timeout: float | None = None) -> None:
        """Free this computer's seat on every product of the bundle and remove their stored
        licenses."""
        codes = self._bundle_products(
            self._send(self._bundle_request("check_bundle", license_key), timeout)
        )
        answer = self._send(self._bundle_request("deactivate_bundle", license_key), timeout)
        if answer.data != "license_deactivated":
            raise UntrustedResponse("unexpected deactivation answer")
        for code in codes:
            self._sub_client(code)._forget()

    def change_password(
        self, username: str, password: str, new_password: str, *, timeout: float | None = None
    ) -> None:
        """Give the license user ``username`` a new password (``LicenseRefused``:
        ``invalid_credentials`` for a wrong one, ``change_password_not_allowed``)."""
        answer = self._send(
            self._change_password_request(username, password, new_password), timeout
        )
        if answer.data != "password_changed":
            raise UntrustedResponse("unexpected answer to a password change")

    def user_licenses(
        self, username: str, password: str, *, timeout: float | None = None
    ) -> list[UserLicense]:
        """The licenses of this product the user ``username`` holds, to pick one from (its
        ``id`` then goes to ``activate(..., license_id=...)``)."""
        answer = self._send(self._user_licenses_request(username, password), timeout)
        return user_licenses_from(answer.data)

    def trial(
        self, *, email: str | None = None, timeout: float | None = None, **fields: str
    ) -> Trial:
        """Ask the server for a trial of this product on this computer."""
        params: dict[str, Any] = {"hardware_id": self.hardware_id, "product": self.product}
        if email is not None:
            params["email"] = email
        params.update(fields)
        return trial_from(self._send(_Request("GET", "trial_key", params=params), timeout).data)

    def add_consumption(self, count: int = 1, *, timeout: float | None = None) -> Consumption:
        """Report ``count`` units used (negative: a refund, where the license allows it). The
        report is kept on this computer first and sent with any still waiting, each counted
        once however often it is sent (``_consumption``); while the server cannot be reached
        they wait (``pending``). A refusal (``LicenseRefused``: not enough left, ...) is raised
        and that report dropped."""
        stored = self._stored_for_online()
        with self.store.lock:
            reports = self._journal.add(count, self._now())
            return self._send_reports(stored, reports, timeout)

    def send_pending_consumptions(self, *, timeout: float | None = None) -> Consumption:
        """Send the reports still kept on this computer (``add_consumption`` does it too)."""
        stored = self._stored_for_online()
        with self.store.lock:
            return self._send_reports(stored, self._journal.load(), timeout)

    def check_feature(
        self, code: str, *, include_expired: bool = False, timeout: float | None = None
    ) -> Feature:
        """Ask the server for the license's feature ``code`` on this computer (its
        consumption total, ...); ``LicenseRefused`` (``invalid_license_feature_code``,
        ``license_feature_expired``) when the license does not have it."""
        request = self._feature_request(code, include_expired)
        return feature_from(self._send_about_stored(request, timeout).data)

    def add_feature_consumption(
        self, code: str, count: int = 1, *, timeout: float | None = None
    ) -> Consumption:
        """Report ``count`` units of the consumption feature ``code`` (negative: a refund,
        where the feature allows it), online; ``LicenseRefused``
        (``feature_not_enough_consumptions``, ...) when it is refused."""
        request = self._feature_consumption_request(code, count)
        return Consumption.of(self._send_about_stored(request, timeout).data, 0)

    def versions(
        self, *, env: str | None = None, channel: str | None = None, timeout: float | None = None
    ) -> list[Release]:
        """The product's versions this license covers (released before its maintenance or
        validity end), oldest first; ``env`` (``linux``, ``win64``...) and ``channel`` narrow
        them."""
        request = self._release_request("versions", env, channel)
        return releases_from(self._send_about_stored(request, timeout).data)

    def installation_file(
        self,
        version: str | None = None,
        *,
        env: str | None = None,
        channel: str | None = None,
        timeout: float | None = None,
    ) -> InstallationFile:
        """Where to download ``version`` (``None``: the latest this license covers), with its
        MD5 hash and size; ``LicenseRefused`` (``version_not_found``) when it is not covered."""
        request = self._release_request("installation_file", env, channel, version)
        return installation_file_from(self._send_about_stored(request, timeout).data)

    def release_feature(self, code: str, *, timeout: float | None = None) -> None:
        """Free this computer's seat of the floating feature ``code`` at once."""
        request = _Request("POST", "floating/feature_release", json=self._feature_body(code))
        self._send_about_stored(request, timeout)

    def borrow_feature(
        self, code: str, hours: float | None = None, *, timeout: float | None = None
    ) -> datetime:
        """Keep this computer's seat of the floating feature ``code`` for ``hours``
        (``None``: as long as the feature allows); returns when the borrow ends."""
        request = self._feature_borrow_request(code, hours)
        return _borrowed_until(self._send_about_stored(request, timeout))

    @contextlib.contextmanager
    def floating_seat(self, *, refresh_every: float | None = None) -> Iterator[License]:
        """Hold a seat of a floating license while the block runs: a check takes it
        (``NoSeatAvailable`` when every seat is in use), a background thread checks again
        every ``refresh_every`` seconds (default: half the license's timeout) to keep it, and
        it is released when the block ends -- normally, on an exception, or at interpreter
        exit. A refresh that cannot reach the server is tried again at the next interval."""
        seat = self.check()
        interval = refresh_every or _half_timeout(seat)
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(NoTrustedAnswer, LicenseRefused):
                    self.check()

        def release_once() -> None:
            atexit.unregister(release_once)
            stop.set()
            with contextlib.suppress(NoTrustedAnswer, LicenseRefused, NotActivated):
                self.release_floating()

        thread = threading.Thread(target=refresh, name="licensor-floating-seat", daemon=True)
        atexit.register(release_once)
        thread.start()
        try:
            yield seat
        finally:
            stop.set()
            thread.join(timeout=interval + self.timeout)
            release_once()

    def release_floating(self, *, timeout: float | None = None) -> None:
        """Free this computer's floating seat at once (ends a borrow too)."""
        body = self._identity(self._stored_for_online())
        self._send_about_stored(_Request("POST", "floating/release", json=body), timeout)

    def borrow(self, hours: float | None = None, *, timeout: float | None = None) -> datetime:
        """Keep this computer's floating seat for ``hours`` (``None``: as long as the license
        allows) to work offline meanwhile; ``validate()`` accepts the license offline until
        then. Returns when the borrow ends."""
        stored = self._stored_for_online()
        body = self._identity(stored)
        body["borrowed_until"] = _borrow_time(self._now(), hours)
        until = _borrowed_until(
            self._send_about_stored(_Request("POST", "floating/borrow", json=body), timeout)
        )
        self.check(timeout=timeout)  # (the stored answer says borrowed, for validate())
        return until

    def _send_reports(
        self, stored: StoredLicense, reports: list[Report], timeout: float | None
    ) -> Consumption:
        journal, answer = self._journal, None
        while reports:
            try:
                answer = self._send_about_stored(
                    self._consumption_request(stored, reports[0]), timeout
                ).data
            except NoTrustedAnswer:
                return Consumption.of(answer, len(reports))
            except LicenseRefused:
                journal.save(reports[1:])
                raise
            reports = reports[1:]
            journal.save(reports)
        return Consumption.of(answer, 0)

    def set_variables(
        self, variables: Mapping[str, str | int | float | bool], *, timeout: float | None = None
    ) -> list[DeviceVariable]:
        body = self._identity(self._stored_for_online())
        body["variables"] = dict(variables)
        answer = self._send_about_stored(
            _Request("POST", "track_device_variables", json=body), timeout
        )
        return variables_from(answer.data)

    def variables(self, *, timeout: float | None = None) -> list[DeviceVariable]:
        params = self._identity(self._stored_for_online())
        answer = self._send_about_stored(
            _Request("GET", "get_device_variables", params=params), timeout
        )
        return variables_from(answer.data)

    def product_details(
        self,
        *,
        include_custom_fields: bool = False,
        include_latest_version: bool = False,
        timeout: float | None = None,
    ) -> ProductDetails:
        params = {
            "product": self.product,
            "include_custom_fields": _query_value(include_custom_fields),
            "include_latest_version": _query_value(include_latest_version),
        }
        answer = self._send(_Request("GET", "product_details", params=params), timeout)
        return product_details_from(answer.data)


class AsyncLicenseClient(_ClientCore):
    """The same methods as :class:`LicenseClient`, as coroutines (file work stays synchronous)."""

    def __init__(
        self,
        server: str,
        product: str,
        public_keys: PublicKeysLike,
        credentials: Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(server, product, public_keys, credentials, **options)
        self._transport = transport
        self._sleep = sleep
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
        return self._http

    async def _auth_headers(self, timeout: float | None) -> dict[str, str]:
        credentials = self.credentials
        if isinstance(credentials, HmacCredentials):
            return credentials.headers()
        token = self._tokens.current()
        if token is None:
            import httpx

            try:
                response = await self._client().post(
                    self._token_url(credentials),
                    data=token_form(credentials),
                    headers={"Accept": "application/json"},
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                raise _unreachable(exc) from exc
            token = self._tokens.accept(response.status_code, _safe_json(response.content))
        return bearer_headers(token)

    async def _send_once(self, request: _Request, timeout: float | None) -> VerifiedAnswer:
        import httpx

        for fresh_token in (False, True):
            try:
                response = await self._client().request(
                    request.method,
                    f"{self.server}{API}/{request.path}",
                    params=request.params,
                    json=request.json,
                    headers=self._headers(request, await self._auth_headers(timeout)),
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                raise _unreachable(exc) from exc
            try:
                return interpret(
                    self.public_keys, response.status_code, response.headers, response.content
                )
            except ServerUnreachable as exc:
                _retry_after(exc, response)
                raise
            except LicenseRefused as exc:
                if exc.code in _TOKEN_CODES and not fresh_token:
                    self._tokens.clear()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, request: _Request, timeout: float | None = None) -> VerifiedAnswer:
        for attempt in range(self.retries + 1):
            try:
                return await self._send_once(request, timeout)
            except ServerUnreachable as exc:
                if attempt >= self.retries:
                    raise
                delay = self._delay(attempt, exc)
                if self._sleep is not None:
                    await self._sleep(delay)
                else:
                    import asyncio

                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_about_stored(
        self, request: _Request, timeout: float | None = None
    ) -> VerifiedAnswer:
        """``_send`` for a request about the stored license: a verdict removes it."""
        try:
            return await self._send(request, timeout)
        except LicenseRefused as exc:
            self._verdict(exc)
            raise _refusal(exc) from None

    async def activate(
        self,
        license_key: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        variables: Mapping[str, Any] | None = None,
        license_id: int | None = None,
        timeout: float | None = None,
    ) -> License:
        request = self._activate_request(
            license_key, username, password, variables, license_id=license_id
        )
        identity = {"license_key": license_key, "username": username, "license_id": license_id}
        import asyncio

        await asyncio.to_thread(self.store.lock.acquire)
        try:
            try:
                answer = await self._send(request, timeout)
            except LicenseRefused as exc:
                if exc.code != "license_device_exists":
                    raise
                check = self._check_request(identity)
                answer = await self._send(check, timeout)
            return self._save_activation(answer, identity)
        finally:
            self.store.lock.release()

    async def check(self, *, timeout: float | None = None) -> License:
        stored = self._stored_for_online()
        answer = await self._send_about_stored(self._check_request(stored), timeout)
        return self._save_check(answer, stored)

    async def sso_url(
        self,
        customer_account_code: str,
        *,
        response_type: str = "code",
        redirect_uri: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        request = self._sso_url_request(customer_account_code, response_type, redirect_uri)
        return _sso_url_answer(await self._send(request, timeout))

    async def activate_sso(
        self,
        customer_account_code: str,
        *,
        id_token: str | None = None,
        code: str | None = None,
        redirect_uri: str | None = None,
        nonce: str | None = None,
        timeout: float | None = None,
    ) -> License:
        request = self._sso_activate_request(
            customer_account_code, id_token, code, redirect_uri, nonce
        )
        import asyncio

        await asyncio.to_thread(self.store.lock.acquire)
        try:
            answer = await self._send(request, timeout)
            return self._save_activation(answer, {"username": _sso_user(answer)})
        finally:
            self.store.lock.release()

    async def validate(self, *, online: bool = True, force_check: bool = False) -> License:
        state = self._offline_state()
        reason: str | None = None
        if online and self._needs_online(state, force_check):
            try:
                return self._finish_online(await self.check())
            except NoTrustedAnswer as exc:
                reason = str(exc)
            except LicenseRefused as exc:
                reason = self._refusal_during_validate(exc)
        return self._finish_offline(state, reason)

    async def deactivate(self, *, timeout: float | None = None) -> None:
        stored = self._stored_for_online()
        request = _Request("POST", "deactivate_license", json=self._identity(stored))
        try:
            answer = await self._send(request, timeout)
        except LicenseRefused as exc:
            if exc.code != "device_not_found":
                self._verdict(exc)
                raise
        else:
            if answer.data != "license_deactivated":
                raise UntrustedResponse("unexpected deactivation answer")
        self._forget()

    async def activate_bundle(
        self,
        license_key: str,
        *,
        variables: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, License]:
        request = self._activate_request(license_key, None, None, variables, "activate_bundle")
        codes = self._bundle_products(await self._send(request, timeout))
        identity = {"license_key": license_key, "username": None}
        licenses = {}
        import asyncio

        for code in codes:
            sub = self._sub_client(code)
            await asyncio.to_thread(sub.store.lock.acquire)
            try:
                answer = await sub._send(sub._check_request(identity), timeout)
                licenses[code] = sub._save_activation(answer, identity)
            finally:
                sub.store.lock.release()
        return licenses

    async def deactivate_bundle(self, license_key: str, *, timeout: float | None = None) -> None:
        checked = await self._send(self._bundle_request("check_bundle", license_key), timeout)
        codes = self._bundle_products(checked)
        answer = await self._send(self._bundle_request("deactivate_bundle", license_key), timeout)
        if answer.data != "license_deactivated":
            raise UntrustedResponse("unexpected deactivation answer")
        for code in codes:
            self._sub_client(code)._forget()

    async def change_password(
        self, username: str, password: str, new_password: str, *, timeout: float | None = None
    ) -> None:
        request = self._change_password_request(username, password, new_password)
        answer = await self._send(request, timeout)
        if answer.data != "password_changed":
            raise UntrustedResponse("unexpected answer to a password change")

    async def user_licenses(
        self, username: str, password: str, *, timeout: float | None = None
    ) -> list[UserLicense]:
        answer = await self._send(self._user_licenses_request(username, password), timeout)
        return user_licenses_from(answer.data)

    async def trial(
        self, *, email: str | None = None, timeout: float | None = None, **fields: str
    ) -> Trial:
        params: dict[str, Any] = {"hardware_id": self.hardware_id, "product": self.product}
        if email is not None:
            params["email"] = email
        params.update(fields)
        answer = await self._send(_Request("GET", "trial_key", params=params), timeout)
        return trial_from(answer.data)

    async def set_variables(
        self, variables: Mapping[str, str | int | float | bool], *, timeout: float | None = None
    ) -> list[DeviceVariable]:
        body = self._identity(self._stored_for_online())
        body["variables"] = dict(variables)
        answer = await self._send_about_stored(
            _Request("POST", "track_device_variables", json=body), timeout
        )
        return variables_from(answer.data)

    async def add_consumption(self, count: int = 1, *, timeout: float | None = None) -> Consumption:
        """``LicenseClient.add_consumption``."""
        stored = self._stored_for_online()
        with self.store.lock:
            reports = self._journal.add(count, self._now())
            return await self._send_reports(stored, reports, timeout)

    async def send_pending_consumptions(self, *, timeout: float | None = None) -> Consumption:
        """``LicenseClient.send_pending_consumptions``."""
        stored = self._stored_for_online()
        with self.store.lock:
            return await self._send_reports(stored, self._journal.load(), timeout)

    async def check_feature(
        self, code: str, *, include_expired: bool = False, timeout: float | None = None
    ) -> Feature:
        """``LicenseClient.check_feature``."""
        request = self._feature_request(code, include_expired)
        return feature_from((await self._send_about_stored(request, timeout)).data)

    async def add_feature_consumption(
        self, code: str, count: int = 1, *, timeout: float | None = None
    ) -> Consumption:
        """``LicenseClient.add_feature_consumption``."""
        request = self._feature_consumption_request(code, count)
        return Consumption.of((await self._send_about_stored(request, timeout)).data, 0)

    async def versions(
        self, *, env: str | None = None, channel: str | None = None, timeout: float | None = None
    ) -> list[Release]:
        """``LicenseClient.versions``."""
        request = self._release_request("versions", env, channel)
        return releases_from((await self._send_about_stored(request, timeout)).data)

    async def installation_file(
        self,
        version: str | None = None,
        *,
        env: str | None = None,
        channel: str | None = None,
        timeout: float | None = None,
    ) -> InstallationFile:
        """``LicenseClient.installation_file``."""
        request = self._release_request("installation_file", env, channel, version)
        return installation_file_from((await self._send_about_stored(request, timeout)).data)

    async def release_feature(self, code: str, *, timeout: float | None = None) -> None:
        """``LicenseClient.release_feature``."""
        request = _Request("POST", "floating/feature_release", json=self._feature_body(code))
        await self._send_about_stored(request, timeout)

    async def borrow_feature(
        self, code: str, hours: float | None = None, *, timeout: float | None = None
    ) -> datetime:
        """``LicenseClient.borrow_feature``."""
        request = self._feature_borrow_request(code, hours)
        return _borrowed_until(await self._send_about_stored(request, timeout))

    @contextlib.asynccontextmanager
    async def floating_seat(self, *, refresh_every: float | None = None) -> AsyncIterator[License]:
        """``LicenseClient.floating_seat``, refreshed by a task of the running event loop."""
        import asyncio

        seat = await self.check()
        interval = refresh_every or _half_timeout(seat)

        async def refresh() -> None:
            while True:
                await asyncio.sleep(interval)
                with contextlib.suppress(NoTrustedAnswer, LicenseRefused):
                    await self.check()

        task = asyncio.get_running_loop().create_task(refresh())
        try:
            yield seat
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(NoTrustedAnswer, LicenseRefused, NotActivated):
                await self.release_floating()

    async def release_floating(self, *, timeout: float | None = None) -> None:
        """``LicenseClient.release_floating``."""
        body = self._identity(self._stored_for_online())
        await self._send_about_stored(_Request("POST", "floating/release", json=body), timeout)

    async def borrow(self, hours: float | None = None, *, timeout: float | None = None) -> datetime:
        """``LicenseClient.borrow``."""
        body = self._identity(self._stored_for_online())
        body["borrowed_until"] = _borrow_time(self._now(), hours)
        sent = await self._send_about_stored(
            _Request("POST", "floating/borrow", json=body), timeout
        )
        until = _borrowed_until(sent)
        await self.check(timeout=timeout)
        return until

    async def _send_reports(
        self, stored: StoredLicense, reports: list[Report], timeout: float | None
    ) -> Consumption:
        journal, answer = self._journal, None
        while reports:
            try:
                sent = await self._send_about_stored(
                    self._consumption_request(stored, reports[0]), timeout
                )
            except NoTrustedAnswer:
                return Consumption.of(answer, len(reports))
            except LicenseRefused:
                journal.save(reports[1:])
                raise
            answer = sent.data
            reports = reports[1:]
            journal.save(reports)
        return Consumption.of(answer, 0)

    async def variables(self, *, timeout: float | None = None) -> list[DeviceVariable]:
        params = self._identity(self._stored_for_online())
        answer = await self._send_about_stored(
            _Request("GET", "get_device_variables", params=params), timeout
        )
        return variables_from(answer.data)

    async def product_details(
        self,
        *,
        include_custom_fields: bool = False,
        include_latest_version: bool = False,
        timeout: float | None = None,
    ) -> ProductDetails:
        params = {
            "product": self.product,
            "include_custom_fields": _query_value(include_custom_fields),
            "include_latest_version": _query_value(include_latest_version),
        }
        answer = await self._send(_Request("GET", "product_details", params=params), timeout)
        return product_details_from(answer.data)


def _safe_json(content: bytes) -> Any:
    try:
        return _json(content)
    except ValueError:
        return None
