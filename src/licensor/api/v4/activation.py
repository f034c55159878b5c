"""``POST /api/v4/activate_license`` and ``/deactivate_license``: the License API front of
``services/activation.py``, without the framework in the way.

Every request to these paths is answered here -- the activation and its refusals alike, in
the documented evaluation order: authentication, the Idempotency-Key header, the body, the
rate limits (a refusal that reveals a wrong guess is counted), single sign-on, then the use
case in one short write transaction of prepared statements (``Database.fast_write``), its
answer rendered and signed after the commit, outside the write lock, over its exact bytes (as
``SignResponses`` signs the other endpoints). The FastAPI routes of these paths
(``endpoints.py``) call ``respond`` too: they answer a body sent without ``Content-Length``,
and every request when ``LICENSOR_FAST_ACTIVATION`` is off, the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial

import anyio.to_thread
from fastapi import Depends, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licensor.api.errors import error_parts, failure_parts, refusal_parts
from licensor.api.middleware import accepted_algorithm
from licensor.api.state import AppState, app_state
from licensor.api.v4 import offline, schemas
from licensor.api.v4.endpoints import (
    body_doc,
    checked_idempotency_key,
    device_info,
    failure_buckets,
    header_caller,
    hmac_caller_of,
    identity_ref,
    license_ref,
    parse_json,
    raw_body,
    route,
    sso_user,
    variables_as_text,
)
from licensor.core.errors import LicensorError
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import (
    activation,
    auth,
    bundles,
    consumption,
    floating,
    license_features,
    licensing,
    rate_limit,
    seats,
)
from licensor.services.context import Caller
from licensor.store.db import WriterBusy

log = logging.getLogger("licensor.api")

ACTIVATE_PATHS = frozenset({"/api/v4/activate_license", "/api/v4/activate_license/"})
BUNDLE_PATHS = frozenset({"/api/v4/activate_bundle", "/api/v4/activate_bundle/"})
DEACTIVATE_PATHS = frozenset({"/api/v4/deactivate_license", "/api/v4/deactivate_license/"})
CONSUME_PATHS = frozenset({"/api/v4/add_consumption", "/api/v4/add_consumption/"})
FEATURE_CONSUME_PATHS = frozenset(
    {"/api/v4/add_feature_consumption", "/api/v4/add_feature_consumption/"}
)
RELEASE_PATHS = frozenset({"/api/v4/floating/release", "/api/v4/floating/release/"})
BORROW_PATHS = frozenset({"/api/v4/floating/borrow", "/api/v4/floating/borrow/"})
FEATURE_RELEASE_PATHS = frozenset(
    {"/api/v4/floating/feature_release", "/api/v4/floating/feature_release/"}
)
FEATURE_BORROW_PATHS = frozenset(
    {"/api/v4/floating/feature_borrow", "/api/v4/floating/feature_borrow/"}
)
# request files sent as the body itself (multipart forms go to the routes)
OFFLINE_PATHS = {
    "/api/v4/activate_offline": "activation",
    "/api/v4/activate_offline/": "activation",
    "/api/v4/deactivate_offline": "deactivation",
    "/api/v4/deactivate_offline/": "deactivation",
}
_PATHS = (
    ACTIVATE_PATHS
    | BUNDLE_PATHS
    | DEACTIVATE_PATHS
    | CONSUME_PATHS
    | FEATURE_CONSUME_PATHS
    | RELEASE_PATHS
    | BORROW_PATHS
    | FEATURE_RELEASE_PATHS
    | FEATURE_BORROW_PATHS
    | OFFLINE_PATHS.keys()
)
# what each path asks for, and the schema of its body
_USES: dict[str, tuple[str, type[schemas.LicenseIdentity]]] = {
    **dict.fromkeys(ACTIVATE_PATHS, ("activate", schemas.ActivateRequest)),
    **dict.fromkeys(BUNDLE_PATHS, ("activate", schemas.ActivateBundleRequest)),
    **dict.fromkeys(DEACTIVATE_PATHS, ("deactivate", schemas.DeactivateRequest)),
    **dict.fromkeys(CONSUME_PATHS, ("consume", schemas.AddConsumptionRequest)),
    **dict.fromkeys(FEATURE_CONSUME_PATHS, ("consume", schemas.AddFeatureConsumptionRequest)),
    **dict.fromkeys(RELEASE_PATHS, ("release", schemas.FloatingReleaseRequest)),
    **dict.fromkeys(BORROW_PATHS, ("borrow", schemas.FloatingBorrowRequest)),
    **dict.fromkeys(FEATURE_RELEASE_PATHS, ("release", schemas.FloatingFeatureReleaseRequest)),
    **dict.fromkeys(FEATURE_BORROW_PATHS, ("borrow", schemas.FloatingFeatureBorrowRequest)),
}
# the requests these paths take, and what their write transaction gives back
Body = (
    schemas.ActivateRequest
    | schemas.DeactivateRequest
    | schemas.AddConsumptionRequest
    | schemas.AddFeatureConsumptionRequest
    | schemas.FloatingReleaseRequest
    | schemas.FloatingBorrowRequest
    | schemas.FloatingFeatureReleaseRequest
    | schemas.FloatingFeatureBorrowRequest
)
# (bytes: an answer made in the transaction, as it is)
Written = activation.Activated | bundles.Activations | consumption.Consumed | bytes | None
_DEACTIVATED = compact_json("license_deactivated")

# status, body, headers (without the signature headers)
Answer = tuple[int, bytes, dict[str, str]]
# the same, signed
Signed = tuple[int, bytes, dict[str, str]]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A parsed, authenticated request (nothing written yet)."""

    use: str  # "activate", "deactivate", "consume", "release" or "borrow"
    who: Caller | seats.Credentials
    data: Body
    ref: licensing.LicenseRef
    limits: seats.RateLimits
    now: datetime
    algorithm: SignatureAlgorithm
    idempotency_key: str | None
    # single sign-on, a password to verify or an OAuth token: work that must not hold the
    # event loop (an identity provider over the network, Argon2, the ORM)
    slow: bool
    # a request file sent as the body (``who``, ``data``, ``ref`` and ``limits`` are its)
    file: offline.FileRequest | None = None

    @property
    def activating(self) -> bool:
        return self.use == "activate"


