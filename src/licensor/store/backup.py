"""Backups of the license database, taken while the server serves, and their restore.

SQLite: the online backup API (``sqlite3.Connection.backup``): a consistent copy of the
database as of one moment, while writers go on. PostgreSQL: ``pg_dump`` in its custom format,
restored with ``pg_restore``. A backup holds the database only: the signing keys
(``LICENSOR_KEYS_DIR``, default ``DATA_DIR/keys``) and the master key (``LICENSOR_MASTER_KEY``
or ``DATA_DIR/master.key``) are kept apart -- without the same keys, restored answers do not
verify with the public keys the applications embed, and the stored shared keys cannot be read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"


class BackupError(Exception):
    """A backup or restore that could not be done (the message says why)."""


def _sqlite_path(url: str) -> Path:
    found = make_url(url).database
    if not found or found == ":memory:":
        raise BackupError("this SQLite database has no file to back up")
    return Path(found)


def _pg(url: str) -> tuple[str, dict[str, str]]:
    """The URL as libpq takes it (no driver name, no password: that goes in ``PGPASSWORD``,
    never on a command line other users can read) and the tools' environment."""
    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is needed (Debian: apt-get install postgresql-client)")
    return found


def backup(url: str, target: Path) -> None:
    """Write a consistent backup of the database of ``url`` to ``target`` (written next to
    it first, then moved into place: a failed backup leaves no half file)."""
    target = target.resolve()
    partial = target.with_name(f".{target.name}.partial")
    try:
        if make_url(url).get_backend_name() == "sqlite":
            source = sqlite3.connect(_sqlite_path(url))
            copy = sqlite3.connect(partial)
            try:
                with copy:
                    source.backup(copy)
            finally:
                copy.close()
                source.close()
        else:
            where, env = _pg(url)
            subprocess.run(  # noqa: S603 - an argument list of ours, no shell
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(partial), where],
                env=env,
                check=True,
                capture_output=True,
            )
        os.replace(partial, target)
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"pg_dump failed: {exc.stderr.decode(errors='replace')}") from None
    finally:
        partial.unlink(missing_ok=True)


def restore(url: str, source: Path, *, force: bool = False) -> None:
    """Restore the backup ``source`` into the database of ``url``: an empty one (a SQLite file
    that does not exist yet, a PostgreSQL database without tables), or replace it with
    ``force``."""
    head = source.read_bytes()[:16]
    if make_url(url).get_backend_name() == "sqlite":
        if not head.startswith(SQLITE_MAGIC):
            raise BackupError(f"{source} is not a SQLite backup")
        path = _sqlite_path(url)
        if path.exists() and not force:
            raise BackupError(f"{path} exists: restore into a fresh data directory, or --force")
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, path)
        return
    if not head.startswith(PG_MAGIC):
        raise BackupError(f"{source} is not a pg_dump custom-format backup")
    command = [_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction"]
    if force:
        command += ["--clean", "--if-exists"]
    where, env = _pg(url)
    try:
        subprocess.run(  # noqa: S603 - an argument list of ours, no shell
            [*command, "--dbname", where, str(source)], env=env, check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        raise BackupError(f"pg_restore failed: {exc.stderr.decode(errors='replace')}") from None
