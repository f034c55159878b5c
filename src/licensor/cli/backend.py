"""Where CLI vendor commands run: on this host's database, or through a server's management API.

Both answer the same JSON shapes (the management API's), so commands render them one way.
"""

from __future__ import annotations

import atexit
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import platformdirs
from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.services import catalogue, management
from licensor.services.management import Admin
from licensor.settings import Settings
from licensor.store import migrate
from licensor.store.db import Database

T = TypeVar("T")
CONFIG_FILE = Path(platformdirs.user_config_dir("licensor")) / "cli.json"


class BackendError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(Protocol):
    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any: ...


@dataclass
class RemoteBackend:
    """The management API of a running server (``--server``, token from env or config)."""

    server: str
    token: str

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = httpx.request(
                method,
                self.server.rstrip("/") + "/api/management/v1" + path,
                params=clean,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            raise BackendError("unreachable", f"cannot reach {self.server}: {exc}") from None
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            raise BackendError(
                "bad_answer", f"{response.status_code}: {response.text[:200]}"
            ) from None
        if response.status_code >= 400:
            raise BackendError(str(data.get("code", "error")), str(data.get("message", data)))
        return data


@dataclass
class LocalBackend:
    """This host's database, as the company's administrator (no token needed)."""

    settings: Settings
    company: str | None
    _db: Database | None = field(default=None, init=False, repr=False)

    def database(self) -> Database:
        """Migrated and opened once per command, however many calls the command makes."""
        if self._db is None:
            migrate.upgrade(self.settings.resolved_database_url)
            self._db = Database(self.settings.resolved_database_url)
            atexit.register(self._db.dispose)
        return self._db

    def run(self, action: Callable[[Session, Admin], T]) -> T:
        try:
            with self.database().transaction(write=True) as session:
                company = catalogue.resolve_company(session, self.company)
                return action(session, management.local_admin(company.id))
        except LicensorError as exc:
            raise BackendError(exc.code, exc.message) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Route a management-API-shaped call to the service directly."""
        from licensor.cli import local_routes

        if method == "POST" and path.startswith("/offline/"):
            self.database()  # (migrated)
            try:
                return local_routes.take_file(self.settings, self.company, path, body or {})
            except LicensorError as exc:
                raise BackendError(exc.code, exc.message) from None
        return self.run(
            lambda s, a: local_routes.dispatch(
                s, a, self.settings, method, path, params or {}, body or {}, datetime.now(UTC)
            )
        )


def choose(server: str | None, company: str | None) -> Backend:
    server = server or os.environ.get("LICENSOR_SERVER")
    config: dict[str, str] = {}
    if CONFIG_FILE.exists():
        config = json.loads(CONFIG_FILE.read_text())
    server = server or config.get("server")
    if server:
        token = os.environ.get("LICENSOR_ADMIN_TOKEN") or config.get("token")
        if not token:
            raise BackendError(
                "unauthorized",
                f"set LICENSOR_ADMIN_TOKEN (or `token` in {CONFIG_FILE}) to talk to {server}",
            )
        return RemoteBackend(server, token)
    return LocalBackend(Settings(), company)
