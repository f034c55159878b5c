"""Domain errors. Each carries its wire code and HTTP status; one handler renders them."""

from __future__ import annotations

from licensor.protocol.errors import ERROR_CODES


class LicensorError(Exception):
    """An expected outcome that the API answers with ``{"status", "code", "message"}``."""

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None):
        spec = ERROR_CODES.get(code)
        self.code = code
        self.status = status if status is not None else (spec.status if spec else 400)
        self.message = message if message is not None else (spec.message if spec else code)
        super().__init__(f"{self.code}: {self.message}")


class ServiceUnavailable(LicensorError):
    def __init__(self, message: str = "The service is temporarily unavailable") -> None:
        super().__init__("service_unavailable", message)


class RateLimited(LicensorError):
    """429 ``too_many_requests``; the answer carries ``Retry-After: retry_after``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too_many_requests", f"Too many failed attempts; try again in {retry_after} seconds"
        )
        self.retry_after = retry_after
