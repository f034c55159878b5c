"""``GET /api/v4/check_license`` in the steady state, without the framework in the way.

A check is what every launch of every protected application sends, so it is the request a
licensing server must answer fastest. This ASGI layer answers the common case -- HMAC
authentication, a license key, a device that holds a seat and has nothing new to record -- with
one read statement (``store.snapshot``) and the same rules and rendering as the full endpoint
(``licensing.check_snapshot``). Everything else (an error to name, a device to touch, OAuth,
single sign-on, user-based products, a database error) goes on to the full endpoint, which
answers exactly as before. Nothing here writes.

The work runs in worker threads of its own (``LICENSOR_FAST_CHECK_THREADS``, default 2), not on
the event loop. Measured with 1 worker and 64 connections (Ed25519 / RSA, req/s, p99/p50):
inline on the event loop ~850 req/s but some connections starved (p99 of 1-3 s against a p50
of ~75 ms); in the 8 shared request threads 330-400 req/s, fair (p99 < 2x p50), the rest lost
to GIL hand-offs between the loop and eight busy threads; in 2 threads of its own with a
0.5 ms GIL switch interval (``LICENSOR_GIL_SWITCH_INTERVAL_MS``) 640-660 / 336 req/s, fair.
One thread did a little better with Ed25519 (700) and worse with RSA (220): RSA signing
releases the GIL, so two threads overlap. With 2 workers (the benchmark), an Ed25519 check
on SQLite (~0.5 ms, no round trip) is cheaper inline than a thread hop and stayed fair there:
2,118 req/s, p99 1.85x p50, against 1,225 in the threads; so Ed25519 checks on SQLite run
inline, RSA checks (two ~1.5 ms signatures) and PostgreSQL checks (a round trip) in the
threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import anyio.to_thread
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from licensor.api.middleware import requested_algorithm
from licensor.api.state import AppState
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import device_info, license_ref, parse_params
from licensor.core.errors import LicensorError
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import licensing

log = logging.getLogger("licensor.api")

SEEN_BATCH_SECONDS = 1.0
CHECK_PATHS = frozenset({"/api/v4/check_license", "/api/v4/check_license/"})
# Query parameters the fast path understands; any other one (SSO, username, ...) goes on.
_FULL_PATH_PARAMS = frozenset(
    {"username", "license_id", "customer_account_code", "id_token", "code", "password"}
)


class FastCheck:
    def __init__(self, app: ASGIApp, state: Callable[[], AppState], threads: int = 2) -> None:
        self.app = app
        self.state = state
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None
        # "last seen" due for these devices, written together about once a second
        self._seen: set[int] = set()
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in CHECK_PATHS:
            await self.app(scope, receive, send)
            return
        state = self.state()
        if state.db.is_sqlite and requested_algorithm(scope["headers"]) == "ed25519":
            answer = self.answer(state, scope)  # ~0.5 ms: cheaper inline than a thread hop
        else:
            if self._limiter is None:  # (created on the server's event loop)
                self._limiter = anyio.CapacityLimiter(self.threads)
            answer = await anyio.to_thread.run_sync(
                self.answer, state, scope, limiter=self._limiter
            )
        if answer is None:
            await self.app(scope, receive, send)
            return
        body, headers, seen = answer
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if seen is not None:
            self._seen.add(seen)
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_seen(state))

    async def _flush_seen(self, state: AppState) -> None:
        """After the answers, off the event loop (a write can meet a checkpoint's fsync), and
        batched: one UPDATE for the devices seen in the last second instead of a write and a
        thread hop per device (measured: 10,000 first checks in a run made the SQLite tail)."""
        try:
            await anyio.sleep(SEEN_BATCH_SECONDS)
        finally:
            ids, self._seen, self._flusher = sorted(self._seen), set(), None
        await anyio.to_thread.run_sync(self.record_seen, state, ids)

    @staticmethod
    def record_seen(state: AppState, device_ids: list[int]) -> None:
        try:
            with state.db.snapshot() as connection:
                licensing.record_seen(connection, device_ids, datetime.now(UTC))
        except Exception as exc:
            log.warning("check.record_seen_failed", extra={"error": type(exc).__name__})

    def answer(
        self, state: AppState, scope: Scope
    ) -> tuple[bytes, list[tuple[bytes, bytes]], int | None] | None:
        """The signed answer's bytes and headers (and the device whose "last seen" is due), or
        ``None`` for the full endpoint."""
        authorization = date_value = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"date":
                date_value = value.decode("latin-1")
        if not authorization or not date_value or authorization[:7].lower() == "bearer ":
            return None
        params = QueryParams(scope["query_string"])
        if any(name in _FULL_PATH_PARAMS for name in params):
            return None
        algorithm: SignatureAlgorithm = requested_algorithm(scope["headers"])
        try:
            query = parse_params(params, schemas.CheckQuery)
            with state.db.snapshot() as connection:
                checked = licensing.check_snapshot(
                    connection,
                    state.keys,
                    authorization=authorization,
                    date_value=date_value,
                    ref=license_ref(query),
                    info=device_info(query),
                    now=datetime.now(UTC),
                    algorithm=algorithm,
                    include_expired_features=query.include_expired_features,
                )
        except LicensorError:
            return None
        except Exception as exc:  # the full endpoint answers (503 when the database is down)
            # the type only: a driver's message can carry the statement's parameters
            log.warning("check.fast_path_failed", extra={"error": type(exc).__name__})
            return None
        if checked is None:
            return None
        content = compact_json(checked.body)
        headers: list[tuple[bytes, bytes]] = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        signed = state.keys.keyring.signature_headers(content, algorithm)
        headers.extend((k.lower().encode(), v.encode()) for k, v in signed.items())
        return content, headers, checked.seen_device_id
