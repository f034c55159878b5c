"""Reused signatures are the signatures of exactly those bytes; bodies cannot evict strings."""

from __future__ import annotations

from pathlib import Path

from licensor.keyring import Keyring
from licensor.protocol.signing import PublicKeySet


def test_cached_signatures_verify_and_bodies_do_not_evict_strings(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "keys")
    keys = PublicKeySet.from_pem([k["public_key"] for k in keyring.public_keys()])
    string = b"hardware#key#2027-01-01"
    first = keyring.sign_repeatable("ed25519", string)
    for i in range(Keyring.BODY_CACHE_SIZE + 10):  # more distinct bodies than the body cache
        body = b'{"n":%d}' % i
        signature = keyring.sign_body("ed25519", body)
        assert keyring.sign_body("ed25519", body) == signature
    keys.verify(body, signature, algorithm="ed25519")
    assert len(keyring._repeatable._entries) == 1  # the string is still cached
    assert keyring.sign_repeatable("ed25519", string) == first
    keys.verify(string, first, algorithm="ed25519")
    rsa = keyring.sign_body("rsa-sha256", b"same bytes")
    assert keyring.sign_body("rsa-sha256", b"same bytes") == rsa
    keys.verify(b"same bytes", rsa, algorithm="rsa-sha256")
    assert keyring.sign_body("rsa-sha256", b"other bytes") != rsa
