"""Prometheus metrics (``/metrics``, the text format, behind ``LICENSOR_METRICS_TOKEN``):
requests by endpoint and status, their latency, refusals by code -- counted by every worker of a
``licensor serve`` and added up at the scrape (prometheus-client's multiprocess mode: each
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, which ``licensor serve``
sets to ``DATA_DIR/metrics`` and empties at start).

Labels stay few: an endpoint is a License API path the server answered (``/api/v4/...``; a
path it does not know answers 404 and is ``other``), else the area (``management``, ``console``, ``portal``, ``qlm``, ``pages``) or ``other``.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Literal

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUESTS = Counter(
    "licensor_requests", "Requests answered, by endpoint and HTTP status", ["endpoint", "status"]
)
LATENCY = Histogram(
    "licensor_request_seconds",
    "Time to answer, by endpoint",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REFUSALS = Counter("licensor_refusals", "Refusals by error code", ["code"])
CHECK_ANSWERS = Counter(
    "licensor_check_answers",
    "Check answers by how they were made: kept (served again from memory), "
    "same_rows (read again, unchanged: the kept bytes), made (made and signed)",
    ["source"],
)
AREAS = (
    ("/api/management/", "management"),
    ("/console", "console"),
    ("/portal", "portal"),
    ("/qlm", "qlm"),
    ("/offline", "pages"),
)
ERROR_BODY_MAX = 4096


def scrape() -> tuple[bytes, str]:
    """The metrics of every worker (one process without the multiprocess directory)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def token_ok(configured: str | None, authorization: str | None) -> bool:
    """Whether ``authorization`` is ``Bearer <the configured token>`` (constant time)."""
    if not configured or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), configured.encode()
    )


RequestLog = Literal["off", "text", "json"]
log = logging.getLogger("licensor.requests")


def _request_id(scope: Scope) -> str:
    """The request's ``X-Request-ID`` when it is a sane one (1-64 printable, no spaces), else
    a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = bytes(value).decode("latin-1")
            if 0 < len(text) <= 64 and text.isprintable() and " " not in text:
                return text
            break
    return uuid.uuid4().hex


def configure_request_log(kind: RequestLog) -> None:
    """One line per request on standard error (``text`` or ``json``), or none (``off``)."""
    log.handlers.clear()
    log.propagate = False
    if kind == "off":
        log.disabled = True
        return
    log.disabled = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


class CountRequests:
    """The outermost ASGI layer: every answer counted, timed, and its refusal code noted; with
    a request log, one line for it (time, request id, method, endpoint, status, outcome code,
    milliseconds -- never a header, a key or a body) and its ``X-Request-ID`` answered back."""

    def __init__(self, app: ASGIApp, request_log: RequestLog = "off") -> None:
        self.app = app
        self.request_log = request_log

    @staticmethod
    def endpoint(path: str, status: int) -> str:
        """The label of a request: its License API path (one of the server's: no path that
        answered 404 or 405 makes a label), else its area."""
        if status in (404, 405):
            return "other"
        if path.startswith("/api/v4/") and len(path) <= 64:
            return path.rstrip("/")
        for prefix, area in AREAS:
            if path.startswith(prefix):
                return area
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()
        logged = self.request_log != "off"
        request_id = _request_id(scope) if logged else ""

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if logged:
                    headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and status >= 400:
                if len(body) < ERROR_BODY_MAX:
                    body.extend(message.get("body", b"")[: ERROR_BODY_MAX - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            endpoint = self.endpoint(scope["path"], status)
            seconds = time.perf_counter() - started
            REQUESTS.labels(endpoint, str(status)).inc()
            LATENCY.labels(endpoint).observe(seconds)
            code = _code_of(bytes(body), status) if status >= 400 else "ok"
            if status >= 400:
                REFUSALS.labels(code).inc()
            if logged:
                self._log(scope, request_id, endpoint, status, code, seconds)

    def _log(
        self, scope: Scope, request_id: str, endpoint: str, status: int, code: str, seconds: float
    ) -> None:
        fields = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "method": scope["method"],
            "endpoint": endpoint,
            "status": status,
            "code": code,
            "ms": round(seconds * 1000, 2),
        }
        if self.request_log == "json":
            log.info(orjson.dumps(fields).decode())
        else:
            log.info(" ".join(f"{name}={value}" for name, value in fields.items()))


def _code_of(body: bytes, status: int) -> str:
    """The ``code`` of an error body (the documented shape), else the status."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"http_{status}"
    code = found.get("code") if isinstance(found, dict) else None
    return code if isinstance(code, str) and len(code) <= 64 else f"http_{status}"
