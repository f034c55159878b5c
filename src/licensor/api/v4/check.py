"""``GET /api/v4/check_license``: the License API front of ``services/check.py``, without the
framework in the way.

A check is what every launch of every protected application sends, so it is the request a
licensing server must answer fastest. Every check is answered here -- the license and its
refusals alike, in the documented evaluation order: authentication, the query, the rate limits
(a refusal that reveals a wrong guess is counted), single sign-on, then the use case: one read
statement on an autocommit connection (a write transaction only when the device has new facts
to record), the answer rendered and signed over its exact bytes. The FastAPI route of the path
(``check_license``) calls ``respond`` too, when ``LICENSOR_FAST_CHECK`` is off.

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
threads -- when many answers are to be made. Work that must not hold the event loop (an OAuth
token, single sign-on, a device's new facts, a refusal to count) always runs in the threads. In the steady state, where almost every answer is
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
from functools import partial

import anyio.to_thread
from fastapi import Request
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from licensor.api.errors import failure_parts, refusal_parts
from licensor.api.middleware import ACCEPT_SIGNATURE_HEADER
from licensor.api.state import AppState, app_state
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import (
    device_info,
    failure_buckets,
    hmac_caller_of,
    identity_ref,
    license_ref,
    parse_params,
    query_doc,
    route,
    sso_user,
)
from licensor.core.errors import LicensorError
from licensor.metrics import CHECK_ANSWERS
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import auth, check, rate_limit, seats
from licensor.services.context import Caller

log = logging.getLogger("licensor.api")

SEEN_BATCH_SECONDS = 1.0
# Answers to make (not served again) run on the event loop while those of the current second
# took less than this share of it; past it, in the threads (see the module docstring).
INLINE_SHARE = 0.1
VERIFIED_KEPT = 1024
CHECK_PATHS = frozenset({"/api/v4/check_license", "/api/v4/check_license/"})


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
    client: str | None = None  # the client's address

    @classmethod
    def of(cls, scope: Scope, client: tuple[str, int] | None = None) -> _Request:
        authorization = date = None
        algorithm: SignatureAlgorithm = "rsa-sha256"
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"date":
                date = value.decode("latin-1")
            elif name == ACCEPT_SIGNATURE_HEADER and b"ed25519" in value.lower():
                algorithm = "ed25519"
        return cls(authorization, date, algorithm, client[0] if client else None)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else math.inf


class CheckFront:
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
        # API key -> its company, as found by an earlier request (only a hint: the read of
        # the rows checks it, with the key's row)
        self._companies: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in CHECK_PATHS:
            await self.app(scope, receive, send)
            return
        state = self.state()
        request = _Request.of(scope, scope.get("client"))
        answer = self.served_again(state, scope, request)
        if answer is None:
            if state.db.is_sqlite and request.algorithm == "ed25519":
                answer = self.answer(state, scope, request, inline=True)  # (cheaper than a hop)
            elif self._inline_allowed():
                started = time.perf_counter()
                answer = self.answer(state, scope, request, inline=True)
                self._inline_spent += time.perf_counter() - started
        if answer is None:  # (to make in the threads)
            if self._limiter is None:  # (created on the server's event loop)
                self._limiter = anyio.CapacityLimiter(self.threads)
            self._in_threads += 1
            try:
                answer = await anyio.to_thread.run_sync(
                    partial(self.answer, state, scope, request, inline=False),
                    limiter=self._limiter,
                )
            finally:
                self._in_threads -= 1
            assert answer is not None
        status, body, headers, seen = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
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
                check.record_seen(connection, device_ids, datetime.now(UTC))
        except Exception as exc:
            log.warning("check.record_seen_failed", extra={"error": type(exc).__name__})

    @staticmethod
    def _seen_due(entry: _Entry, now: float) -> int | None:
        if entry.seen_device_id is None or now < entry.seen_due_at:
            return None
        entry.seen_due_at = math.inf  # (asked once; the next answer made reads it again)
        return entry.seen_device_id

    def served_again(self, state: AppState, scope: Scope, request: _Request) -> Made | None:
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
        CHECK_ANSWERS.labels("kept").inc()
        return 200, entry.body, entry.headers, self._seen_due(entry, now)

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
        self, state: AppState, scope: Scope, request: _Request, *, inline: bool
    ) -> Made | None:
        """The signed answer (and the device whose "last seen" is due), kept when it may be
        served again; with ``inline``, ``None`` for work that must not hold the event loop
        (made again in the threads: nothing was written)."""
        made = self.respond(state, scope["query_string"], request, inline=inline)
        if made is None:
            return None
        status, content, extra, kept, reused, seen = made
        if kept is not None and reused:  # the same rows: the same answer
            CHECK_ANSWERS.labels("same_rows").inc()
            return 200, kept.body, kept.headers, self._seen_due(kept, time.time())
        if status == 200:
            CHECK_ANSWERS.labels("made").inc()
        headers: Headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
        signed = state.keys.keyring.signature_headers(content, request.algorithm)
        headers.extend((k.lower().encode(), v.encode()) for k, v in signed.items())
        if kept is None:
            return status, content, headers, seen
        kept.headers = headers
        seen = self._seen_due(kept, time.time())
        if kept.version >= 0 and self.cache_entries > 0:
            self._keep((scope["query_string"], request.algorithm), kept)
        return status, content, headers, seen

    def respond(
        self,
        state: AppState,
        query_string: bytes,
        request: _Request,
        *,
        inline: bool,
        now: datetime | None = None,
    ) -> Responded | None:
        """The answer, unsigned: status, body, headers, the entry to keep (a license answer
        to an HMAC caller), whether that is a kept one, still right, and the device whose
        "last seen" is due when no entry is made; or ``None``
        (``inline`` only: see ``answer``). ``now``: the server's clock unless given (tests)."""
        now = now or datetime.now(UTC)
        db = state.db
        version = db.changes.version()  # (before the rows are read)
        try:
            who, query = self._caller_and_query(state, query_string, request, now, inline)
        except _Slow:
            return None
        except LicensorError as exc:
            return (*refusal_parts(exc), None, False, None)
        except Exception as exc:
            return (*failure_parts(exc), None, False, None)
        policy = rate_limit.Policy.of(state.settings)
        company_id = who.company_id
        limits = seats.RateLimits(
            policy, failure_buckets(policy, request.client, company_id, query)
        )
        info = device_info(query)
        try:
            ref = license_ref(query)
            if query.customer_account_code or query.id_token or query.code:
                assert isinstance(who, Caller)  # (authenticated: _caller_and_query)
                with db.transaction() as session:
                    rate_limit.ensure_allowed(session, policy, limits.buckets, now)
                user = sso_user(state, who, query)
                with db.transaction() as session:
                    ref = identity_ref(session, who, query, user, now=now)
            try:
                with db.snapshot() as connection:
                    tx = seats.Transaction(connection.connection.dbapi_connection, db.dialect)  # type: ignore[arg-type]
                    checked = check.check(tx, state.keys, who, ref, info, limits, now=now)
            except check.DeviceTouchNeeded:
                if inline:
                    return None
                with db.fast_write() as connection:
                    tx = seats.Transaction(connection, db.dialect)
                    checked = check.check(
                        tx, state.keys, who, ref, info, limits, now=now, may_write=True
                    )
        except LicensorError as exc:
            if limits.buckets and exc.code in rate_limit.COUNTED:
                if inline:
                    return None
                try:
                    limits.count(db, now, exc.code)
                except Exception as failed:
                    return (*failure_parts(failed), None, False, None)
            return (*refusal_parts(exc), None, False, None)
        except Exception as exc:
            return (*failure_parts(exc), None, False, None)
        stamp = now.timestamp()
        kept = self._cache.get((query_string, request.algorithm))
        if (
            checked.rows.credential is not None
            and kept is not None
            and kept.fingerprint == checked.fingerprint
            and kept.shared_key == checked.caller.shared_key
            and stamp < kept.fresh_until
        ):  # the same rows: the same answer (no rendering, no signing)
            if version is not None:
                kept.version = version
            kept.seen_due_at = _epoch(checked.seen_due_at)  # (as just read)
            return 200, kept.body, {}, kept, True, None
        content = compact_json(
            checked.body(
                state.keys,
                now=now,
                algorithm=request.algorithm,
                include_expired_features=query.include_expired_features,
            )
        )
        if checked.rows.credential is None:  # (no rotated secret's end known: not kept)
            due = checked.seen_due_at is not None and now >= checked.seen_due_at
            return 200, content, {}, None, False, checked.device.id if due else None
        entry = _Entry(
            version=version if version is not None else -1,
            fingerprint=checked.fingerprint,
            fresh_until=checked.fresh_until(state.keys, now).timestamp(),
            api_key=checked.caller.api_key or "",
            shared_key=checked.caller.shared_key or "",
            body=content,
            headers=[],
            seen_device_id=checked.device.id if checked.seen_due_at is not None else None,
            seen_due_at=_epoch(checked.seen_due_at),
        )
        return 200, content, {}, entry, False, None

    def _caller_and_query(
        self, state: AppState, query_string: bytes, request: _Request, now: datetime, inline: bool
    ) -> tuple[Caller | seats.Credentials, schemas.CheckQuery]:
        """Who calls (an API key's company known from an earlier request: ``Credentials``,
        checked with the rows) and the query, or the refusal, in v4 §4.3's order."""
        db = state.db
        presented = auth.presented(request.authorization, request.date)
        who: Caller | seats.Credentials
        if isinstance(presented, auth.BearerToken):
            if inline:
                raise _Slow
            with db.transaction() as session:
                who = auth.authenticate_bearer_request(session, state.keys, presented, now)
        else:
            hint = self._companies.get(presented.pairs["apikey"])
            if hint is not None:
                who = seats.Credentials(presented.pairs, presented.date_value, hint)
            else:
                who = hmac_caller_of(state, presented.pairs, presented.date_value, now)
                self._companies[presented.pairs["apikey"]] = who.company_id
        try:
            query = parse_params(QueryParams(query_string), schemas.CheckQuery)
        except LicensorError:
            if isinstance(who, seats.Credentials):  # (a refused key is named first)
                hmac_caller_of(state, who.pairs, who.date_value, now)
            raise
        if query.customer_account_code or query.id_token or query.code:
            if inline:
                raise _Slow
            if isinstance(who, seats.Credentials):
                who = hmac_caller_of(state, who.pairs, who.date_value, now)
        return who, query

    def _keep(self, cache_key: tuple[bytes, str], entry: _Entry) -> None:
        with self._cache_lock:
            self._cache.pop(cache_key, None)
            while len(self._cache) >= self.cache_entries:  # the oldest made goes first
                del self._cache[next(iter(self._cache))]
            self._cache[cache_key] = entry


Made = tuple[int, bytes, "Headers", int | None]  # status, body, headers, device seen
# status, body, headers, the entry to keep, whether it is a kept one, the device seen (not kept)
Responded = tuple[int, bytes, dict[str, str], "_Entry | None", bool, int | None]


class _Slow(Exception):
    """Work that must not hold the event loop: made again in the threads."""


@route("GET", "/check_license", openapi_extra=query_doc(schemas.CheckQuery))
def check_license(request: Request) -> Response:
    """Check the license on this device; expired licenses answer 200 with ``is_expired``."""
    state = app_state(request)
    front = CheckFront(None, lambda: state, cache_entries=0)  # type: ignore[arg-type]
    made = front.respond(
        state,
        request.scope["query_string"],
        _Request.of(request.scope, request.scope.get("client")),
        inline=False,
    )
    assert made is not None
    status, content, headers, kept, _reused, seen = made
    if kept is not None and kept.seen_device_id is not None:
        seen = kept.seen_device_id
    if seen is not None:
        front.record_seen(state, [seen])
    # (signed by SignResponses, as every route's answer)
    return Response(content, status_code=status, media_type="application/json", headers=headers)
