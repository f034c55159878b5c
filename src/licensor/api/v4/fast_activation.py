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
from datetime import UTC, datetime

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


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back the messages already read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class FastActivation:
    def __init__(self, app: ASGIApp, state: Callable[[], AppState], threads: int = 2) -> None:
        self.app = app
        self.state = state
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

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
                answer = self.answer(state, scope, body)
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
        algorithm: SignatureAlgorithm = requested_algorithm(scope["headers"])
        activating = scope["path"] in ACTIVATE_PATHS
        now = now or datetime.now(UTC)
        client = scope.get("client")
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
            db, keys = state.db, state.keys
            with db.snapshot() as connection:
                caller = fast_activation.authenticate(
                    connection.connection.dbapi_connection,  # type: ignore[arg-type]
                    db.dialect,
                    keys,
                    authorization=authorization,
                    date_value=date_value,
                    now=now,
                )
            policy = rate_limit.Policy.of(state.settings)
            limits = fast_activation.RateLimits(
                policy, failure_buckets(policy, client[0] if client else None, caller, data)
            )
            ref = license_ref(data, data.password)
            if isinstance(data, schemas.ActivateRequest):
                request_hash = (
                    licensing.request_fingerprint("activate_license", data.model_dump(mode="json"))
                    if idempotency_key
                    else ""
                )
                with db.fast_write() as transaction:
                    activated = fast_activation.activate(
                        transaction,
                        db.dialect,
                        keys,
                        caller,
                        ref,
                        device_info(data),
                        limits,
                        now=now,
                        algorithm=algorithm,
                        idempotency_key=idempotency_key,
                        request_hash=request_hash,
                    )
            else:
                with db.fast_write() as transaction:
                    fast_activation.deactivate(
                        transaction, db.dialect, caller, ref, limits, now=now
                    )
                return 200, _DEACTIVATED, keys.keyring.signature_headers(_DEACTIVATED, algorithm)
        except (fast_activation.Declined, LicensorError):
            return None
        except Exception as exc:  # the full endpoint answers (503 when the database is down)
            # the type only: a driver's message can carry the statement's parameters
            log.warning("activation.fast_path_failed", extra={"error": type(exc).__name__})
            return None
        try:
            content = activated.render(keys, algorithm)
            return 200, content, keys.keyring.signature_headers(content, algorithm)
        except Exception as exc:
            raise _Committed(type(exc).__name__) from exc
