"""Signing keys (RSA for the documented signatures, Ed25519 on request), with key ids and rotation.

Keys live as PEM files in the keys directory: ``<kid>.<algorithm>.pem`` (mode 0600) and an
``active.json`` naming the active kid per algorithm. Retired keys stay published so that answers
signed before a rotation still verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from licensor.protocol.signing import (
    PrivateKey,
    SignatureAlgorithm,
    format_licensor_signature,
    key_id,
    sign_bytes,
)

ACTIVE_FILE = "active.json"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: SignatureAlgorithm
    private_key: PrivateKey

    def sign(self, data: bytes) -> str:
        return sign_bytes(self.private_key, data)

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


class _SignatureCache:
    """Signatures of recently signed bytes, keyed by SHA-256 of the bytes (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._lock = threading.Lock()

    def sign(self, key: SigningKey, data: bytes) -> str:
        cache_key = (key.kid, hashlib.sha256(data).digest())
        with self._lock:
            cached = self._entries.get(cache_key)
            if cached is not None:
                self._entries.move_to_end(cache_key)
                return cached
        signature = key.sign(data)
        with self._lock:
            self._entries[cache_key] = signature
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return signature


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class Keyring:
    # Signatures of bytes that repeat are kept (RSA PKCS#1 v1.5 and Ed25519 are deterministic;
    # an RSA signature costs ~1.5 ms of CPU here). Two caches, so that bodies, which mostly do
    # not repeat, cannot evict the strings that do: license_signature strings (the same for a
    # device until its license changes; ~0.5 kB per entry) and whole bodies (error answers are
    # the same for every wrong key; a device's check answer within one second).
    REPEATABLE_CACHE_SIZE = 100_000
    BODY_CACHE_SIZE = 4_096

    def __init__(self, keys: list[SigningKey], active: dict[str, str]) -> None:
        self.keys = {k.kid: k for k in keys}
        self.rsa = self.keys[active["rsa-sha256"]]
        self.ed25519 = self.keys[active["ed25519"]]
        self._repeatable = _SignatureCache(self.REPEATABLE_CACHE_SIZE)
        self._bodies = _SignatureCache(self.BODY_CACHE_SIZE)

    def sign_repeatable(self, algorithm: SignatureAlgorithm, data: bytes) -> str:
        """Sign a string that repeats (``license_signature``), reusing a recent signature."""
        return self._repeatable.sign(self.for_algorithm(algorithm), data)

    def stored_signature(self, algorithm: SignatureAlgorithm, data: bytes) -> str:
        """``data``'s signature as a device row keeps it (``Device.license_signature``):
        ``"<kid> <digest of data> <signature>"``, so that ``license_signature`` knows whether
        it still signs what an answer signs, with the key it is signed with now."""
        key = self.for_algorithm(algorithm)
        signature = self._repeatable.sign(key, data)
        return f"{key.kid} {_digest(data)} {signature}"

    def license_signature(
        self, algorithm: SignatureAlgorithm, data: bytes, stored: str | None = None
    ) -> str:
        """``data``'s signature: the ``stored`` one (``stored_signature``) when it signs these
        bytes with the active key of ``algorithm``, else made (or reused: ``sign_repeatable``)."""
        if stored:
            kid, digest, signature = stored.split(" ", 2)
            if kid == self.for_algorithm(algorithm).kid and digest == _digest(data):
                return signature
        return self.sign_repeatable(algorithm, data)

    def sign_body(self, algorithm: SignatureAlgorithm, data: bytes) -> str:
        """Sign a body (or the signed part of one), reusing the signature of identical bytes."""
        return self._bodies.sign(self.for_algorithm(algorithm), data)

    def for_algorithm(self, algorithm: SignatureAlgorithm) -> SigningKey:
        return self.ed25519 if algorithm == "ed25519" else self.rsa

    def signature_headers(self, body: bytes, algorithm: SignatureAlgorithm) -> dict[str, str]:
        """Headers that sign ``body`` (the exact bytes sent)."""
        key = self.for_algorithm(algorithm)
        signature = self.sign_body(algorithm, body)
        if algorithm == "ed25519":
            return {"Licensor-Signature": format_licensor_signature(key.kid, signature)}
        return {"LicenseSignature": signature, "Licensor-Key-Id": key.kid}

    def public_keys(self) -> list[dict[str, Any]]:
        active = {self.rsa.kid, self.ed25519.kid}
        return [
            {
                "kid": k.kid,
                "algorithm": k.algorithm,
                "public_key": k.public_pem(),
                "active": k.kid in active,
            }
            for k in self.keys.values()
        ]

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Keyring:
        active_path = directory / ACTIVE_FILE
        if not active_path.exists():
            raise FileNotFoundError(
                f"no signing keys in {directory}: run `licensor init` (or `licensor serve`)"
            )
        active: dict[str, str] = json.loads(active_path.read_text())
        keys = []
        for path in sorted(directory.glob("*.pem")):
            kid, algorithm = path.name.split(".")[:2]
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
                raise ValueError(f"{path} is not an RSA or Ed25519 private key")
            keys.append(SigningKey(kid, algorithm, private))  # type: ignore[arg-type]
        return cls(keys, active)

    @classmethod
    def load_or_create(cls, directory: Path, *, rsa_key_size: int = 2048) -> Keyring:
        if not (directory / ACTIVE_FILE).exists():
            rotate(directory, rsa_key_size=rsa_key_size)
        return cls.load(directory)


def _write_private(directory: Path, key: PrivateKey, algorithm: str) -> str:
    kid = key_id(key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = directory / f"{kid}.{algorithm}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return kid


def rotate(directory: Path, *, rsa_key_size: int = 2048) -> dict[str, str]:
    """Make new active keys (both algorithms); the old ones stay published and verifiable."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    active = {
        "rsa-sha256": _write_private(
            directory,
            rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size),
            "rsa-sha256",
        ),
        "ed25519": _write_private(directory, ed25519.Ed25519PrivateKey.generate(), "ed25519"),
    }
    tmp = directory / (ACTIVE_FILE + ".tmp")
    tmp.write_text(json.dumps(active))
    os.replace(tmp, directory / ACTIVE_FILE)
    return active
