"""ASGI middleware: sign every response over its exact bytes; refuse oversized bodies early."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licensor.core.errors import LicensorError
from licensor.keyring import Keyring
from licensor.protocol.signing import SignatureAlgorithm, compact_json

log = logging.getLogger("licensor.api")

# FastAPI's documentation pages (exact paths: an unknown path under them is a signed 404), and
# the files they load, served by Licensor itself (fastapi-offline).
UNSIGNED_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})
DOCS_ASSETS = "/static-offline-docs/"
ACCEPT_SIGNATURE_HEADER = b"licensor-accept-signature"


def requested_algorithm(headers: list[tuple[bytes, bytes]]) -> SignatureAlgorithm:
    for name, value in headers:
        if name == ACCEPT_SIGNATURE_HEADER:
            return accepted_algorithm(value.decode("latin-1"))
    return "rsa-sha256"


def accepted_algorithm(value: str) -> SignatureAlgorithm:
    """The signature a ``Licensor-Accept-Signature`` value asks for (RSA unless Ed25519)."""
    return "ed25519" if "ed25519" in value.lower() else "rsa-sha256"


class SignResponses:
    """Adds ``LicenseSignature`` (RSA) or ``Licensor-Signature`` (Ed25519) over the body bytes.

    Also turns an unexpected exception into a signed 500 ``internal_error`` answer.
    """

    def __init__(self, app: ASGIApp, keyring: Callable[[], Keyring]) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in UNSIGNED_PATHS
            or scope["path"].startswith(DOCS_ASSETS)
        ):
            await self.app(scope, receive, send)
            return
        algorithm = requested_algorithm(scope["headers"])
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def finish(message_start: Message, body: bytes) -> None:
            keyring = self.keyring()
            if algorithm == "rsa-sha256":
                # ~1 ms of CPU: keep it off the event loop.
                signed = await anyio.to_thread.run_sync(keyring.signature_headers, body, algorithm)
            else:
                signed = keyring.signature_headers(body, algorithm)
            headers = list(message_start.get("headers", []))
            headers.extend((k.lower().encode(), v.encode()) for k, v in signed.items())
            await send({**message_start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start["message"] = message
                return
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await finish(start["message"], b"".join(chunks))
                return
            await send(message)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            log.exception("request.unhandled_error", extra={"path": scope["path"]})
            if "message" in start:
                raise
            body = compact_json(
                {"status": 500, "code": "internal_error", "message": "Internal server error"}
            )
            await finish(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                },
                body,
            )


class PayloadTooLarge(LicensorError):
    def __init__(self, limit: int) -> None:
        super().__init__("payload_too_large", f"The request body is larger than {limit} bytes")


class LimitBody:
    """Refuse a request body over ``max_bytes`` (413 ``payload_too_large``). ``pages``: paths
    of HTML forms with their own limit, refused with the page ``page_refusal(path, limit)``
    makes (its body and headers); a browser shows the answer only if it could send its body,
    so a page's limit is generous and its handler judges the file."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        pages: Mapping[str, int] | None = None,
        page_refusal: Callable[[str, int], tuple[bytes, Mapping[str, str]]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.pages = dict(pages or {})
        assert page_refusal is not None or not self.pages
        self.page_refusal = page_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = scope["path"] in self.pages
        limit = self.pages.get(scope["path"], self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._refuse(send, scope["path"], limit, page)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, path: str, limit: int, page: bool) -> None:
        if page and self.page_refusal is not None:
            body, headers = self.page_refusal(path, limit)
        else:
            message = f"The request body is larger than {limit} bytes"
            body = compact_json({"status": 413, "code": "payload_too_large", "message": message})
            headers = {"Content-Type": "application/json"}
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
