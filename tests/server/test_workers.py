"""``licensor serve --workers N`` gives each worker a listening socket of its own
(``cli/workers.py``): a burst of connections is spread over the workers, a killed worker is
replaced on its socket, and a port already taken is refused as it is without workers."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from licensor.cli import workers
from tests.server.processes import (
    STARTUP_SECONDS,
    free_port,
    prepare,
    start,
    stop,
    wait_healthy,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not workers.supported(), reason="SO_REUSEPORT spreading is Linux-only"),
]

_LISTEN, _ESTABLISHED = "0A", "01"


def _sockets_on(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 TCP sockets whose local port is ``port`` in ``state``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state:
            found.add(int(fields[9]))
    return found


def _owners(inodes: set[int], pids: list[int]) -> dict[int, set[int]]:
    """inode -> the pids (of ``pids``) holding it open."""
    owners: dict[int, set[int]] = defaultdict(set)
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in inodes:
                    owners[inode].add(pid)
    return owners


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _wait_for(predicate, what: str, seconds: float = STARTUP_SECONDS):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _listeners(supervisor: int, port: int, count: int) -> dict[int, int]:
    """listening inode -> its worker, once ``count`` workers each hold one (and the
    supervisor all of them)."""

    def ready() -> dict[int, int] | None:
        pids = [supervisor, *_children(supervisor)]
        owners = _owners(_sockets_on(port, _LISTEN), pids)
        result = {}
        for inode, holders in owners.items():
            held_by_workers = holders - {supervisor}
            if supervisor not in holders or len(held_by_workers) != 1:
                return None
            result[inode] = held_by_workers.pop()
        return result if len(result) == count and len(set(result.values())) == count else None

    return _wait_for(ready, f"{count} workers listening on sockets of their own")


def _start(tmp_path: Path, port: int, workers_count: int) -> subprocess.Popen[bytes]:
    deployment = prepare(f"sqlite:///{tmp_path / 'licensor.db'}", tmp_path / "data")
    return start(deployment, port, tmp_path / "serve.log", workers=workers_count)


def test_each_worker_accepts_from_its_own_socket_and_a_burst_is_spread(tmp_path: Path) -> None:
    port = free_port()
    process = _start(tmp_path, port, 2)
    try:
        listeners = _listeners(process.pid, port, 2)
        wait_healthy(process, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
        # 48 connections opened at once, each answered once and kept open
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(48)]
        try:
            for connection in connections:
                connection.sendall(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
            for connection in connections:
                assert connection.recv(4096).startswith(b"HTTP/1.1 200")
            workers_pids = list(listeners.values())
            owners = _owners(_sockets_on(port, _ESTABLISHED), workers_pids)
            per_worker = {pid: 0 for pid in workers_pids}
            for holders in owners.values():
                (pid,) = holders
                per_worker[pid] += 1
            assert sum(per_worker.values()) == 48
            # spread by the kernel's hash: P(a worker gets fewer than 8 of 48) < 1e-6
            assert min(per_worker.values()) >= 8, per_worker
        finally:
            for connection in connections:
                connection.close()
    finally:
        stop(process)


def test_a_killed_worker_is_replaced_on_its_socket_and_no_connection_is_refused(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = _start(tmp_path, port, 2)
    try:
        listeners = _listeners(process.pid, port, 2)
        wait_healthy(process, f"http://127.0.0.1:{port}", tmp_path / "serve.log")
        inode, victim = next(iter(listeners.items()))
        os.kill(victim, signal.SIGKILL)
        # while it is being replaced, every new connection is still answered: those hashed to
        # the dead worker's socket wait in its queue, which the supervisor keeps open
        with httpx.Client(timeout=STARTUP_SECONDS) as client:
            statuses = [
                client.get(f"http://127.0.0.1:{port}/health", headers={"connection": "close"})
                for _ in range(20)
            ]
        assert {response.status_code for response in statuses} == {200}
        replaced = _listeners(process.pid, port, 2)
        assert set(replaced) == set(listeners)  # the same two sockets
        assert replaced[inode] != victim and replaced[inode] in _children(process.pid)
    finally:
        stop(process)


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use") as refused:
            workers.listening_sockets("127.0.0.1", port, 2, 16)
        assert refused.value.errno == errno.EADDRINUSE
    # nor does a second server join the first one's group
    group = workers.listening_sockets("127.0.0.1", 0, 2, 16)
    try:
        port = group[0].getsockname()[1]
        assert {sock.getsockname()[1] for sock in group} == {port}
        with pytest.raises(OSError, match="in use") as refused:
            workers.listening_sockets("127.0.0.1", port, 2, 16)
        assert refused.value.errno == errno.EADDRINUSE
        process = _start(tmp_path, port, 2)
        try:
            assert process.wait(timeout=STARTUP_SECONDS) != 0
        finally:
            stop(process)
        assert "address already in use" in (tmp_path / "serve.log").read_text().lower()
    finally:
        for sock in group:
            sock.close()
