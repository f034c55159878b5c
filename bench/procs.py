"""Processes the benchmark starts (each in its own session, killed by process group on exit, Ctrl-C
or error), and CPU accounting from /proc."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    _STARTED.pop(process.pid, None)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no worker of its group survives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        break
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)


def kill_all() -> None:
    for process in list(_STARTED.values()):
        kill_group(process, grace=3.0)


atexit.register(kill_all)


def _on_signal(signum: int, _frame: Any) -> None:
    kill_all()
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # Ctrl-C raises KeyboardInterrupt (even when started with SIGINT ignored, as `cmd &` does):
    # the `finally` blocks and atexit clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def start(
    cmd: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _STARTED[process.pid] = process
    return process


def wait_http(
    process: subprocess.Popen[bytes],
    url: str,
    log: Path,
    *,
    timeout: float = 150.0,
    successes: int = 3,
) -> None:
    """Wait until ``url`` answers 200 ``successes`` times in a row (several workers start)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < successes:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early; see {log}:\n{tail(log)}")
        try:
            ok = httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not answering 200 within {timeout:.0f} s; see {log}")
        time.sleep(0.05 if ok else 0.2)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def licensor_server(env: dict[str, str], workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """``licensor serve`` (uvicorn, ``workers`` processes); yields (base URL, session id)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "licensor.cli.main",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    process = start(cmd, env=env, log=log)
    try:
        wait_http(process, f"http://127.0.0.1:{port}/health", log)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        kill_group(process)


@contextmanager
def reference_server(body_file: Path, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """bench/reference_app.py served as ``licensor serve`` serves Licensor (same uvicorn, same
    defaults, same listening sockets)."""
    port = free_port()
    bench_dir = Path(__file__).resolve().parent
    env = {**os.environ, "BENCH_REFERENCE_BODY": str(body_file)}
    cmd = [
        sys.executable,
        str(bench_dir / "reference_app.py"),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = start(cmd, env=env, log=log)
    try:
        wait_http(process, f"http://127.0.0.1:{port}/reference", log)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        kill_group(process)


@contextmanager
def floor_server(env: dict[str, str], workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """bench/floor_app.py (the work the wire requires, nothing more) served as ``licensor
    serve`` serves Licensor; ``env``: its BENCH_FLOOR_* settings."""
    port = free_port()
    bench_dir = Path(__file__).resolve().parent
    cmd = [
        sys.executable,
        str(bench_dir / "floor_app.py"),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = start(cmd, env={**os.environ, **env}, log=log)
    try:
        wait_http(process, f"http://127.0.0.1:{port}/ready", log)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        kill_group(process)


# -- CPU accounting ----------------------------------------------------------------------------


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU of every live process in session ``session_id`` (a server's workers)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fields = _stat_fields(pid)
        if fields and int(fields[3]) == session_id:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def tree_cpu_seconds(root_pid: int | None) -> float:
    """CPU of ``root_pid`` and its direct children (a PostgreSQL postmaster and its backends)."""
    if root_pid is None:
        return 0.0
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fields = _stat_fields(pid)
        if fields and (int(pid) == root_pid or int(fields[1]) == root_pid):
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])
