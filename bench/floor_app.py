"""The floor reference: a bare Starlette app doing only the work the License API wire requires.

Its ``POST /api/v4/activate_license`` verifies the request's HMAC, runs one raw-driver
transaction (sqlite3 / psycopg, no ORM, no SQLAlchemy) that locks the license row, checks and
counts the seat and inserts the device, and answers a JSON body of the size of Licensor's
answer with the same signatures (``license_signature`` and the header signature, RSA or
Ed25519 as asked). ``POST /api/v4/deactivate_license`` verifies, locks the license row, marks
the device inactive and frees the seat; ``GET /api/v4/check_license`` verifies, reads the
license and device in one statement and signs like a check answer (``license_signature``,
``license_signature_v2`` and the header). No rule beyond the seat count, no error naming, no
audit, events or rate limits: what Licensor does beyond this is what the benchmark's floor
ratio measures.

Environment: ``BENCH_FLOOR_DATABASE_URL`` (the deployment's, ``sqlite:///...`` or
``postgresql+psycopg://...``), ``BENCH_FLOOR_KEYS_DIR``, ``BENCH_FLOOR_API_KEY``,
``BENCH_FLOOR_SHARED_KEY``, ``BENCH_FLOOR_COMPANY_ID``, ``BENCH_FLOOR_BODIES`` (a JSON file
``{"activation": {...}, "check": {...}}`` of real Licensor answers, whose sizes the floor's
answers take). Run: ``python bench/floor_app.py --workers N --port P`` (served as ``licensor
serve`` serves Licensor).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from licensor.core.keys import normalize_license_key
from licensor.keyring import Keyring
from licensor.protocol.signing import format_licensor_signature

_SIGNATURE = re.compile(r'signature="([^"]*)"')
_SIGNED = ("license_signature", "license_signature_v2")


class Floor:
    def __init__(self) -> None:
        self.url = os.environ["BENCH_FLOOR_DATABASE_URL"]
        self.sqlite = self.url.startswith("sqlite")
        self.keyring = Keyring.load(Path(os.environ["BENCH_FLOOR_KEYS_DIR"]))
        self.api_key = os.environ["BENCH_FLOOR_API_KEY"]
        self.shared_key = os.environ["BENCH_FLOOR_SHARED_KEY"].encode()
        self.company_id = int(os.environ["BENCH_FLOOR_COMPANY_ID"])
        bodies = json.loads(Path(os.environ["BENCH_FLOOR_BODIES"]).read_text(encoding="utf-8"))
        self.activation_body: dict[str, Any] = bodies["activation"]
        self.check_body: dict[str, Any] = bodies["check"]
        self._local = threading.local()
        # SQLite: writers of all workers take turns on a lock file, as Licensor's do
        # (store/db.py WriterQueue), instead of SQLite's sleeping retries
        self._lock_file = (
            open(self.url.split(":///", 1)[1] + "-floor.lock", "a+b") if self.sqlite else None  # noqa: SIM115
        )

    # -- the driver ---------------------------------------------------------------------------

    def connection(self) -> Any:
        found = getattr(self._local, "connection", None)
        if found is None:
            if self.sqlite:
                found = sqlite3.connect(
                    self.url.split(":///", 1)[1], isolation_level=None, check_same_thread=False
                )
                found.execute("PRAGMA busy_timeout = 10000")
                found.execute("PRAGMA synchronous = NORMAL")
            else:
                import psycopg

                found = psycopg.connect(
                    self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
                )
            self._local.connection = found
        return found

    def _sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    # -- the work the wire requires -------------------------------------------------------------

    def authenticated(self, request: Request) -> bool:
        found = _SIGNATURE.search(request.headers.get("authorization", ""))
        date = request.headers.get("date", "")
        if found is None or f'apikey="{self.api_key}"' not in request.headers["authorization"]:
            return False
        expected = base64.b64encode(
            hmac.new(
                self.shared_key, f"licenseSpring\ndate: {date}".encode(), hashlib.sha256
            ).digest()
        ).decode()
        return hmac.compare_digest(expected, found.group(1))

    @contextmanager
    def writer(self) -> Iterator[None]:
        if self._lock_file is None:
            yield
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def activate(self, key: str, hardware_id: str, now: datetime) -> dict[str, Any] | None:
        with self.writer():
            return self._activate(key, hardware_id, now)

    def deactivate(self, key: str, hardware_id: str, now: datetime) -> bool:
        with self.writer():
            return self._deactivate(key, hardware_id, now)

    def _activate(self, key: str, hardware_id: str, now: datetime) -> dict[str, Any] | None:
        connection = self.connection()
        cursor = connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
            cursor.execute(
                self._sql(
                    "SELECT id, times_activated, max_activations, allow_unlimited_activations, "
                    "validity_period FROM licenses WHERE company_id = ? AND key_lookup = ?"
                    + ("" if self.sqlite else " FOR UPDATE")
                ),
                (self.company_id, normalize_license_key(key)),
            )
            row = cursor.fetchone()
            if row is None or (not row[3] and row[1] >= row[2]):
                cursor.execute("ROLLBACK")
                return None
            cursor.execute(
                self._sql(
                    "INSERT INTO devices (license_id, hardware_id, active, is_vm, vm_info, os_ver, "
                    "hostname, ip, ip_local, app_ver, sdk_ver, mac_address, first_activated_at, "
                    "last_activated_at, computer_type, affiliate_id, user_data, activation_count) "
                    "VALUES (?, ?, ?, ?, '', '', '', '', '', '', '', '', ?, ?, '', '', '', 1)"
                ),
                (row[0], hardware_id, True, False, now, now),
            )
            cursor.execute(
                self._sql("UPDATE licenses SET times_activated = times_activated + 1 WHERE id = ?"),
                (row[0],),
            )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return {"id": row[0], "times_activated": row[1] + 1, "validity_period": row[4]}

    def _deactivate(self, key: str, hardware_id: str, now: datetime) -> bool:
        connection = self.connection()
        cursor = connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if self.sqlite else "BEGIN")
            cursor.execute(
                self._sql(
                    "SELECT id FROM licenses WHERE company_id = ? AND key_lookup = ?"
                    + ("" if self.sqlite else " FOR UPDATE")
                ),
                (self.company_id, normalize_license_key(key)),
            )
            row = cursor.fetchone()
            released = 0
            if row is not None:
                cursor.execute(
                    self._sql(
                        "UPDATE devices SET active = ?, deactivated_at = ? "
                        "WHERE license_id = ? AND hardware_id = ? AND active = ?"
                    ),
                    (False, now, row[0], hardware_id, True),
                )
                released = cursor.rowcount
                if released:
                    cursor.execute(
                        self._sql(
                            "UPDATE licenses SET times_activated = times_activated - 1 WHERE id = ?"
                        ),
                        (row[0],),
                    )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return released == 1

    def check(self, key: str, hardware_id: str) -> tuple[Any, ...] | None:
        connection = self.connection()
        cursor = connection.cursor()
        try:
            cursor.execute(
                self._sql(
                    "SELECT l.id, l.times_activated, l.validity_period, d.id FROM licenses l "
                    "JOIN devices d ON d.license_id = l.id AND d.hardware_id = ? AND d.active = ? "
                    "WHERE l.company_id = ? AND l.key_lookup = ?"
                ),
                (hardware_id, True, self.company_id, normalize_license_key(key)),
            )
            row = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(row) if row is not None else None

    # -- the answer -----------------------------------------------------------------------------

    def answer(
        self,
        template: dict[str, Any],
        algorithm: str,
        *,
        key: str,
        hardware_id: str,
        validity: Any,
        changes: dict[str, Any],
        v2: bool,
    ) -> Response:
        signer = self.keyring.ed25519 if algorithm == "ed25519" else self.keyring.rsa
        body = {**template, **changes, "hardware_id": hardware_id, "license_key": key}
        signing = f"{hardware_id}#{key}#{validity or ''}".lower().encode()
        body["license_signature"] = signer.sign(signing)
        if v2:
            unsigned = {k: v for k, v in body.items() if k not in _SIGNED}
            body["license_signature_v2"] = signer.sign(_compact(unsigned))
        content = _compact(body)
        return _signed(signer, algorithm, content)


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _signed(signer: Any, algorithm: str, content: bytes, status: int = 200) -> Response:
    signature = signer.sign(content)
    if algorithm == "ed25519":
        headers = {"Licensor-Signature": format_licensor_signature(signer.kid, signature)}
    else:
        headers = {"LicenseSignature": signature, "Licensor-Key-Id": signer.kid}
    return Response(content, status_code=status, media_type="application/json", headers=headers)


FLOOR: Floor | None = None


def floor() -> Floor:
    global FLOOR
    if FLOOR is None:
        FLOOR = Floor()
    return FLOOR


async def _run(found: Floor, work: Any, *args: Any) -> Any:
    """SQLite: on the event loop (no network wait; Licensor measured it fastest there too);
    PostgreSQL: in a thread (round trips)."""
    if found.sqlite:
        return work(*args)
    return await run_in_threadpool(work, *args)


def _algorithm(request: Request) -> str:
    accepted = request.headers.get("licensor-accept-signature", "")
    return "ed25519" if "ed25519" in accepted.lower() else "rsa-sha256"


def _refused(request: Request, status: int) -> Response:
    found = floor()
    algorithm = _algorithm(request)
    signer = found.keyring.ed25519 if algorithm == "ed25519" else found.keyring.rsa
    return _signed(signer, algorithm, b'{"status":%d}' % status, status)


async def activate(request: Request) -> Response:
    found = floor()
    if not found.authenticated(request):
        return _refused(request, 401)
    data = json.loads(await request.body())
    key, hardware_id = data["license_key"], data["hardware_id"]
    done = await _run(found, found.activate, key, hardware_id, datetime.now(UTC))
    if done is None:
        return _refused(request, 400)
    return found.answer(
        found.activation_body,
        _algorithm(request),
        key=key,
        hardware_id=hardware_id,
        validity=done["validity_period"],
        changes={"id": done["id"], "times_activated": done["times_activated"]},
        v2=False,
    )


async def deactivate(request: Request) -> Response:
    found = floor()
    if not found.authenticated(request):
        return _refused(request, 401)
    data = json.loads(await request.body())
    released = await _run(
        found, found.deactivate, data["license_key"], data["hardware_id"], datetime.now(UTC)
    )
    if not released:
        return _refused(request, 400)
    algorithm = _algorithm(request)
    signer = found.keyring.ed25519 if algorithm == "ed25519" else found.keyring.rsa
    return _signed(signer, algorithm, b'"license_deactivated"')


async def check(request: Request) -> Response:
    found = floor()
    if not found.authenticated(request):
        return _refused(request, 401)
    key = request.query_params["license_key"]
    hardware_id = request.query_params["hardware_id"]
    row = await _run(found, found.check, key, hardware_id)
    if row is None:
        return _refused(request, 400)
    return found.answer(
        found.check_body,
        _algorithm(request),
        key=key,
        hardware_id=hardware_id,
        validity=row[2],
        changes={"id": row[0], "times_activated": row[1], "device_id": row[3]},
        v2=True,
    )


async def ready(_request: Request) -> Response:
    return Response(b'"ok"', media_type="application/json")


app = Starlette(
    routes=[
        Route("/api/v4/activate_license", activate, methods=["POST"]),
        Route("/api/v4/deactivate_license", deactivate, methods=["POST"]),
        Route("/api/v4/check_license", check, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
    ]
)


def main() -> None:
    import argparse

    from licensor.cli import workers

    parser = argparse.ArgumentParser(description="the benchmark's floor reference")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    workers.serve(
        "floor_app:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
