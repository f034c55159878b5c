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
threads -- when many answers are to be made. In the steady state, where almost every answer is
served again (below), each worker still makes about (devices / 60) answers a second as their
date steps end, and making those few in the threads set the tail: 2 workers, 64 connections,
1,000 devices, RSA, p99 4.8-6.5x p50 on SQLite and 5.0-8.2x on PostgreSQL (the event loop
stalled 20-38 ms several times a second, measured with a loop-lag probe), against 2.7-3.1x and
3.1-3.7x with them made on the loop, at the same throughput. Made on the loop when every request
is a first check, though, one PostgreSQL run starved connections (p99 2.4 s). So an answer to
make runs on the loop while none is being made in the threads and those made on the loop in
the current second took less than a tenth of it (``INLINE_SHARE``), else in the threads:
steady state 2.8-3.9x on both databases, first checks 1.2-3.2x.

**Answers served again.** A check answer is dated to a step of its device
(``LICENSOR_ANSWER_DATE_STEP_SECONDS``, 60 by default: ``services.payload.answer_date``), so
while nothing it is made of changes it is the same bytes for the whole step. Each worker keeps
the signed answers it made (``LICENSOR_CHECK_CACHE_ENTRIES``, keyed by the query string and the
signature algorithm) and serves one again, without reading or signing anything, when: the
database has not changed since the answer was made (``store.changes``: SQLite's
``PRAGMA data_version``, PostgreSQL's ``LISTEN``), the answer's step has not ended and the
license, its features or a rotated-away API secret have not expired since (``fresh_until``),
and this request authenticates (``Date`` window and HMAC, checked every time, with the same
API key and shared key). When the database did change, the row is read again and the answer
is reused if the row is the same (``fingerprint``), else made anew.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio.to_thread
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from licensor.api.middleware import ACCEPT_SIGNATURE_HEADER
from licensor.api.state import AppState
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import device_info, license_ref, parse_params
from licensor.core.errors import LicensorError
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import auth, licensing

log = logging.getLogger("licensor.api")

SEEN_BATCH_SECONDS = 1.0
# Answers to make (not served again) run on the event loop while those of the current second
# took less than this share of it; past it, in the threads (see the module docstring).
INLINE_SHARE = 0.1
VERIFIED_KEPT = 1024
CHECK_PATHS = frozenset({"/api/v4/check_license", "/api/v4/check_license/"})
# Query parameters the fast path understands; any other one (SSO, username, ...) goes on.
_FULL_PATH_PARAMS = frozenset(
    {"username", "license_id", "customer_account_code", "id_token", "code", "password"}
)


Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class _Entry:
    """A signed check answer and what it may be served again for."""

    version: int  # store.changes version read before the rows were
    fingerprint: bytes
    fresh_until: float  # (epoch seconds)
    api_key: str
    shared_key: str
    body: bytes
    headers: Headers
    seen_device_id: int | None
    seen_due_at: float  # when that device's "last seen" is due (epoch seconds; inf = never)


@dataclass(frozen=True, slots=True)
class _Request:
    authorization: str | None
    date: str | None
    algorithm: SignatureAlgorithm

    @classmethod
    def of(cls, scope: Scope) -> _Request:
        authorization = date = None
        algorithm: SignatureAlgorithm = "rsa-sha256"
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"date":
                date = value.decode("latin-1")
            elif name == ACCEPT_SIGNATURE_HEADER and b"ed25519" in value.lower():
                algorithm = "ed25519"
        return cls(authorization, date, algorithm)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else math.inf


class FastCheck:
    def __init__(
        self,
        app: ASGIApp,
        state: Callable[[], AppState],
        threads: int = 2,
        cache_entries: int = 20_000,
    ) -> None:
        self.app = app
        self.state = state
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None
        # "last seen" due for these devices, written together about once a second
        self._seen: set[int] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.cache_entries = cache_entries
        self._cache: dict[tuple[bytes, str], _Entry] = {}
        self._cache_lock = threading.Lock()
        # (Authorization, Date) verified lately -> (api key, shared key, Date as epoch seconds).
        # Every client of a product sends the same API key, so requests within one second
        # carry the same two headers: one HMAC verification serves them all.
        self._verified: dict[tuple[str, str], tuple[str, str, float]] = {}
        # the whole second (of time.monotonic) whose inline answers are counted, and their time
        self._inline_second = 0
        self._inline_spent = 0.0
        self._in_threads = 0  # answers being made in the threads now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in CHECK_PATHS:
            await self.app(scope, receive, send)
            return
        state = self.state()
        request = _Request.of(scope)
        answer = self.served_again(state, scope, request)
        if answer is None:
            if state.db.is_sqlite and request.algorithm == "ed25519":
                answer = self.answer(state, scope, request)  # cheaper inline than a thread hop
            elif self._inline_allowed():
                started = time.perf_counter()
                answer = self.answer(state, scope, request)
                self._inline_spent += time.perf_counter() - started
            else:
                if self._limiter is None:  # (created on the server's event loop)
                    self._limiter = anyio.CapacityLimiter(self.threads)
                self._in_threads += 1
                try:
                    answer = await anyio.to_thread.run_sync(
                        self.answer, state, scope, request, limiter=self._limiter
                    )
                finally:
                    self._in_threads -= 1
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

    def _inline_allowed(self) -> bool:
        """Whether an answer to make may run on the event loop: while none is being made in
        the threads and those made on the loop in the current second took less than
        ``INLINE_SHARE`` of it."""
        if self._in_threads:
            return False
        second = int(time.monotonic())
        if second != self._inline_second:
            self._inline_second, self._inline_spent = second, 0.0
        return self._inline_spent < INLINE_SHARE

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

    @staticmethod
    def _seen_due(entry: _Entry, now: float) -> int | None:
        if entry.seen_device_id is None or now < entry.seen_due_at:
            return None
        entry.seen_due_at = math.inf  # (asked once; the next answer made reads it again)
        return entry.seen_device_id

    def served_again(
        self, state: AppState, scope: Scope, request: _Request
    ) -> tuple[bytes, Headers, int | None] | None:
        """A kept answer that is still the right one for this request, or ``None``. Reads and
        signs nothing: about as cheap as a request gets (see the module docstring)."""
        entry = self._cache.get((scope["query_string"], request.algorithm))
        if entry is None or request.authorization is None:
            return None
        now = time.time()
        if now >= entry.fresh_until or entry.version != state.db.changes.version():
            return None
        if not self._authenticates(state, request, entry, now):
            return None
        return entry.body, entry.headers, self._seen_due(entry, now)

    def _authenticates(self, state: AppState, request: _Request, entry: _Entry, now: float) -> bool:
        """This request's authentication, as ``auth.hmac_caller`` checks it, for the API key
        and shared key the kept answer was made for."""
        assert request.authorization is not None
        headers = (request.authorization, request.date or "")
        verified = self._verified.get(headers)
        if verified is None:
            try:
                pairs = auth.hmac_pairs(request.authorization)
                sent = auth.check_date(
                    request.date,
                    datetime.fromtimestamp(now, UTC),
                    state.settings.date_window_seconds,
                )
            except LicensorError:
                return False  # the full path names the error
            if not auth.signs(entry.shared_key, headers[1], pairs["signature"]):
                return False
            verified = (pairs["apikey"], entry.shared_key, sent.timestamp())
            if len(self._verified) >= VERIFIED_KEPT:
                self._verified.clear()
            self._verified[headers] = verified
        api_key, shared_key, sent_at = verified
        return (
            api_key == entry.api_key
            and shared_key == entry.shared_key
            and abs(now - sent_at) <= state.settings.date_window_seconds
        )

    def answer(
        self, state: AppState, scope: Scope, request: _Request
    ) -> tuple[bytes, Headers, int | None] | None:
        """The signed answer's bytes and headers (and the device whose "last seen" is due), or
        ``None`` for the full endpoint."""
        authorization, date_value = request.authorization, request.date
        if not authorization or not date_value or authorization[:7].lower() == "bearer ":
            return None
        params = QueryParams(scope["query_string"])
        if any(name in _FULL_PATH_PARAMS for name in params):
            return None
        algorithm = request.algorithm
        cache_key = (scope["query_string"], algorithm)
        try:
            query = parse_params(params, schemas.CheckQuery)
            version = state.db.changes.version()  # (before the rows are read)
            now = datetime.now(UTC)
            with state.db.snapshot() as connection:
                looked = licensing.check_lookup(
                    connection,
                    state.keys,
                    authorization=authorization,
                    date_value=date_value,
                    ref=license_ref(query),
                    info=device_info(query),
                    now=now,
                )
        except LicensorError:
            return None
        except Exception as exc:  # the full endpoint answers (503 when the database is down)
            # the type only: a driver's message can carry the statement's parameters
            log.warning("check.fast_path_failed", extra={"error": type(exc).__name__})
            return None
        if looked is None:
            return None
        stamp = now.timestamp()
        kept = self._cache.get(cache_key)
        if (
            kept is not None
            and kept.fingerprint == looked.fingerprint
            and kept.shared_key == looked.caller.shared_key
            and stamp < kept.fresh_until
        ):  # the same rows: the same answer (no rendering, no signing)
            if version is not None:
                kept.version = version
            kept.seen_due_at = _epoch(looked.seen_due_at)  # (as just read)
            return kept.body, kept.headers, self._seen_due(kept, stamp)
        content = compact_json(
            licensing.check_render(
                state.keys,
                looked,
                now=now,
                algorithm=algorithm,
                include_expired_features=query.include_expired_features,
            )
        )
        headers: Headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        signed = state.keys.keyring.signature_headers(content, algorithm)
        headers.extend((k.lower().encode(), v.encode()) for k, v in signed.items())
        device = looked.found.device
        assert device is not None
        entry = _Entry(
            version=version if version is not None else -1,
            fingerprint=looked.fingerprint,
            fresh_until=licensing.answer_fresh_until(state.keys, looked, now).timestamp(),
            api_key=looked.caller.api_key or "",
            shared_key=looked.caller.shared_key or "",
            body=content,
            headers=headers,
            seen_device_id=device.id if looked.seen_due_at is not None else None,
            seen_due_at=_epoch(looked.seen_due_at),
        )
        seen = self._seen_due(entry, stamp)
        if version is not None and self.cache_entries > 0:
            self._keep(cache_key, entry)
        return content, headers, seen

    def _keep(self, cache_key: tuple[bytes, str], entry: _Entry) -> None:
        with self._cache_lock:
            self._cache.pop(cache_key, None)
            while len(self._cache) >= self.cache_entries:  # the oldest made goes first
                del self._cache[next(iter(self._cache))]
            self._cache[cache_key] = entry
