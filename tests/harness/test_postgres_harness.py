"""Tests of the real-PostgreSQL test harness (tests/harness/postgres.py).

These start real PostgreSQL clusters; they need the server binaries
(`scripts/ensure-system-deps.sh` installs them). When run as root they exercise the
unprivileged-user path (the cluster is run by the `licensor-pg` account).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .postgres import SUPERUSER, UNPRIVILEGED_USER, PostgresServer, find_pg_binaries

TESTS_DIR = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _select_one(url: str) -> int:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            value: int = conn.execute(sa.text("SELECT 1")).scalar_one()
            return value
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


def test_finds_the_server_binaries() -> None:
    bins = find_pg_binaries()
    for path in (bins.initdb, bins.pg_ctl, bins.postgres):
        assert path.is_absolute()
        assert os.access(path, os.X_OK), path


def test_missing_binaries_error_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get install") as excinfo:
        find_pg_binaries(tmp_path)
    assert "ensure-system-deps.sh" in str(excinfo.value)


def test_url_and_select_one(server: PostgresServer) -> None:
    assert server.is_running
    assert server.user == SUPERUSER
    assert server.url == f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{server.port}/postgres"
    assert _select_one(server.url) == 1


def test_create_database_returns_url_of_new_empty_database(server: PostgresServer) -> None:
    url = server.create_database("harness_create")
    assert url == f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{server.port}/harness_create"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == (
                "harness_create"
            )
            tables = conn.execute(
                sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar_one()
            assert tables == 0
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (42)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar_one() == 42
        # The engine's pool still holds a connection: drop_database must cope with it.
        server.drop_database("harness_create")
    finally:
        engine.dispose()
    with server.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", ("harness_create",)
        ).fetchone()
    assert row == (0,)
    server.drop_database("harness_create")  # dropping a missing database is fine


def test_create_database_twice_fails(server: PostgresServer) -> None:
    server.create_database("harness_twice")
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        server.create_database("harness_twice")
    server.drop_database("harness_twice")


@pytest.mark.parametrize("name", ["", "1abc", "bad-name", 'x"; DROP DATABASE postgres; --'])
def test_database_names_are_validated(server: PostgresServer, name: str) -> None:
    with pytest.raises(ValueError, match="invalid database name"):
        server.create_database(name)
    with pytest.raises(ValueError, match="invalid database name"):
        server.drop_database(name)


def test_refuses_to_drop_system_databases(server: PostgresServer) -> None:
    for name in ("postgres", "template0", "template1"):
        with pytest.raises(ValueError, match="system database"):
            server.drop_database(name)


def test_server_settings(server: PostgresServer) -> None:
    expected = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(server.socket_dir),
        "server_encoding": "UTF8",
        "port": str(server.port),
    }
    with server.connect() as conn:
        for name, value in expected.items():
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            assert row == (value,), name
    assert server.socket_dir.parent == server.base_dir
    assert (server.socket_dir / f".s.PGSQL.{server.port}").exists()


def test_runs_as_an_unprivileged_user(server: PostgresServer) -> None:
    pid = server.postmaster_pid
    assert pid is not None
    assert _alive(pid)
    runner_uid = Path(f"/proc/{pid}").stat().st_uid
    assert runner_uid != 0
    assert server.data_dir.stat().st_uid == runner_uid
    assert pwd.getpwuid(runner_uid).pw_name == server.os_user
    if os.geteuid() == 0:
        assert server.os_user == UNPRIVILEGED_USER
    else:
        assert runner_uid == os.geteuid()


def test_stop_server_then_start_server_keeps_port_and_data() -> None:
    with PostgresServer() as pg:
        url = pg.create_database("harness_restart")
        with pg.connect("harness_restart") as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        port, pid = pg.port, pg.postmaster_pid
        assert pid is not None

        pg.stop_server()
        assert not pg.is_running
        assert pg.postmaster_pid is None
        assert _eventually(lambda: not _alive(pid), timeout=10)
        with pytest.raises(psycopg.OperationalError, match="refused"):
            pg.connect("harness_restart")
        with pytest.raises(sa.exc.OperationalError):
            _select_one(url)
        pg.stop_server()  # already stopped: no-op

        pg.start_server()
        assert pg.is_running
        assert pg.port == port
        assert pg.url_for("harness_restart") == url
        assert _select_one(url) == 1
        with pg.connect("harness_restart") as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("still here",)
        pg.start_server()  # already running: no-op
        assert _select_one(pg.url) == 1


def test_close_stops_the_server_and_removes_its_directory() -> None:
    pg = PostgresServer().start()
    base, port, pid = pg.base_dir, pg.port, pg.postmaster_pid
    assert pid is not None
    assert base.is_dir()
    assert _alive(pid)

    pg.close()
    assert not base.exists()
    assert not pg.is_running
    assert _eventually(lambda: not _alive(pid), timeout=10)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user=SUPERUSER, connect_timeout=2)
    pg.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        pg.start()


def test_close_while_stopped_removes_the_directory() -> None:
    pg = PostgresServer().start()
    pg.stop_server()
    pg.close()
    assert not pg.base_dir.exists()


def test_context_manager_starts_and_closes() -> None:
    with PostgresServer() as pg:
        base = pg.base_dir
        assert pg.is_running
        assert _select_one(pg.url) == 1
    assert not base.exists()


def test_start_failure_reports_the_server_log_and_cleans_up() -> None:
    class BrokenConfig(PostgresServer):
        def _write_config(self) -> None:
            super()._write_config()
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write("shared_buffers = 'no such size'\n")

    pg = BrokenConfig(ready_timeout=15)
    with pytest.raises(RuntimeError, match="server log tail") as excinfo:
        pg.start()
    assert "shared_buffers" in str(excinfo.value)
    assert not pg.base_dir.exists()


def _run_child(body: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """Run ``body`` in a fresh interpreter that has started a PostgresServer ``pg``."""
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from harness.postgres import PostgresServer
        pg = PostgresServer().start()
        info = {{"base": str(pg.base_dir), "pid": pg.postmaster_pid}}
        print(json.dumps(info), flush=True)
        """
    ) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr
    info: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, info


def _gone(info: dict[str, object]) -> bool:
    pid = info["pid"]
    assert isinstance(pid, int)
    return not _alive(pid) and not Path(str(info["base"])).exists()


def test_a_forgotten_server_is_closed_at_exit() -> None:
    proc, info = _run_child("sys.exit(0)\n")
    assert proc.returncode == 0, proc.stderr
    assert _eventually(lambda: _gone(info), timeout=10)


def test_a_killed_test_process_leaves_nothing_behind() -> None:
    # SIGKILL: no atexit hook, no finally. The watchdog must stop the server and clean up.
    proc, info = _run_child("os.kill(os.getpid(), signal.SIGKILL)\n")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _eventually(lambda: _gone(info), timeout=30)
