"""The server master key: encrypts shared keys at rest, keys the hashes of OAuth secrets and the
OAuth token signing key. A database dump alone lets nobody sign requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_FILE = "master.key"
_NONCE_BYTES = 12


class MasterKey:
    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("the master key must be 32 bytes (base64 of 32 random bytes)")
        self._aead = AESGCM(self._derive(raw, b"licensor/secret-encryption"))
        self._hash_key = self._derive(raw, b"licensor/secret-hash")
        self.token_key = self._derive(raw, b"licensor/oauth-token")

    @staticmethod
    def _derive(raw: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)

    @classmethod
    def from_base64(cls, value: str) -> MasterKey:
        return cls(base64.b64decode(value))

    @classmethod
    def load_or_create(cls, data_dir: Path, configured: str | None) -> MasterKey:
        if configured:
            return cls.from_base64(configured)
        path = data_dir / MASTER_KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            encoded = base64.b64encode(secrets.token_bytes(32))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(encoded + b"\n")
        return cls.from_base64(path.read_text().strip())

    def encrypt(self, plaintext: str, *, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context)

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context).decode()

    def hash_secret(self, secret: str) -> str:
        """Keyed hash of a high-entropy machine secret (not for human passwords: see Argon2id)."""
        return hmac.new(self._hash_key, secret.encode(), hashlib.sha256).hexdigest()

    def verify_secret(self, secret: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash_secret(secret), stored_hash)
