"""``licensor serve --workers N`` on Linux: each worker accepts from a listening socket of its own.

uvicorn's own supervisor gives every worker the same listening socket. When a burst of
connections arrives (a load generator, a proxy opening its pool), the worker that wakes first
accepts every pending one, and the other may get none: a benchmark run measured one worker at
100% of a core and the other idle, with half the throughput (docs/benchmarks/2026-12-02). Here
the supervisor binds one socket per worker to the same address with ``SO_REUSEPORT``, and the
kernel spreads new connections over them by a hash of their addresses, whatever each worker is
doing. Everything else is uvicorn's ``Multiprocess``: signals, health checks, restarts. A
replaced worker takes over its predecessor's socket, which the supervisor holds open, so the
connections queued there meanwhile are accepted, not reset.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger


def supported() -> bool:
    """Whether this platform spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` sockets listening on ``host:port`` in one ``SO_REUSEPORT`` group.

    The address is first bound without ``SO_REUSEPORT``, so a port already in use -- by another
    Licensor as well -- fails with ``EADDRINUSE`` as it does without workers, instead of
    silently joining that server's group and taking a share of its connections. Port 0: the
    port the kernel chose for the first socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class PerWorkerSockets(Multiprocess):
    """uvicorn's supervisor, with worker ``i`` always on ``sockets[i]``. The number of
    workers is that of the sockets (SIGTTIN / SIGTTOU are refused)."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.processes_num = len(sockets)

    def _started(self, slot: int) -> Process:
        process = Process(self.config, [self.sockets[slot]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._started(slot) for slot in range(self.processes_num)]

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced in turn, its replacement in service first."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._started(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error(
                        f"New child process [{new.pid}] was not ready in time; "
                        f"keeping worker [{old.pid}] and aborting the restart."
                    )
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: killed
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                logger.error(
                    f"Child process [{process.pid}] failed to start, stopping the parent process."
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[slot] = self._started(slot)

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN: the number of workers is fixed (one socket each).")

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU: the number of workers is fixed (one socket each).")


def serve(app: str, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, but with a listening socket per worker where
    ``options["workers"]`` > 1 and the platform spreads connections over them."""
    if options.get("workers", 1) > 1 and supported():
        run(Config(app, **options))
    else:
        uvicorn.run(app, **options)


def run(config: Config) -> None:
    """Serve ``config`` with ``config.workers`` processes, each on a socket of its own."""
    try:
        sockets = listening_sockets(config.host, config.port, config.workers, config.backlog)
    except OSError as exc:  # as uvicorn words it, without a traceback
        logger.error(
            f"[Errno {exc.errno}] error while attempting to bind on address "
            f"{(config.host, config.port)}: {(exc.strerror or str(exc)).lower()}"
        )
        sys.exit(1)
    host, port = sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info(
        f"Uvicorn running on http://{shown}:{port} (Press CTRL+C to quit), "
        f"{config.workers} workers with a listening socket each"
    )
    try:
        PerWorkerSockets(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()
