"""``POST /api/v4/activate_license`` and ``/deactivate_license`` in their common case, without
the framework in the way.

An HMAC-signed activation of a license key on a device without a seat (or a deactivation of a
device that holds one) is answered here with one autocommit read of the API key and one short write
transaction of prepared statements (``services/fast_activation.py``, ``store/activation.py``),
with the same rules and rendering as the full endpoint. Everything else -- an error to name
(and to count in the rate limits), a replayed Idempotency-Key, user-based products, single
sign-on, OAuth, variables, a database error -- goes on to the full endpoint,
which answers exactly as before: the body read here is handed on unchanged, and nothing has been
written when a request is handed on. Answers are signed here over their exact bytes, like
``SignResponses`` signs the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licensor.api.middleware import requested_algorithm
from licensor.api.state import AppState
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import (
    checked_idempotency_key,
    device_info,
    failure_buckets,
    license_ref,
    parse_json,
)
from licensor.core.errors import LicensorError
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import fast_activation, licensing, rate_limit
from licensor.services.context import Caller
from licensor.store.db import WriterBusy

log = logging.getLogger("licensor.api")

ACTIVATE_PATHS = frozenset({"/api/v4/activate_license", "/api/v4/activate_license/"})
DEACTIVATE_PATHS = frozenset({"/api/v4/deactivate_license", "/api/v4/deactivate_license/"})
_PATHS = ACTIVATE_PATHS | DEACTIVATE_PATHS
_DEACTIVATED = compact_json("license_deactivated")
_INTERNAL_ERROR = compact_json(
    {"status": 500, "code": "internal_error", "message": "Internal server error"}
)

Answer = tuple[int, bytes, dict[str, str]]  # status, body, signature headers


class _Committed(Exception):
    """A failure after the commit: the request must not be handed on (it would run twice)."""


class _Declined(Exception):
    """Nothing was written: the full endpoint answers."""


_NO_INFO = licensing.DeviceInfo()


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A parsed, authenticated request the fast path may answer (nothing written yet)."""

    activating: bool
    who: Caller | fast_activation.Credentials
    ref: licensing.LicenseRef
    info: licensing.DeviceInfo
    limits: fast_activation.RateLimits
    now: datetime
    algorithm: SignatureAlgorithm
    idempotency_key: str | None
    request_hash: str


# What a committed write leaves for the answer (a deactivation has nothing to render).
_Written = fast_activation.Activated | None