class _Refused(Exception):
    """A refusal with what is needed to count it in the rate limits."""

    def __init__(self, error: LicensorError, prepared: _Prepared | None) -> None:
        self.error = error
        self.prepared = prepared


def _headers(scope_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    wanted = {b"authorization", b"date", b"idempotency-key", b"licensor-accept-signature"}
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope_headers
        if name in wanted
    }


def _multipart(scope_headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name == b"content-type" and value.lower().startswith(b"multipart/form-data")
        for name, value in scope_headers
    )


def _algorithm(headers: Mapping[str, str]) -> SignatureAlgorithm:
    return accepted_algorithm(headers.get("licensor-accept-signature", ""))


def _replayed(replayed: bool) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if replayed else {}


def _signs_on(data: Body) -> bool:
    """Whether the request names its license by single sign-on."""
    return isinstance(data, schemas.SsoFields) and bool(
        data.customer_account_code or data.id_token or data.code
    )


def borrow_time(text: str | None) -> datetime | None:
    """``borrowed_until`` as sent (v4 §3.12: ``2024-09-27T23:30:48.016Z``,
    ``2024-09-27 23:30:48.016``, ``2024-09-27 23:30``, ``2024-09-27``; UTC unless it says
    otherwise), or ``borrow_until_not_valid``."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # (OverflowError: a zone that moves it past year 1)
        raise LicensorError("borrow_until_not_valid") from None


def _password(data: Body) -> str | None:
    return (
        data.password
        if isinstance(data, schemas.DeactivateRequest | schemas.ActivateRequest)
        else None
    )


def _fingerprint(endpoint: str, data: Body, prepared: _Prepared) -> str:
    """What an Idempotency-Key's record remembers of its request ("" without a key)."""
    if not prepared.idempotency_key:
        return ""
    return licensing.request_fingerprint(endpoint, data.model_dump(mode="json"))


