"""License keys: at least 100 bits of randomness, dash-grouped, unambiguous alphabet."""

from __future__ import annotations

import hashlib
import secrets

# Crockford-style: no I, L, O, U (and no 0/1 confusion with O/I/L since those letters are absent).
KEY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUPS = 5
_GROUP_LEN = 4  # 20 symbols x 5 bits = 100 bits
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "U": "V"})


def generate_license_key() -> str:
    symbols = [secrets.choice(KEY_ALPHABET) for _ in range(_GROUPS * _GROUP_LEN)]
    return "-".join(
        "".join(symbols[i : i + _GROUP_LEN]) for i in range(0, len(symbols), _GROUP_LEN)
    )


def normalize_license_key(key: str) -> str:
    """The lookup form of a key: case-insensitive, dashes and spaces ignored, confusables folded.

    Keys not made by Licensor (imported from another system) are normalised the same way, so they
    are found whatever case the customer types.
    """
    cleaned = "".join(ch for ch in key.upper() if ch not in "- \t")
    return cleaned.translate(_CONFUSABLE)


def bundle_key_lookup(key_lookup: str, bundle_code: str, product_code: str) -> str:
    """The lookup form of a bundle's sub-license: the sub-license of product ``product_code``
    in the bundle ``bundle_code`` whose license has the key ``key_lookup`` (normalised). A
    sub-license shows its bundle's key; this keeps the company's lookups unique (one per key
    and sub-product), and a key typed by a customer does not reach it unless it is this very
    text."""
    digest = hashlib.sha256(f"{key_lookup}\0{bundle_code}\0{product_code}".encode()).hexdigest()
    return "~" + digest[:60]
