"""What the running server holds: the database and the keys. Built at start-up, not at import."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from licensor.keyring import Keyring
from licensor.secrets_at_rest import MasterKey
from licensor.services.context import ServerKeys
from licensor.settings import Settings
from licensor.store.db import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    keys: ServerKeys

    @classmethod
    def open(cls, settings: Settings) -> AppState:
        keyring = Keyring.load_or_create(
            settings.resolved_keys_dir, rsa_key_size=settings.rsa_key_size
        )
        master_key = MasterKey.load_or_create(settings.data_dir, settings.master_key)
        db = Database(
            settings.resolved_database_url,
            pool_size=settings.db_pool_size,
            connect_timeout=settings.db_connect_timeout_seconds,
            background_checkpoint=settings.sqlite_background_checkpoint,
        )
        return cls(settings, db, ServerKeys(keyring, master_key, settings))

    def close(self) -> None:
        self.db.dispose()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.licensor
    return state
