"""The computer-bound license on disk: exact signed bytes, written atomically, readable by the user only.

Files in the storage directory, per product:

* ``<product>.license.json`` — the activation answer and the latest check answer, each as the exact
  signed body bytes plus its body signature, so it re-verifies offline with the public keys.
* ``<product>.clock.json`` — the high-water mark of trusted time, MAC'd with a key derived from
  the hardware id and product.
* ``<product>.lock`` — serialises processes of the application that start at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import sys
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from licensor.client._errors import TamperedLicense
from licensor.client._filelock import InterProcessLock
from licensor.client._verify import BodySignature
from licensor.protocol.signing import compact_json, iso_ms_z, parse_iso_datetime

FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class SignedAnswer(NamedTuple):
    """One answer of the server exactly as received: body bytes and the body signature."""

    body: bytes
    signature: BodySignature

    def to_json(self) -> dict[str, Any]:
        return {"body": self.body.decode("utf-8"), "signature": self.signature.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> SignedAnswer:
        if not isinstance(data, dict) or set(data) != {"body", "signature"}:
            raise ValueError("not a signed answer")
        if not isinstance(data["body"], str):
            raise ValueError("not a signed answer")
        return cls(data["body"].encode("utf-8"), BodySignature.from_json(data["signature"]))


class StoredLicense(NamedTuple):
    product: str
    hardware_id: str
    license_key: str | None
    username: str | None
    activation: SignedAnswer
    check: SignedAnswer | None

    def to_bytes(self) -> bytes:
        return compact_json(
            {
                "format": FORMAT,
                "product": self.product,
                "hardware_id": self.hardware_id,
                "license_key": self.license_key,
                "username": self.username,
                "activation": self.activation.to_json(),
                "check": self.check.to_json() if self.check else None,
            }
        )

    @classmethod
    def from_bytes(cls, content: bytes) -> StoredLicense:
        """Parse, and insist the bytes are exactly what ``to_bytes`` writes: no byte can change unseen."""
        try:
            data = json.loads(content)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("unknown format")
            strings = ("product", "hardware_id")
            if not all(isinstance(data.get(name), str) for name in strings):
                raise ValueError("missing identity")
            for name in ("license_key", "username"):
                if data.get(name) is not None and not isinstance(data[name], str):
                    raise ValueError("bad identity")
            stored = cls(
                product=data["product"],
                hardware_id=data["hardware_id"],
                license_key=data.get("license_key"),
                username=data.get("username"),
                activation=SignedAnswer.from_json(data.get("activation")),
                check=SignedAnswer.from_json(data["check"]) if data.get("check") else None,
            )
        except (ValueError, KeyError, UnicodeError) as exc:
            raise TamperedLicense(f"the stored license is unreadable: {exc}") from exc
        if stored.to_bytes() != content or (stored.license_key is None) == (
            stored.username is None
        ):
            raise TamperedLicense("the stored license was modified")
        return stored


def clock_key(hardware_id: str, product: str) -> bytes:
    """The MAC key of the time high-water mark, derived from what binds the license."""
    return hashlib.sha256(f"licensor-clock-v1\0{hardware_id}\0{product}".encode()).digest()


def _clock_mac(key: bytes, product: str, high_water: str) -> str:
    return hmac.new(key, f"{product}\0{high_water}".encode(), hashlib.sha256).hexdigest()


def safe_name(product: str) -> str:
    cleaned = _SAFE.sub("_", product)
    if cleaned != product or not cleaned or cleaned.startswith("."):
        cleaned = f"{cleaned.lstrip('.')}-{hashlib.sha256(product.encode()).hexdigest()[:8]}"
    return cleaned


def default_storage_dir() -> str:
    from platformdirs import user_data_dir

    return user_data_dir("licensor", appauthor=False)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def write_atomically(path: str | os.PathLike[str], content: bytes) -> None:
    """tmp file (0600) + fsync + ``os.replace`` + fsync of the directory: all or nothing."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if sys.platform != "win32":
            os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    if sys.platform != "win32":
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class LicenseStore:
    """Where one product's computer-bound license lives on this computer."""

    def __init__(self, directory: str | os.PathLike[str], product: str) -> None:
        self.directory = os.fspath(directory)
        self.product = product
        name = safe_name(product)
        self.license_path = os.path.join(self.directory, f"{name}.license.json")
        self.clock_path = os.path.join(self.directory, f"{name}.clock.json")
        self.lock = InterProcessLock(os.path.join(self.directory, f"{name}.lock"))

    def load(self) -> StoredLicense | None:
        try:
            content = _read_bytes(self.license_path)
        except FileNotFoundError:
            return None
        stored = StoredLicense.from_bytes(content)
        if stored.product != self.product:
            raise TamperedLicense("the stored license is for another product")
        return stored

    def save(self, stored: StoredLicense) -> None:
        write_atomically(self.license_path, stored.to_bytes())

    def delete(self) -> None:
        _unlink(self.license_path)
        _unlink(self.clock_path)

    @property
    def clock(self) -> ClockRecord:
        return ClockRecord(self.clock_path, self.product)


class ClockRecord:
    """The high-water mark of trusted time kept in ``path``, MAC'd with a key derived from what
    binds the license (``clock_key``): a clock set back below it is detected."""

    # The mark is rewritten only when it moves by at least this much (saves a write per start).
    STEP = timedelta(minutes=1)

    def __init__(self, path: str, product: str) -> None:
        self.path = path
        self.product = product

    def load(self, key: bytes) -> datetime | None:
        try:
            content = _read_bytes(self.path)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(content)
            high_water, mac = data["high_water"], data["mac"]
            if compact_json({"format": FORMAT, "high_water": high_water, "mac": mac}) != content:
                raise ValueError("not canonical")
            if not hmac.compare_digest(_clock_mac(key, self.product, high_water), mac):
                raise ValueError("MAC mismatch")
            return parse_iso_datetime(high_water)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TamperedLicense(f"the stored time record was modified: {exc}") from exc

    def advance(self, moment: datetime, key: bytes, *, reset: bool = False) -> None:
        """Move the mark up to ``moment`` (by ``STEP`` at least). ``reset``: to ``moment``
        whatever is recorded, even a modified record (a fresh signed time vouches for it); else
        a modified record raises ``TamperedLicense``. The caller holds the store's lock."""
        if not reset:
            recorded = self.load(key)
            if recorded is not None and moment < recorded + self.STEP:
                return
        self.save(moment, key)

    def save(self, moment: datetime, key: bytes) -> None:
        high_water = iso_ms_z(moment)
        mac = _clock_mac(key, self.product, high_water)
        write_atomically(
            self.path, compact_json({"format": FORMAT, "high_water": high_water, "mac": mac})
        )