def _write_activation(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.ActivateRequest)
    return activation.activate(
        tx,
        state.keys,
        p.who,
        p.ref,
        device_info(data),
        p.limits,
        now=p.now,
        variables=variables_as_text(data.variables),
        algorithm=p.algorithm,
        idempotency_key=p.idempotency_key,
        request_hash=_fingerprint("activate_license", data, p),
    )


def _write_bundle(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.ActivateBundleRequest)
    return bundles.activate(
        tx,
        state.keys,
        p.who,
        p.ref,
        device_info(data),
        p.limits,
        now=p.now,
        variables=variables_as_text(data.variables),
        algorithm=p.algorithm,
    )


def _write_deactivation(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.DeactivateRequest)
    activation.deactivate(
        tx, state.keys, p.who, p.ref, p.limits, now=p.now, consumptions=data.consumptions
    )
    return None


def _write_consumption(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.AddConsumptionRequest)
    report = consumption.Report(
        count=data.consumptions,
        allow_overages=data.allow_overages,
        max_overages=data.max_overages,
        event=data.event[0] if data.event else "consumption_add",
    )
    return consumption.add_consumption(
        tx,
        state.keys,
        p.who,
        p.ref,
        report,
        p.limits,
        now=p.now,
        idempotency_key=p.idempotency_key,
        request_hash=_fingerprint("add_consumption", data, p),
    )


def _write_feature_consumption(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.AddFeatureConsumptionRequest)
    report = consumption.Report(
        count=data.consumptions, event=data.event[0] if data.event else "consumption_add"
    )
    return license_features.add_feature_consumption(
        tx,
        state.keys,
        p.who,
        p.ref,
        data.feature,
        report,
        p.limits,
        now=p.now,
        idempotency_key=p.idempotency_key,
        request_hash=_fingerprint("add_feature_consumption", data, p),
    )


