"""A throwaway, real PostgreSQL server for the test suite.

``PostgresServer`` runs ``initdb`` into a fresh temporary directory and starts the cluster with
``pg_ctl`` on ``127.0.0.1`` at a free TCP port (unix socket inside the temporary directory),
tuned for speed rather than durability (``fsync=off`` and friends). Tests get SQLAlchemy URLs
of fresh, empty databases from :meth:`PostgresServer.create_database`.

PostgreSQL refuses to run as root. When the tests run as root, the cluster is owned and run by
the unprivileged system account ``licensor-pg``, which is created on first use.

Nothing is left behind:

* :meth:`PostgresServer.close` (also called by ``__exit__``) stops the server immediately and
  deletes the temporary directory;
* an ``atexit`` hook closes servers the tests forgot to close;
* a small detached watchdog process does the same if the Python process dies without running
  ``atexit`` hooks (SIGKILL, segfault, ``os._exit``).

:meth:`PostgresServer.stop_server` / :meth:`PostgresServer.start_server` stop and restart the
same cluster (same port, same data), for "database down, then back" tests.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

__all__ = [
    "INSTALL_HINT",
    "SUPERUSER",
    "UNPRIVILEGED_USER",
    "PgBinaries",
    "PostgresServer",
    "ensure_unprivileged_user",
    "find_pg_binaries",
]

#: OS account that owns and runs the cluster when the tests run as root.
UNPRIVILEGED_USER = "licensor-pg"
#: Database superuser created by ``initdb`` (authentication: trust).
SUPERUSER = "postgres"
HOST = "127.0.0.1"
INSTALL_HINT = (
    "install them with `scripts/ensure-system-deps.sh` "
    "(on Debian/Ubuntu: `apt-get install -y --no-install-recommends postgresql`)"
)

_BINARY_NAMES = ("initdb", "pg_ctl", "postgres")
_PG_LIB = Path("/usr/lib/postgresql")
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PROTECTED_DBS = frozenset({"postgres", "template0", "template1"})
_BIND_FAILURE_MARKERS = ("could not create any TCP/IP sockets", "Address already in use")
_MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_PORT_ATTEMPTS = 5

# Runs detached, in its own session, as `python -I -S -c _WATCHDOG parent_pid base data pg_ctl
# uid gid`. When its parent (the test process) is gone without having closed the server, it
# stops the cluster and removes the temporary directory. close() terminates it.
_WATCHDOG = r"""# licensor test harness: PostgreSQL watchdog
import os, shutil, signal, subprocess, sys, time
parent, base, data, pg_ctl, uid, gid = sys.argv[1:7]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.getppid() == int(parent):
    time.sleep(0.5)
if os.path.exists(os.path.join(data, "postmaster.pid")):
    who = {} if uid == "-" else {"user": int(uid), "group": int(gid), "extra_groups": []}
    try:
        subprocess.run([pg_ctl, "stop", "-D", data, "-m", "immediate", "-w", "-t", "30", "-s"],
                       cwd=base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, **who)
    except Exception:
        pass
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            os.kill(int(f.readline()), signal.SIGKILL)
    except Exception:
        pass
