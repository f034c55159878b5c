"""The ASGI application."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from licensor import __version__, metrics
from licensor.api.console import router as console_router
from licensor.api.errors import error_response, install_error_handlers
from licensor.api.management.endpoints import router as management_router
from licensor.api.middleware import LimitBody, SignResponses
from licensor.api.pages.offline import PAGE_BODY_LIMITS
from licensor.api.pages.offline import router as offline_page_router
from licensor.api.pages.render import too_large
from licensor.api.portal import router as portal_router
from licensor.api.qlm.endpoints import router as qlm_router
from licensor.api.state import AppState
from licensor.api.v4 import offline as _offline_routes  # noqa: F401 (registers its routes)
from licensor.api.v4.activation import ActivationFront
from licensor.api.v4.check import CheckFront
from licensor.api.v4.computer_keys import router as computer_keys_router
from licensor.api.v4.endpoints import json_answer, router, well_known_router
from licensor.keyring import Keyring
from licensor.settings import Settings
from licensor.store import migrate

log = logging.getLogger("licensor.api")


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """What start-up made (modules, the application, its engines) lives as long as the
    process: out of the collector's sight, its full collections -- each visits every tracked
    object of the heap -- stop visiting it. Measured on a 2-core machine: without this, the
    two full collections the first minute of checks brought took 174 and 217 ms, which was
    that minute's check p99 (338 ms; 50 ms with it). Once per process (the first application
    started: a server process has one; a test process starts many, which must stay
    collectable)."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.collect()
        gc.freeze()


def _rank(first: tuple[str, ...], path: str) -> int:
    trimmed = path.rstrip("/")
    return first.index(trimmed) if trimmed in first else len(first)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.open(settings)
        app.state.licensor = state
        # Fewer request threads than anyio's default 40: past the database pool size they only
        # queue for connections and fight over the GIL.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        if settings.gil_switch_interval_ms > 0:
            sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        _freeze_startup_objects()
        log.info("server.started", extra={"database": state.db.url.split(":", 1)[0]})
        try:
            yield
        finally:
            state.close()

    # (Swagger UI from files installed with Licensor: no page loads anything from outside the
    # server, which may have no internet. No ReDoc: its page loads its logo from a CDN.)
    app = FastAPIOffline(
        redoc_url=None,
        title="Licensor",
        version=__version__,
        description="Self-hosted licensing server speaking the License API v4.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    install_error_handlers(app)
    # the use cases every application calls first in the documentation (their routes are
    # registered last, by their fronts' modules)
    first = ("/api/v4/activate_license", "/api/v4/check_license", "/api/v4/deactivate_license")
    router.routes.sort(key=lambda r: _rank(first, getattr(r, "path", "")))
    app.include_router(router)
    app.include_router(computer_keys_router)
    app.include_router(qlm_router)
    app.include_router(well_known_router)
    app.include_router(management_router)
    app.include_router(offline_page_router)
    app.include_router(console_router)
    app.include_router(portal_router)

    @app.get("/health", tags=["Operations"])
    def health(request: Request) -> Response:
        state: AppState = request.app.state.licensor
        try:
            with state.db.transaction() as session:
                session.execute(text("SELECT 1"))
        except Exception:
            return error_response("service_unavailable", "The license database is unavailable")
        return json_answer({"status": "ok", "version": __version__})

    @app.get("/metrics", tags=["Operations"], include_in_schema=False)
    def metrics_page(request: Request) -> Response:
        """Prometheus metrics, with ``Authorization: Bearer <LICENSOR_METRICS_TOKEN>``."""
        token = settings.metrics_token
        if not token:
            return error_response("not_found", "Metrics are off: set LICENSOR_METRICS_TOKEN")
        if not metrics.token_ok(token, request.headers.get("authorization")):
            return error_response("unauthorized", "The metrics token is missing or wrong")
        content, media_type = metrics.scrape()
        return Response(content, media_type=media_type, headers={"Cache-Control": "no-store"})

    @app.get("/ready", tags=["Operations"])
    def ready(request: Request) -> Response:
        """Readiness: the database answers and its schema is this version's (``/health``:
        the process and the database are up)."""
        state: AppState = request.app.state.licensor
        try:
            with state.db.transaction() as session:
                found = migrate.current_revision(session.connection())
        except Exception:
            return error_response("service_unavailable", "The license database is unavailable")
        head = migrate.head_revision()
        if found != head:
            return error_response(
                "service_unavailable", f"The database schema is {found}, not {head}: migrate"
            )
        return json_answer({"status": "ready", "version": __version__, "schema": head})

    def keyring() -> Keyring:
        state: AppState = app.state.licensor
        return state.keys.keyring

    app.add_middleware(
        LimitBody,
        max_bytes=settings.max_body_bytes,
        pages=PAGE_BODY_LIMITS,
        page_refusal=too_large,
    )
    app.add_middleware(SignResponses, keyring=keyring)
    if settings.fast_activation:
        threads = settings.fast_activation_threads
        if threads is None:
            threads = 0 if settings.resolved_database_url.startswith("sqlite") else 1
        app.add_middleware(ActivationFront, state=lambda: app.state.licensor, threads=threads)
    if settings.fast_check:
        app.add_middleware(
            CheckFront,
            state=lambda: app.state.licensor,
            threads=settings.fast_check_threads,
            cache_entries=settings.check_cache_entries,
        )
    metrics.configure_request_log(settings.request_log)
    app.add_middleware(metrics.CountRequests, request_log=settings.request_log)
    return app