def _write_release(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    return floating.release(tx, state.keys, p.who, p.ref, p.limits, now=p.now)


def _write_borrow(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.FloatingBorrowRequest)
    until = borrow_time(data.borrowed_until)
    return floating.borrow(tx, state.keys, p.who, p.ref, until, p.limits, now=p.now)


def _write_feature_release(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.FloatingFeatureReleaseRequest)
    return floating.feature_release(tx, state.keys, p.who, p.ref, data.feature, p.limits, now=p.now)


def _write_feature_borrow(tx: seats.Transaction, state: AppState, p: _Prepared) -> Written:
    data = p.data
    assert isinstance(data, schemas.FloatingFeatureBorrowRequest)
    until = borrow_time(data.borrowed_until)
    return floating.feature_borrow(
        tx, state.keys, p.who, p.ref, data.feature, until, p.limits, now=p.now
    )


# each request's write transaction, by the schema of its body
_WRITES: dict[type[Body], Callable[[seats.Transaction, AppState, _Prepared], Written]] = {
    schemas.ActivateRequest: _write_activation,
    schemas.ActivateBundleRequest: _write_bundle,
    schemas.DeactivateRequest: _write_deactivation,
    schemas.AddConsumptionRequest: _write_consumption,
    schemas.AddFeatureConsumptionRequest: _write_feature_consumption,
    schemas.FloatingReleaseRequest: _write_release,
    schemas.FloatingBorrowRequest: _write_borrow,
    schemas.FloatingFeatureReleaseRequest: _write_feature_release,
    schemas.FloatingFeatureBorrowRequest: _write_feature_borrow,
}


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class ActivationFront:
    """The ASGI layer of these paths. ``threads`` >= 1: each request in a thread of this
    layer's own (at most ``threads`` at once). 0: on the event loop, where only waiting for
    the write lock and slow requests (``_Prepared.slow``) go to a thread (``_on_the_loop``)."""

    def __init__(self, app: ASGIApp, state: Callable[[], AppState], threads: int = 2) -> None:
        self.app = app
        self.state = state
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None
        self._loop_lock: anyio.Lock | None = None
        # API key -> its company, as found by an earlier request (only a hint: see prepare)
        self._companies: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _PATHS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        offline_kind = OFFLINE_PATHS.get(path)
        if offline_kind is not None and _multipart(scope["headers"]):
            await self.app(scope, receive, send)  # (the route parses the form)
            return
        state = self.state()
        body, messages = await self._read_body(scope, receive, state.settings.max_body_bytes)
        if body is None:  # the route answers (LimitBody refuses what is too large)
            await self.app(scope, _replay(messages, receive), send)
            return
        headers = _headers(scope["headers"])
        client = scope.get("client")
        host = client[0] if client else None
        if self.threads == 0:
            signed = await self._on_the_loop(state, path, headers, body, host)
        else:
            if self._limiter is None:  # (created on the server's event loop)
                self._limiter = anyio.CapacityLimiter(self.threads)
            found = await anyio.to_thread.run_sync(
                self.prepared_or_refused, state, path, headers, body, host, limiter=self._limiter
            )
            if not isinstance(found, _Prepared):
                signed = found
            else:  # (a slow request waits in the shared request threads, not in these)
                limiter = None if found.slow else self._limiter
                signed = await anyio.to_thread.run_sync(self.rest, state, found, limiter=limiter)
        status, content, response_headers = signed
        raw: list[tuple[bytes, bytes]] = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        raw.extend((k.lower().encode(), v.encode()) for k, v in response_headers.items())
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    @staticmethod
    async def _read_body(
        scope: Scope, receive: Receive, limit: int
    ) -> tuple[bytes | None, list[Message]]:
        """The whole body, or ``None`` when the route must see it (no or a too large
        ``Content-Length``: ``LimitBody`` refuses it there), with the messages read."""
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
        messages: list[Message] = []
        if length is None or not length.isdigit() or int(length) > limit:
            return None, messages
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None, messages
            chunk = message.get("body", b"")
            chunks.append(chunk)
            received += len(chunk)
            if received > limit:
                return None, messages
            if not message.get("more_body", False):
                return b"".join(chunks), messages

    async def _on_the_loop(
        self, state: AppState, path: str, headers: dict[str, str], body: bytes, host: str | None
    ) -> Signed:
        """The whole request on the event loop, one write transaction at a time per process.
        Waiting for another process's transaction (the writer queue's ``flock``: a fraction of
        a millisecond) blocks the loop; waiting for another kind of writer holding SQLite
        (``WriterBusy``: an ORM transaction, a few milliseconds) goes to a thread, and so do
        slow requests and the counting of a refusal (a write).

        Measured (bench/activation_ab.py, SQLite, 2 workers, 64 connections, Ed25519 / RSA /
        deactivations per second): in 2 threads 1,408 / 1,149 / 1,752, in 1 thread 1,701 /
        1,171 / 2,057 -- the transaction's holder keeps losing the GIL to the loop (every
        SQLite call and signature releases it), which stretches the lock while the other
        process waits; on the loop 2,078 / 1,353 / 2,511; on the loop but waiting for the
        queue in a thread 1,448 / 1,062 / 1,629 (the hop costs more than the wait)."""
        algorithm = _algorithm(headers)
        try:
            prepared = self.prepare(state, path, headers, body, host)
        except _Refused as refused:
            return await anyio.to_thread.run_sync(self.refusal, state, algorithm, refused)
        except Exception as exc:
            return self.sign(state, algorithm, failure_parts(exc))
        if prepared.slow:
            return await anyio.to_thread.run_sync(self.rest, state, prepared)
        queue = state.db.writer_queue
        if self._loop_lock is None:  # (created on the server's event loop)
            # (not fast_acquire: skipping the yield when the lock is free measured +6-10%
            # req/s but p99 at 2-10x p50 in 4 of 10 runs, against <= 2.5x with it)
            self._loop_lock = anyio.Lock()
        try:
            async with self._loop_lock:
                queue.acquire()
                try:
                    try:
                        written = self.write(state, prepared, wait=False, queue_held=True)
                    except WriterBusy:
                        written = await anyio.to_thread.run_sync(
                            partial(self.write, state, prepared, wait=True, queue_held=True)
                        )
                finally:
                    queue.release()
        except _Refused as refused:
            return await anyio.to_thread.run_sync(self.refusal, state, algorithm, refused)
        except Exception as exc:
            return self.sign(state, algorithm, failure_parts(exc))
        return self.sign(state, algorithm, self.finish(state, prepared, written))

    def prepared_or_refused(
        self,
        state: AppState,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        host: str | None,
    ) -> _Prepared | Signed:
        """``prepare``, or its refusal signed."""
        try:
            return self.prepare(state, path, headers, body, host)
        except _Refused as refused:
            return self.refusal(state, _algorithm(headers), refused)
        except Exception as exc:
            return self.sign(state, _algorithm(headers), failure_parts(exc))

    def answer(
        self,
        state: AppState,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        host: str | None,
        now: datetime | None = None,
    ) -> Signed:
        """The whole request in this thread, its answer signed."""
        answer = self.respond(state, path, headers, body, host, now)
        return self.sign(state, _algorithm(headers), answer)

    def respond(
        self,
        state: AppState,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        host: str | None,
        now: datetime | None = None,
    ) -> Answer:
        """The whole request, unsigned (``now``: the server's clock unless given, for tests)."""
        try:
            prepared = self.prepare(state, path, headers, body, host, now)
        except _Refused as refused:
            return self._refused(state, refused)
        except Exception as exc:
            return failure_parts(exc)
        return self._rest(state, prepared)

    def rest(self, state: AppState, prepared: _Prepared) -> Signed:
        return self.sign(state, prepared.algorithm, self._rest(state, prepared))

    def _rest(self, state: AppState, prepared: _Prepared) -> Answer:
        try:
            prepared = self.single_sign_on(state, prepared)
            written = self.write(state, prepared)
        except _Refused as refused:
            return self._refused(state, refused)
        except Exception as exc:
            return failure_parts(exc)
        return self.finish(state, prepared, written)

    def prepare(
        self,
        state: AppState,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        host: str | None,
        now: datetime | None = None,
    ) -> _Prepared:
        """Authenticate and parse (v4 §4.3's order). An HMAC key is read here, outside the
        write transaction, except on PostgreSQL for a key this process has seen: its row then
        comes with the license's, in the transaction (one round trip of five; measured +5%
        activations and deactivations per second). On SQLite that would move the key's check
        into the write lock: measured -4% Ed25519 activations, -14% deactivations."""
        now = now or datetime.now(UTC)
        kind = OFFLINE_PATHS.get(path)
        if kind is not None:
            return self._prepare_file(state, kind, headers, body, host, now)
        use, model = _USES[path]
        db = state.db
        try:
            presented = auth.presented(headers.get("authorization"), headers.get("date"))
            who: Caller | seats.Credentials
            if isinstance(presented, auth.BearerToken):
                with db.transaction() as session:
                    who = auth.authenticate_bearer_request(session, state.keys, presented, now)
                company_id = who.company_id
            else:
                pairs = presented.pairs
                hint = None if db.is_sqlite else self._companies.get(pairs["apikey"])
                if hint is not None:
                    who = seats.Credentials(pairs, presented.date_value, hint)
                    company_id = hint
                else:
                    who = hmac_caller_of(state, pairs, presented.date_value, now)
                    company_id = who.company_id
                    if not db.is_sqlite:
                        self._companies[pairs["apikey"]] = company_id
            try:
                idempotency_key = (
                    checked_idempotency_key(headers.get("idempotency-key"))
                    if use in ("activate", "consume")
                    else None
                )
                data: Body = parse_json(body, model)  # type: ignore[assignment]
            except LicensorError:
                self._authenticated(state, who, now)  # (a refused key is named first)
                raise
            single_sign_on = _signs_on(data)
            password = _password(data)
            if (
                single_sign_on or password
            ):  # (the identity provider is asked only for an authenticated caller)
                who = self._authenticated(state, who, now)
        except LicensorError as exc:
            raise _Refused(exc, None) from None  # (not counted: no guess was made yet)
        policy = rate_limit.Policy.of(state.settings)
        return _Prepared(
            use=use,
            who=who,
            data=data,
            ref=license_ref(data, password),
            limits=seats.RateLimits(policy, failure_buckets(policy, host, company_id, data)),
            now=now,
            algorithm=_algorithm(headers),
            idempotency_key=idempotency_key,
            slow=single_sign_on or bool(password) or isinstance(presented, auth.BearerToken),
        )

    @staticmethod
    def _prepare_file(
        state: AppState,
        kind: str,
        headers: Mapping[str, str],
        body: bytes,
        host: str | None,
        now: datetime,
    ) -> _Prepared:
        """A request file sent as the body: the caller of the headers, then the file's
        (``offline.read_file``: no second read when the file is signed by the same key). Not
        counted in the rate limits: no guess about a license was made yet."""
        try:
            known = header_caller(state, headers.get("authorization"), headers.get("date"), now)
            file = offline.read_file(state, body, kind, host=host, now=now, known=known)
        except LicensorError as exc:
            raise _Refused(exc, None) from None
        return _Prepared(
            use="activate" if file.kind == "activation" else "deactivate",
            who=file.caller,
            data=file.data,
            ref=file.ref,
            limits=file.limits,
            now=now,
            algorithm=_algorithm(headers),
            idempotency_key=None,
            slow=file.slow or known.api_key is None,  # (an OAuth token: read by the ORM)
            file=file,
        )

    @staticmethod
    def _authenticated(state: AppState, who: Caller | seats.Credentials, now: datetime) -> Caller:
        """The caller of credentials not checked yet (a key's company hint), or the refusal."""
        if isinstance(who, Caller):
            return who
        return hmac_caller_of(state, who.pairs, who.date_value, now)

    @staticmethod
    def single_sign_on(state: AppState, prepared: _Prepared) -> _Prepared:
        """The request naming the user its single sign-on credentials prove, if it has them
        (the identity provider is asked over the network, outside the write transaction).
        An activation adds an unknown user to the account's auto-create license first."""
        data = prepared.data
        if prepared.file is not None or not _signs_on(data):
            return prepared  # (a request file names its license without single sign-on)
        assert isinstance(data, schemas.SsoFields)
        assert isinstance(prepared.who, Caller)  # (slow: authenticated in prepare)
        caller = prepared.who
        limits = prepared.limits
        try:
            if limits.policy is not None and limits.buckets:  # a locked-out client asks no one
                with state.db.transaction() as session:
                    rate_limit.ensure_allowed(session, limits.policy, limits.buckets, prepared.now)
            user = sso_user(state, caller, data)
            with state.db.transaction(write=prepared.activating) as session:
                ref = identity_ref(
                    session,
                    caller,
                    data,
                    user,
                    _password(data),
                    now=prepared.now,
                    create_user=prepared.activating,
                )
        except LicensorError as exc:
            raise _Refused(exc, prepared) from None
        return replace(prepared, ref=ref)

    @staticmethod
    def write(
        state: AppState, prepared: _Prepared, *, wait: bool = True, queue_held: bool = False
    ) -> Written:
        """The write transaction (rolled back on a refusal: ``_Refused``); ``WriterBusy`` when
        ``wait`` is false and SQLite's write lock is taken."""
        db = state.db
        try:
            if prepared.file is not None:
                written = offline.write_file(
                    state, prepared.file, prepared.now, wait=wait, queue_held=queue_held
                )
                assert not isinstance(written, list)  # (a bundle's file is the route's)
                return written
            with db.fast_write(wait=wait, queue_held=queue_held) as connection:
                return _WRITES[type(prepared.data)](
                    seats.Transaction(connection, db.dialect), state, prepared
                )
        except LicensorError as exc:
            raise _Refused(exc, prepared) from None

    @staticmethod
    def finish(state: AppState, prepared: _Prepared, written: Written) -> Answer:
        """Render the committed answer (outside the write lock)."""
        if written is None:
            return 200, _DEACTIVATED, {}
        if isinstance(written, consumption.Consumed):
            return 200, written.content, _replayed(written.replayed)
        if isinstance(written, bytes):
            return 200, written, {}
        try:
            if prepared.file is not None:
                content = offline.file_body(state, prepared.file, written)
            else:
                content = written.render(state.keys, prepared.algorithm)
        except Exception as exc:  # committed: never run again
            log.error("activation.render_failed", extra={"error": type(exc).__name__})
            return error_parts("internal_error", "Internal server error", 500)
        return written.status, content, _replayed(written.replayed)

    def refusal(self, state: AppState, algorithm: SignatureAlgorithm, refused: _Refused) -> Signed:
        return self.sign(state, algorithm, self._refused(state, refused))

    @staticmethod
    def _refused(state: AppState, refused: _Refused) -> Answer:
        """The refusal's answer, once it is counted when it reveals a wrong guess."""
        error, prepared = refused.error, refused.prepared
        if prepared is not None:
            try:
                prepared.limits.count(state.db, prepared.now, error.code)
            except Exception as exc:
                return failure_parts(exc)
        return refusal_parts(error)

    @staticmethod
    def sign(state: AppState, algorithm: SignatureAlgorithm, answer: Answer) -> Signed:
        status, content, headers = answer
        return (
            status,
            content,
            {**headers, **state.keys.keyring.signature_headers(content, algorithm)},
        )


def _route_answer(request: Request, raw: bytes) -> Response:
    state = app_state(request)
    front = ActivationFront(None, lambda: state, threads=1)  # type: ignore[arg-type]
    status, content, headers = front.respond(
        state,
        request.url.path,
        _headers(request.scope["headers"]),
        raw,
        request.client.host if request.client else None,
    )
    # (signed by SignResponses, as every route's answer)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


@route("POST", "/activate_license", openapi_extra=body_doc(schemas.ActivateRequest))
def activate_license(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Bind the license to ``hardware_id`` and answer with the signed license."""
    return _route_answer(request, raw)


@route("POST", "/activate_bundle", openapi_extra=body_doc(schemas.ActivateBundleRequest))
def activate_bundle(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Activate every sub-license of a bundle on this device, or none (one refused: nothing
    taken); an array of license objects, one per sub-product."""
    return _route_answer(request, raw)


@route("POST", "/deactivate_license", openapi_extra=body_doc(schemas.DeactivateRequest))
def deactivate_license(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Free this device's seat; answers the JSON string ``"license_deactivated"``."""
    return _route_answer(request, raw)


@route("POST", "/add_consumption", openapi_extra=body_doc(schemas.AddConsumptionRequest))
def add_consumption(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Count ``consumptions`` units on the device's consumption license (an Idempotency-Key
    makes a retry count once); answers the license's consumption fields."""
    return _route_answer(request, raw)


@route("POST", "/floating/release", openapi_extra=body_doc(schemas.FloatingReleaseRequest))
def floating_release(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Free this device's floating slot at once; answers an empty string."""
    return _route_answer(request, raw)


@route("POST", "/floating/borrow", openapi_extra=body_doc(schemas.FloatingBorrowRequest))
def floating_borrow(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Keep this device's floating slot until ``borrowed_until`` (null: as long as the license
    allows), to work offline meanwhile."""
    return _route_answer(request, raw)


@route(
    "POST",
    "/add_feature_consumption",
    openapi_extra=body_doc(schemas.AddFeatureConsumptionRequest),
)
def add_feature_consumption(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Count ``consumptions`` units on the license's consumption feature ``feature`` (an
    Idempotency-Key makes a retry count once)."""
    return _route_answer(request, raw)


@route(
    "POST",
    "/floating/feature_release",
    openapi_extra=body_doc(schemas.FloatingFeatureReleaseRequest),
)
def floating_feature_release(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Free this device's slot of the floating feature ``feature`` at once; answers an empty
    string."""
    return _route_answer(request, raw)


@route(
    "POST",
    "/floating/feature_borrow",
    openapi_extra=body_doc(schemas.FloatingFeatureBorrowRequest),
)
def floating_feature_borrow(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Keep this device's slot of the floating feature ``feature`` until ``borrowed_until``
    (null: as long as the feature allows)."""
    return _route_answer(request, raw)