shutil.rmtree(base, ignore_errors=True)
"""


@dataclass(frozen=True)
class PgBinaries:
    """Absolute paths of the PostgreSQL server programs the harness needs."""

    initdb: Path
    pg_ctl: Path
    postgres: Path


def _version_key(name: str) -> tuple[int, ...] | None:
    if re.fullmatch(r"\d+(\.\d+)*", name) is None:
        return None
    return tuple(int(part) for part in name.split("."))


def _binaries_in(directory: Path) -> PgBinaries | None:
    paths = [directory / name for name in _BINARY_NAMES]
    if all(p.is_file() and os.access(p, os.X_OK) for p in paths):
        return PgBinaries(*paths)
    return None


def find_pg_binaries(bin_dir: str | os.PathLike[str] | None = None) -> PgBinaries:
    """Locate ``initdb``, ``pg_ctl`` and ``postgres``.

    Looks in ``bin_dir`` when given; otherwise in the newest ``/usr/lib/postgresql/<version>/bin``
    that has all three (Debian's layout, not on ``PATH``), then on ``PATH``.
    Raises ``RuntimeError`` with the install command when they cannot be found.
    """
    if bin_dir is not None:
        found = _binaries_in(Path(bin_dir))
        if found is None:
            raise RuntimeError(
                f"PostgreSQL server binaries {', '.join(_BINARY_NAMES)} not all found in "
                f"{bin_dir}; {INSTALL_HINT}"
            )
        return found
    candidates: list[tuple[tuple[int, ...], Path]] = []
    with contextlib.suppress(OSError):
        for entry in _PG_LIB.iterdir():
            key = _version_key(entry.name)
            if key is not None:
                candidates.append((key, entry / "bin"))
    for _key, directory in sorted(candidates, reverse=True):
        found = _binaries_in(directory)
        if found is not None:
            return found
    on_path = [shutil.which(name) for name in _BINARY_NAMES]
    if all(on_path):
        # Resolve symlinks: initdb and pg_ctl look for `postgres` next to their real location.
        return PgBinaries(*(Path(p).resolve() for p in on_path if p is not None))
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        f"{_PG_LIB}/<version>/bin nor on PATH; {INSTALL_HINT}"
    )


def ensure_unprivileged_user(name: str = UNPRIVILEGED_USER) -> tuple[int, int]:
    """Return ``(uid, gid)`` of the system account ``name``, creating it first if needed.

    Idempotent and safe against concurrent callers (pytest-xdist workers): creation is
    serialised with a file lock. Needs root to create the account.
    """
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(name)
        return entry.pw_uid, entry.pw_gid
    lock_path = Path(tempfile.gettempdir()) / f"{name}-useradd.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            search = f"{os.environ.get('PATH', '')}:{_SBIN_PATH}"
            useradd = shutil.which("useradd", path=search)
            if useradd is None:
                raise RuntimeError(
                    f"cannot create the system user {name!r} to run PostgreSQL (which refuses to "
                    "run as root): `useradd` not found; create it by hand or run the tests as "
                    "a non-root user"
                ) from None
            proc = subprocess.run(
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    name,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            # 9: the name is already in use (created by someone else meanwhile).
            if proc.returncode not in (0, 9):
                raise RuntimeError(
                    f"`useradd {name}` failed with exit code {proc.returncode}: "
                    f"{proc.stderr.strip() or proc.stdout.strip()}"
                ) from None
            entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _traversable_by_others(path: Path) -> bool:
    for directory in (path, *path.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_port() -> int:
    """A port that is free right now, preferably below the kernel's ephemeral range.

    Below the ephemeral range, the port cannot be taken by some client connection's source
    port while the server is stopped (stop_server/start_server keep the same port).
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 11000:
        for _ in range(50):
            port = random.randint(10000, low - 1)
            if _port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        chosen: int = probe.getsockname()[1]
        return chosen


def _pid_alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields[0] not in ("Z", "X")


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, for tests.

    Usage::

        with PostgresServer() as pg:          # or: pg = PostgresServer().start(); ...; pg.close()
            url = pg.create_database("t1")    # postgresql+psycopg://postgres@127.0.0.1:PORT/t1
            ...
            pg.stop_server()                  # database down (connections refused)
            pg.start_server()                 # back, same port and data

    ``settings``: postgresql.conf values that replace the harness's own or add to them (e.g.
    ``{"shared_buffers": "1GB"}`` for the benchmark).
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        tmp_root: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._bin_dir = bin_dir
        self._settings = dict(settings or {})
        self._tmp_root = None if tmp_root is None else Path(tmp_root)
        self.ready_timeout = ready_timeout
        self._bins: PgBinaries | None = None
        self._base: Path | None = None
        self._port: int | None = None
        self._uid: int | None = None  # set when running the cluster as UNPRIVILEGED_USER
        self._gid: int | None = None
        self._running = False
        self._closed = False
        self._owner_pid = os.getpid()
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._env: dict[str, str] = {}

    # ------------------------------------------------------------------ properties

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PostgresServer is not started")
        return self._port

    @property
    def user(self) -> str:
        """The database superuser (trust authentication, no password)."""
        return SUPERUSER

    @property
    def os_user(self) -> str:
        """The OS account that owns the data directory and runs ``postgres``."""
        if self._uid is not None:
            return UNPRIVILEGED_USER
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    @property
    def base_dir(self) -> Path:
        """The temporary directory holding the data directory, socket and log."""
        if self._base is None:
            raise RuntimeError("PostgresServer is not started")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def postmaster_pid(self) -> int | None:
        """PID of the running postmaster, from ``postmaster.pid``; ``None`` when stopped."""
        if self._base is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection (autocommit unless overridden) to ``dbname``."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(host=HOST, port=self.port, user=SUPERUSER, dbname=dbname, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Create the cluster in a new temporary directory and start it. Returns ``self``."""
        if self._closed:
            raise RuntimeError("PostgresServer was closed; create a new one")
        if self._base is not None:
            raise RuntimeError("PostgresServer.start() called twice")
        self._bins = find_pg_binaries(self._bin_dir)
        if os.geteuid() == 0:
            self._uid, self._gid = ensure_unprivileged_user()
        tmp_root = self._choose_tmp_root()
        self._base = Path(tempfile.mkdtemp(prefix="lpg-", dir=tmp_root))
        # From here on, whatever happens, close() (or the atexit hook, or the watchdog) cleans up.
        atexit.register(self._atexit_close)
        try:
            self._start_watchdog()
            self._env = self._child_env()
            self.socket_dir.mkdir(mode=0o700)
            if self._uid is not None and self._gid is not None:
                for path in (self._base, self.socket_dir):
                    os.chown(path, self._uid, self._gid)
            socket_path = self.socket_dir / ".s.PGSQL.65535"
            if len(str(socket_path)) > _MAX_SOCKET_PATH:
                raise RuntimeError(
                    f"temporary directory {self._base} is too deep for a unix socket path "
                    f"({socket_path}); pass a shorter tmp_root or set TMPDIR=/tmp"
                )
            self._initdb()
            self._write_config()
            self._first_start()
        except BaseException:
            self.close()
            raise
        return self

    def stop_server(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``), keeping the cluster and its data."""
        self._require_started()
        if not self._running:
            return
        proc = self._pg_ctl("stop", "-m", "fast", timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(self._failure("pg_ctl stop -m fast failed", proc))
        self._running = False

    def start_server(self) -> None:
        """Start the stopped cluster again, on the same port and with the same data."""
        self._require_started()
        if self._running:
            return
        deadline = time.monotonic() + self.ready_timeout
        while True:
            offset = self._log_size()
            proc = self._pg_ctl_start(self.port)
            if proc.returncode == 0:
                break
            if self._bind_failed(offset) and time.monotonic() < deadline:
                time.sleep(0.5)  # our port is briefly taken by someone else; it must stay ours
                continue
            raise RuntimeError(self._failure(f"pg_ctl start (port {self.port}) failed", proc))
        self._running = True
        self._wait_ready()

    def close(self) -> None:
        """Stop the server immediately (``pg_ctl stop -m immediate``), delete its directory.

        Idempotent; safe to call on a server that failed half-way through ``start()``.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._base is not None:
                self._kill_cluster()
                shutil.rmtree(self._base, ignore_errors=True)
                if self._base.exists():
                    raise RuntimeError(f"could not remove {self._base}")
        finally:
            self._running = False
            self._stop_watchdog()
            atexit.unregister(self._atexit_close)

    def __enter__(self) -> Self:
        if self._base is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ databases

    def create_database(self, name: str) -> str:
        """Create a new, empty database and return its SQLAlchemy URL."""
        self._check_db_name(name)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(name)
                )
            )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its open connections."""
        self._check_db_name(name)
        if name in _PROTECTED_DBS:
            raise ValueError(f"refusing to drop the system database {name!r}")
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # ------------------------------------------------------------------ diagnostics

    def log_tail(self, max_lines: int = 60) -> str:
        """The last lines of the server log (empty string when there is none)."""
        if self._base is None:
            return ""
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-max_lines:])

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_db_name(name: str) -> None:
        if _DB_NAME.fullmatch(name) is None:
            raise ValueError(
                f"invalid database name {name!r}: use letters, digits and underscores "
                "(not starting with a digit), at most 63 characters"
            )

    def _require_started(self) -> None:
        if self._base is None or self._closed or self._port is None:
            raise RuntimeError("PostgresServer is not started (or already closed)")

    def _choose_tmp_root(self) -> Path:
        root = self._tmp_root if self._tmp_root is not None else Path(tempfile.gettempdir())
        if self._uid is not None and not _traversable_by_others(root):
            # The unprivileged account must be able to reach its directory.
            fallback = Path("/tmp")
            if self._tmp_root is None and _traversable_by_others(fallback):
                return fallback
            raise RuntimeError(
                f"{root} is not reachable by the unprivileged user {UNPRIVILEGED_USER!r}; "
                "pass a tmp_root whose parents are all world-executable"
            )
        return root

    def _child_env(self) -> dict[str, str]:
        # PG* variables (PGDATA, PGPORT, ...) would change what initdb/pg_ctl do.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.base_dir))
        if self._uid is not None:
            env.update(USER=UNPRIVILEGED_USER, LOGNAME=UNPRIVILEGED_USER)
        return env

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's owner."""
        try:
            return subprocess.run(
                args,
                cwd=self.base_dir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                user=self._uid,
                group=self._gid,
                extra_groups=[] if self._uid is not None else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{' '.join(args)} did not finish within {timeout:.0f}s"
                f"\n--- server log tail ({self.log_path}) ---\n{self.log_tail()}"
            ) from exc

    def _failure(self, what: str, proc: subprocess.CompletedProcess[str]) -> str:
        output = "\n".join(s.strip() for s in (proc.stdout, proc.stderr) if s.strip())
        return (
            f"{what} (exit code {proc.returncode})"
            f"\n--- output ---\n{output or '(none)'}"
            f"\n--- server log tail ({self.log_path}) ---\n{self.log_tail() or '(empty)'}"
        )

    def _initdb(self) -> None:
        assert self._bins is not None
        proc = self._run(
            [
                str(self._bins.initdb),
                "--pgdata",
                str(self.data_dir),
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(self._failure("initdb failed", proc))

    def _write_config(self) -> None:
        sock = str(self.socket_dir).replace("'", "''")
        settings = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{sock}'",
            "max_connections": "200",
            # Speed over durability: the cluster is thrown away after the tests.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "jit": "off",
            "timezone": "'UTC'",
            **self._settings,
        }
        lines = ["", "# --- licensor test harness (tests/harness/postgres.py) ---"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        # Appended settings win over earlier ones. Root may append to licensor-pg's file
        # without changing its owner.
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n".join(lines) + "\n")

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        assert self._bins is not None
        cmd = [str(self._bins.pg_ctl), *args[:1], "-D", str(self.data_dir), *args[1:]]
        cmd += ["-w", "-t", str(max(1, int(timeout))), "-s"]
        return self._run(cmd, timeout=timeout + 15)

    def _pg_ctl_start(self, port: int) -> subprocess.CompletedProcess[str]:
        assert self._bins is not None
        return self._pg_ctl(
            "start",
            "-l",
            str(self.log_path),
            "-p",
            str(self._bins.postgres),
            "-o",
            f"-p {port}",
            timeout=self.ready_timeout,
        )

    def _first_start(self) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _pick_port()
            offset = self._log_size()
            proc = self._pg_ctl_start(port)
            if proc.returncode == 0:
                self._port = port
                self._running = True
                self._wait_ready()
                return
            # Another process (e.g. a parallel test worker) took the port first: try another.
            if not (self._bind_failed(offset) and attempt < _PORT_ATTEMPTS):
                raise RuntimeError(self._failure(f"pg_ctl start (port {port}) failed", proc))

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _bind_failed(self, offset: int) -> bool:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return False
        return any(marker in text for marker in _BIND_FAILURE_MARKERS)

    def _wait_ready(self) -> None:
        """Poll until a real connection works, for at most ``ready_timeout`` seconds."""
        deadline = time.monotonic() + self.ready_timeout
        last_error: Exception | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                with self.connect(connect_timeout=max(1, min(5, int(remaining)))) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
            pid = self.postmaster_pid
            if pid is None or not _pid_alive(pid):
                break  # the postmaster died: no use waiting
            time.sleep(0.1)
        self._running = self.postmaster_pid is not None
        raise RuntimeError(
            f"PostgreSQL on {HOST}:{self._port} not accepting connections within "
            f"{self.ready_timeout:.0f}s: {last_error}"
            f"\n--- server log tail ({self.log_path}) ---\n{self.log_tail() or '(empty)'}"
        )

    def _kill_cluster(self) -> None:
        """Stop the postmaster, if any, as fast as possible and make sure it is gone."""
        pid = self.postmaster_pid
        if pid is None:
            return
        with contextlib.suppress(Exception):
            self._pg_ctl("stop", "-m", "immediate", timeout=30)
        if not _pid_alive(pid):
            return
        # pg_ctl could not do it: immediate shutdown by signal, then the hard way.
        for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.05)

    def _start_watchdog(self) -> None:
        assert self._bins is not None
        self._watchdog = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _WATCHDOG,
                str(os.getpid()),
                str(self.base_dir),
                str(self.data_dir),
                str(self._bins.pg_ctl),
                "-" if self._uid is None else str(self._uid),
                "-" if self._gid is None else str(self._gid),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        if os.getpid() != self._owner_pid:
            return  # a forked child: the watchdog is the parent's
        watchdog.terminate()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def _atexit_close(self) -> None:
        if os.getpid() != self._owner_pid:
            return  # inherited by a forked child: the server belongs to the parent
        with contextlib.suppress(Exception):
            self.close()
