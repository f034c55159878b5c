"""One place that turns every failure into ``{"status", "code", "message"}``; never a stack trace."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping

import psycopg
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from licensor.core.errors import LicensorError, RateLimited
from licensor.protocol.errors import ERROR_CODES
from licensor.protocol.signing import compact_json

log = logging.getLogger("licensor.api")


def error_parts(
    code: str,
    message: str | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    """The status, body and headers of the error answer ``{"status", "code", "message"}``."""
    spec = ERROR_CODES.get(code)
    status = status if status is not None else (spec.status if spec else 400)
    message = message if message is not None else (spec.message if spec else code)
    found = dict(headers or {})
    if status in (429, 503):
        found.setdefault("Retry-After", "1")
    return status, compact_json({"status": status, "code": code, "message": message}), found


def refusal_parts(error: LicensorError) -> tuple[int, bytes, dict[str, str]]:
    """The answer to a refusal (``Retry-After`` on a 429)."""
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, RateLimited) else {}
    return error_parts(error.code, error.message, error.status, headers)


def failure_parts(exc: Exception) -> tuple[int, bytes, dict[str, str]]:
    """The answer to a failure that is no refusal, as the handlers below answer it, for the
    fronts that run without the framework (``api/v4/activation.py``, ``check.py``): their
    statements raise the drivers' own errors, not SQLAlchemy's."""
    if isinstance(exc, IntegrityError | sqlite3.IntegrityError | psycopg.IntegrityError):
        log.info("request.conflict", extra={"error": type(exc).__name__})
        return error_parts("conflict")
    if isinstance(exc, DataError | sqlite3.DataError | psycopg.DataError):
        log.warning("request.data_error", extra={"error": type(exc).__name__})
        return error_parts("validation_error", "A value does not fit its field")
    if isinstance(exc, DBAPIError | PoolTimeout | sqlite3.Error | psycopg.Error | OSError):
        # the type only: a driver's message can carry the statement's parameters
        log.warning("database.unavailable", extra={"error": type(exc).__name__})
        return error_parts("service_unavailable", "The license database is unavailable")
    log.error("request.failed", extra={"error": type(exc).__name__}, exc_info=exc)
    return error_parts("internal_error", "Internal server error", 500)


def error_response(
    code: str,
    message: str | None = None,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    status, content, found = error_parts(code, message, status, headers)
    return Response(content, status_code=status, media_type="application/json", headers=found)


def install_error_handlers(app: FastAPI) -> None:
    async def licensor_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LicensorError)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return error_response(exc.code, exc.message, exc.status, headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response("validation_error", describe_validation(exc.errors()))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "validation_error"
        )
        message = None if exc.status_code in (404, 405) else str(exc.detail)
        # keeps ``Allow`` on 405 answers (RFC 9110 §15.5.6)
        return error_response(code, message, exc.status_code, exc.headers)

    async def database_unavailable(_request: Request, exc: Exception) -> Response:
        log.warning("database.unavailable", extra={"error": type(exc).__name__})
        return error_response("service_unavailable", "The license database is unavailable")

    async def conflict(_request: Request, exc: Exception) -> Response:
        log.info("request.conflict", extra={"error": type(exc).__name__})
        return error_response("conflict")

    async def out_of_range(_request: Request, exc: Exception) -> Response:
        log.warning("request.data_error", extra={"error": type(exc).__name__})
        return error_response("validation_error", "A value does not fit its field")

    app.add_exception_handler(LicensorError, licensor_error)
    app.add_exception_handler(IntegrityError, conflict)
    app.add_exception_handler(DataError, out_of_range)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(PoolTimeout, database_unavailable)
    app.add_exception_handler(DBAPIError, database_unavailable)


def describe_validation(errors: object) -> str:
    """``field: problem; field: problem`` from pydantic's error list."""
    parts = []
    for error in errors if isinstance(errors, list | tuple) else []:
        location = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is not valid"
