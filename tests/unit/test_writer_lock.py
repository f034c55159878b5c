"""SQLite writers queue on WriterLock: threads of a process and separate processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from licensor.store.db import WriterLock

HOLD_IN_CHILD = """
import sys, time
from licensor.store.db import WriterLock
lock = WriterLock(sys.argv[1])
with lock.held():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_other_thread_holding_the_lock_makes_try_fail_and_held_wait(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "db-writer.lock"))
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock.held():
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(10)
    with lock.try_held() as free:
        assert free is False
    order: list[str] = []

    def waiter() -> None:
        with lock.held():
            order.append("waiter")

    second = threading.Thread(target=waiter)
    second.start()
    time.sleep(0.2)
    assert order == []  # still queued behind the holder
    order.append("released")
    release.set()
    thread.join(10)
    second.join(10)
    assert order == ["released", "waiter"]
    with lock.try_held() as free:
        assert free is True
        with lock.held():  # re-entrant in the holding thread
            pass
    lock.close()


def test_another_process_holding_the_lock_is_seen_and_its_death_frees_it(tmp_path: Path) -> None:
    path = str(tmp_path / "db-writer.lock")
    lock = WriterLock(path)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, path, "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with lock.try_held() as free:
            assert free is False
        child.kill()  # a writer killed mid-transaction must not leave the lock taken
        child.wait(10)
        started = time.monotonic()
        with lock.held():
            pass
        assert time.monotonic() - started < 5
    finally:
        child.kill()
        child.wait(10)
        lock.close()
