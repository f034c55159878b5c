"""The stored license: exact signed bytes, atomic writes, one process at a time, user-only."""

from __future__ import annotations

import multiprocessing
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _fake_license_server import FakeLicenseServer

from conftest import HARDWARE_ID
from licensor.client import (
    HmacCredentials,
    LicenseClient,
    LicenseNotValid,
    TamperedLicense,
)
from licensor.client._filelock import InterProcessLock, LockTimeout
from licensor.client._store import LicenseStore, safe_name, write_atomically

MakeClient = Callable[..., LicenseClient]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def test_stored_license_holds_the_exact_signed_bytes(
    make_client: MakeClient, server: FakeLicenseServer
) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    stored = client.store.load()
    assert stored is not None
    sent = server.idempotent[server.requests[-1].headers["idempotency-key"]]
    assert stored.activation.body == sent[2]  # byte for byte what the server signed
    assert stored.hardware_id == HARDWARE_ID
    assert stored.to_bytes() == Path(client.store.license_path).read_bytes()


def test_every_flipped_byte_of_the_license_is_detected(make_client: MakeClient) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    client.check()
    path = Path(client.store.license_path)
    original = path.read_bytes()
    undetected = []
    for index in range(len(original)):
        tampered = bytearray(original)
        tampered[index] ^= 0x01
        path.write_bytes(bytes(tampered))
        try:
            client.validate(online=False)
        except TamperedLicense:
            continue
        except LicenseNotValid as exc:  # pragma: no cover - would be a weaker detection
            undetected.append((index, type(exc).__name__))
            continue
        undetected.append((index, "accepted"))
    path.write_bytes(original)
    assert undetected == []
    assert client.validate(online=False).status == "active"


def test_every_flipped_byte_of_the_time_record_is_detected(make_client: MakeClient) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    path = Path(client.store.clock_path)
    original = path.read_bytes()
    for index in range(len(original)):
        tampered = bytearray(original)
        tampered[index] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises(TamperedLicense):
            client.validate(online=False)
    path.write_bytes(original)
    client.validate(online=False)


@posix_only
def test_files_are_readable_by_the_user_only(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    for path in (Path(client.store.license_path), Path(client.store.clock_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o700


def test_atomic_write_leaves_the_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.license.json"
    write_atomically(target, b"old")

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.license.json"]  # no temp left


def test_atomic_write_fsyncs_before_replacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    write_atomically(tmp_path / "f", b"data")
    assert events[:2] == ["fsync", "replace"]
    assert (tmp_path / "f").read_bytes() == b"data"


def test_product_names_become_safe_file_names(tmp_path: Path) -> None:
    assert safe_name("my-app_2.0") == "my-app_2.0"
    weird = safe_name("../../etc/passwd")
    assert "/" not in weird and not weird.startswith(".")
    assert safe_name("a/b") != safe_name("a_b")
    store = LicenseStore(tmp_path, "../x")
    assert Path(store.license_path).parent == tmp_path


def test_a_license_for_another_product_is_refused(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client()
    client.activate(license_key="KEY-1111")
    other = LicenseStore(tmp_path / "store", "other")
    Path(other.license_path).write_bytes(Path(client.store.license_path).read_bytes())
    with pytest.raises(TamperedLicense, match="another product"):
        other.load()


# --------------------------------------------------------------------------- several processes


def _hold_lock(path: str, ready: Any, seconds: float) -> None:
    with InterProcessLock(Path(path)):
        ready.set()
        time.sleep(seconds)


def test_lock_excludes_another_process(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    lock_path = tmp_path / "app.lock"
    holder = context.Process(target=_hold_lock, args=(str(lock_path), ready, 1.0))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockTimeout):
            InterProcessLock(lock_path, timeout=0.2).acquire()
        started = time.monotonic()
        with InterProcessLock(lock_path, timeout=30):
            waited = time.monotonic() - started
        assert waited > 0.3
    finally:
        holder.join(30)


def _app_start(server_url: str, pems: list[str], storage: str, rounds: int, queue: Any) -> None:
    """One process of the application: activate if needed, then start and check repeatedly."""
    from licensor.client import NotActivated

    client = LicenseClient(
        server_url,
        "app",
        pems,
        HmacCredentials("api-key-1", "shared-secret"),
        hardware_id="a" * 64,
        storage_dir=storage,
        send_device_facts=False,
        retries=0,
    )
    try:
        for _ in range(rounds):
            try:
                client.validate(online=False)
            except NotActivated:
                client.activate(license_key="KEY-1111")
            client.check()
            client.validate(online=False)
        queue.put("ok")
    except Exception as exc:  # reported to the parent test
        queue.put(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


@pytest.mark.slow
def test_processes_starting_at_once_share_one_activation(
    server: FakeLicenseServer, public_keys: list[str], tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    server.now = lambda: datetime.now(UTC)
    http_server, url = server.serve()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    storage = str(tmp_path / "shared")
    processes = [
        context.Process(target=_app_start, args=(url, public_keys, storage, 8, queue))
        for _ in range(4)
    ]
    try:
        for process in processes:
            process.start()
        results = [queue.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
    finally:
        http_server.shutdown()
    assert results == ["ok"] * 4
    lic = server.licenses["KEY-1111"]
    assert sum(lic.devices.values()) == 1  # one seat, whatever the race
    activations = [r for r in server.requests if r.path.endswith("activate_license")]
    assert 1 <= len(activations) <= 4
