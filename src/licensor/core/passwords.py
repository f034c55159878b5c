"""How long a password people choose must be: license users' and console users' alike."""

from __future__ import annotations

from licensor.core.errors import LicensorError

LICENSE_USER_MIN = 8
CONSOLE_USER_MIN = 10
MAX = 1024


def check_length(
    password: str, *, minimum: int = LICENSE_USER_MIN, field: str = "password"
) -> None:
    """``validation_error`` naming ``field`` unless ``password`` has ``minimum``-1024 characters."""
    if not minimum <= len(password) <= MAX:
        raise LicensorError("validation_error", f"{field}: {minimum}-{MAX} characters")