class FastActivation:
    """``threads`` >= 1: each request in a thread of this layer's own (at most ``threads`` at
    once). 0: on the event loop, where only waiting for the write lock goes to a thread (see
    ``_on_the_loop``)."""

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
        state = self.state()
        body, messages = await self._read_body(scope, receive, state.settings.max_body_bytes)
        handed_on = _replay(messages, receive)
        if body is None:
            await self.app(scope, handed_on, send)
            return
        try:
            if self.threads == 0:
                answer = await self._on_the_loop(state, scope, body)
            else:
                if self._limiter is None:  # (created on the server's event loop)
                    self._limiter = anyio.CapacityLimiter(self.threads)
                answer = await anyio.to_thread.run_sync(
                    self.answer, state, scope, body, limiter=self._limiter
                )
        except _Committed as exc:
            log.error("activation.render_failed", extra={"error": str(exc)})
            algorithm = requested_algorithm(scope["headers"])
            answer = (
                500,
                _INTERNAL_ERROR,
                await anyio.to_thread.run_sync(
                    state.keys.keyring.signature_headers, _INTERNAL_ERROR, algorithm
                ),
            )
        if answer is None:
            await self.app(scope, handed_on, send)
            return
        status, content, signed = answer
        headers: list[tuple[bytes, bytes]] = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        headers.extend((k.lower().encode(), v.encode()) for k, v in signed.items())
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _on_the_loop(self, state: AppState, scope: Scope, body: bytes) -> Answer | None:
        """The whole request on the event loop, one write transaction at a time per process.
        Waiting for another process's transaction (the writer queue's ``flock``: a fraction of
        a millisecond) blocks the loop; waiting for another kind of writer holding SQLite
        (``WriterBusy``: an ORM transaction, a few milliseconds) goes to a thread.

        Measured (bench/activation_ab.py, SQLite, 2 workers, 64 connections, Ed25519 / RSA /
        deactivations per second): in 2 threads 1,408 / 1,149 / 1,752, in 1 thread 1,701 /
        1,171 / 2,057 -- the transaction's holder keeps losing the GIL to the loop (every
        SQLite call and signature releases it), which stretches the lock while the other
        process waits; on the loop 2,078 / 1,353 / 2,511; on the loop but waiting for the
        queue in a thread 1,448 / 1,062 / 1,629 (the hop costs more than the wait)."""
        prepared = self.prepare(state, scope, body)
        if prepared is None:
            return None
        queue = state.db.writer_queue
        if self._loop_lock is None:  # (created on the server's event loop)
            # (not fast_acquire: skipping the yield when the lock is free measured +6-10%
            # req/s but p99 at 2-10x p50 in 4 of 10 runs, against <= 2.5x with it)
            self._loop_lock = anyio.Lock()
        try:
            async with self._loop_lock:
                try:
                    queue.acquire()
                except OSError as exc:  # e.g. no lock file beside the database: the full path
                    log.warning("activation.queue_failed", extra={"error": type(exc).__name__})
                    return None
                try:
                    try:
                        written = self.write(state, prepared, wait=False, queue_held=True)
                    except WriterBusy:
                        written = await anyio.to_thread.run_sync(
                            partial(self.write, state, prepared, wait=True, queue_held=True)
                        )
                finally:
                    queue.release()
        except _Declined:
            return None
        return self.finish(state, prepared, written)

    @staticmethod
    async def _read_body(
        scope: Scope, receive: Receive, limit: int
    ) -> tuple[bytes | None, list[Message]]:
        """The whole body, or ``None`` when the full endpoint must see it (no or a too large
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

    def answer(
        self, state: AppState, scope: Scope, body: bytes, now: datetime | None = None
    ) -> Answer | None:
        """The answer's status, bytes and signature headers, or ``None`` for the full endpoint
        (nothing written then). ``now``: the server's clock unless given (tests)."""
        prepared = self.prepare(state, scope, body, now)
        if prepared is None:
            return None
        try:
            written = self.write(state, prepared)
        except _Declined:
            return None
        return self.finish(state, prepared, written)

    def prepare(
        self, state: AppState, scope: Scope, body: bytes, now: datetime | None = None
    ) -> _Prepared | None:
        """Parse and authenticate; ``None`` for the full endpoint. The API key is read here,
        outside the write transaction, except on PostgreSQL for a key this process has seen:
        its row then comes with the license's, in the transaction (one round trip of five;
        measured +5% activations and deactivations per second). On SQLite that would move the
        key's check into the write lock: measured -4% Ed25519 activations, -14% deactivations."""
        authorization = date_value = idempotency_header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"date":
                date_value = value.decode("latin-1")
            elif name == b"idempotency-key":
                idempotency_header = value.decode("latin-1")
        if not authorization or not date_value or authorization[:7].lower() == "bearer ":
            return None
        activating = scope["path"] in ACTIVATE_PATHS
        now = now or datetime.now(UTC)
        client = scope.get("client")
        idempotency_key = None
        db = state.db
        try:
            if activating:
                idempotency_key = checked_idempotency_key(idempotency_header)
                data: schemas.ActivateRequest | schemas.DeactivateRequest = parse_json(
                    body, schemas.ActivateRequest
                )
            else:
                data = parse_json(body, schemas.DeactivateRequest)
            if data.customer_account_code or data.id_token or data.code:
                return None  # single sign-on
            if isinstance(data, schemas.ActivateRequest) and data.variables:
                return None
            pairs = fast_activation.presented(authorization)
            hint = None if db.is_sqlite else self._companies.get(pairs["apikey"])
            who: Caller | fast_activation.Credentials
            if hint is not None:
                who = fast_activation.Credentials(pairs, date_value, hint)
                company_id = hint
            else:
                with db.snapshot() as connection:
                    who = fast_activation.authenticate(
                        connection.connection.dbapi_connection,  # type: ignore[arg-type]
                        db.dialect,
                        state.keys,
                        pairs=pairs,
                        date_value=date_value,
                        now=now,
                    )
                company_id = who.company_id
                if not db.is_sqlite:
                    self._companies[pairs["apikey"]] = company_id
        except (fast_activation.Declined, LicensorError):
            return None
        except Exception as exc:  # the full endpoint answers (503 when the database is down)
            # the type only: a driver's message can carry the statement's parameters
            log.warning("activation.fast_path_failed", extra={"error": type(exc).__name__})
            return None
        policy = rate_limit.Policy.of(state.settings)
        return _Prepared(
            activating=activating,
            who=who,
            ref=license_ref(data, data.password),
            info=device_info(data) if isinstance(data, schemas.ActivateRequest) else _NO_INFO,
            limits=fast_activation.RateLimits(
                policy, failure_buckets(policy, client[0] if client else None, company_id, data)
            ),
            now=now,
            algorithm=requested_algorithm(scope["headers"]),
            idempotency_key=idempotency_key,
            request_hash=licensing.request_fingerprint(
                "activate_license", data.model_dump(mode="json")
            )
            if idempotency_key
            else "",
        )

    @staticmethod
    def write(
        state: AppState, prepared: _Prepared, *, wait: bool = True, queue_held: bool = False
    ) -> _Written:
        """The write transaction; raises ``_Declined`` (nothing written) for the full endpoint,
        and ``WriterBusy`` when ``wait`` is false and SQLite's write lock is taken."""
        db = state.db
        try:
            with db.fast_write(wait=wait, queue_held=queue_held) as transaction:
                if not prepared.activating:
                    fast_activation.deactivate(
                        transaction,
                        db.dialect,
                        state.keys,
                        prepared.who,
                        prepared.ref,
                        prepared.limits,
                        now=prepared.now,
                    )
                    return None
                return fast_activation.activate(
                    transaction,
                    db.dialect,
                    state.keys,
                    prepared.who,
                    prepared.ref,
                    prepared.info,
                    prepared.limits,
                    now=prepared.now,
                    algorithm=prepared.algorithm,
                    idempotency_key=prepared.idempotency_key,
                    request_hash=prepared.request_hash,
                )
        except WriterBusy:
            raise
        except (fast_activation.Declined, LicensorError):
            raise _Declined from None
        except Exception as exc:  # the full endpoint answers (503 when the database is down)
            log.warning("activation.fast_path_failed", extra={"error": type(exc).__name__})
            raise _Declined from None

    @staticmethod
    def finish(state: AppState, prepared: _Prepared, written: _Written) -> Answer:
        """Render and sign the committed answer (outside the write lock)."""
        keys = state.keys
        try:
            content = _DEACTIVATED if written is None else written.render(keys, prepared.algorithm)
            return 200, content, keys.keyring.signature_headers(content, prepared.algorithm)
        except Exception as exc:
            raise _Committed(type(exc).__name__) from exc
