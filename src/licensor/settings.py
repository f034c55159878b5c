"""One settings class; every value can come from a ``LICENSOR_*`` environment variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LICENSOR_", extra="ignore")

    data_dir: Path = Field(default=Path("licensor-data"))
    database_url: str | None = None
    keys_dir: Path | None = None
    # Base64 of 32 random bytes; when unset, a key file in the data directory is used.
    master_key: str | None = Field(default=None, repr=False)
    # /metrics answers only with "Authorization: Bearer <this token>" (unset: no /metrics)
    metrics_token: str | None = Field(default=None, repr=False)
    # one line per request on standard error: off, text (name=value) or json
    request_log: Literal["off", "text", "json"] = "off"
    rsa_key_size: int = 2048
    date_window_seconds: int = 15 * 60
    oauth_token_ttl_seconds: int = 480
    max_body_bytes: int = 64 * 1024
    public_url: str | None = None
    idempotency_ttl_hours: int = 24
    db_pool_size: int = 10
    request_threads: int = 8
    # Checks answered by their front layer without the framework (api/v4/check.py), with
    # kept answers; off = by the FastAPI route (same answers, no answers kept).
    fast_check: bool = True
    # Failed License API attempts (unknown key, wrong password) per window before 429
    # (services/rate_limit.py); 0 = no limit.
    rate_limit_window_seconds: int = Field(default=600, ge=1, le=86_400)
    rate_limit_client_failures: int = Field(default=30, ge=0)
    rate_limit_license_failures: int = Field(default=10, ge=0)
    # Authorization codes e-mailed per (product, e-mail address) and window; 0 = no limit.
    rate_limit_code_requests: int = Field(default=5, ge=0)
    # License answers (activation, check) are dated to a step of this many seconds, offset per
    # device (services/payload.answer_date): an unchanged check answer is then the same bytes
    # for the whole step, signed once and served from memory (api/v4/check.py).
    # 0 = the exact second (every check answer is signed anew).
    answer_date_step_seconds: int = Field(default=60, ge=0, le=3600)
    # Signed check answers kept in memory per worker process (0 = no cache).
    check_cache_entries: int = Field(default=20_000, ge=0, le=1_000_000)
    fast_check_threads: int = Field(default=2, ge=1, le=64)
    # Activations and deactivations answered by their front layer without the framework
    # (api/v4/activation.py); off = by the FastAPI routes (same answers).
    fast_activation: bool = True
    # Where they run: 0 = on the event loop, N = in N threads of their own; unset = the
    # measured best per database: the event loop on SQLite, 1 thread on PostgreSQL (network
    # waits stay off the loop).
    fast_activation_threads: int | None = Field(default=None, ge=0, le=64)
    # SQLite: copy the write-ahead log back into the database file from a thread of each
    # worker (store/db.py Checkpointer), not inside the commit of whichever writer fills it
    # (SQLite's default, which makes every other writer wait for it). off = SQLite's default.
    sqlite_background_checkpoint: bool = True
    # The interpreter's GIL switch interval in each server process (Python's default is 5 ms):
    # a thread finishing a request waits less to hand the answer to the event loop.
    # 0 = leave Python's default.
    gil_switch_interval_ms: float = Field(default=0.5, ge=0, le=100)
    db_connect_timeout_seconds: int = 3
    # Outgoing mail (authorization codes). No host = mail is not configured.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_from: str = "licensor@localhost"
    smtp_timeout_seconds: float = 10.0
    smtp_ca_file: Path | None = None  # trust this CA (PEM) instead of the system's
    # string.Template file: a "Subject: ..." line, a blank line, then the body.
    authorization_code_template: Path | None = None

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'licensor.db').resolve()}"

    @cached_property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir if self.keys_dir is not None else self.data_dir / "keys"
