"""The exceptions of the client library, in branches that never mix.

``LicensorError``
├── ``LicenseRefused`` — the server answered, signed, and said no (carries the wire ``code``).
├── ``NoTrustedAnswer`` — no answer that can be believed; the offline grace period applies.
│   ├── ``ServerUnreachable`` — network down, timeout, 5xx, rate limited.
│   └── ``UntrustedResponse`` — an answer arrived but its signature is missing, forged or altered.
├── ``LicenseNotValid`` — the stored license cannot be used on this computer now.
│   ├── ``NotActivated``, ``LicenseExpired``, ``LicenseDisabled``, ``WrongComputer``,
│   ├── ``TamperedLicense``, ``ClockTamperingDetected``, ``OfflineTooLong``
├── ``InvalidLicenseFile`` — an offline license file that is not one, was edited, or is
│   another server's or another application's.
└── ``BindingUnavailable`` — a hardware binding cannot be read on this computer.
"""

from __future__ import annotations

from datetime import datetime


class LicensorError(Exception):
    """Base class of every error raised by ``licensor.client``."""


class LicenseRefused(LicensorError):
    """The server gave a definite, signed refusal (``{"status","code","message"}``)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class NoSeatAvailable(LicenseRefused):
    """A floating license whose seats are all in use on other computers right now
    (``floating_not_available``): close the application on one of them, or try again later."""

    def __init__(self, message: str = "", status: int = 400) -> None:
        super().__init__(
            "floating_not_available",
            message
            or "every floating seat of this license is in use on other computers; close the "
            "application on one of them or try again later",
            status,
        )


class NoTrustedAnswer(LicensorError):
    """No answer that can be believed came back: the server is unreachable or the answer is untrusted.

    During :meth:`LicenseClient.validate` this starts (or continues) the offline grace period.
    """


class ServerUnreachable(NoTrustedAnswer):
    """Network error, timeout, 5xx (including 503 ``service_unavailable``) or rate limiting."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after: float | None = None


class UntrustedResponse(NoTrustedAnswer):
    """An answer arrived, but it is unsigned, signed by an unknown key, forged or altered."""


class LicenseNotValid(LicensorError):
    """The stored license cannot be used on this computer right now."""


class NotActivated(LicenseNotValid):
    """No license is stored for this product on this computer."""


class LicenseExpired(LicenseNotValid):
    """The license's validity period (plus any grace period) has ended."""

    def __init__(self, message: str, *, expired_at: datetime | None = None) -> None:
        super().__init__(message)
        self.expired_at = expired_at


class LicenseDisabled(LicenseNotValid):
    """The signed license says it is disabled or inactive."""


class WrongComputer(LicenseNotValid):
    """The stored license is bound to another computer (its hardware id differs)."""


class TamperedLicense(LicenseNotValid):
    """The stored license or its protected state was modified: a signature or MAC fails."""


class ClockTamperingDetected(LicenseNotValid):
    """The computer's clock is earlier than a time already seen (it was set back)."""

    def __init__(self, message: str, *, now: datetime, high_water: datetime) -> None:
        super().__init__(message)
        self.now = now
        self.high_water = high_water


class OfflineTooLong(LicenseNotValid):
    """No successful online check for longer than the vendor's ``max_days_offline``."""

    def __init__(self, message: str, *, last_online: datetime) -> None:
        super().__init__(message)
        self.last_online = last_online


class InvalidLicenseFile(LicensorError):
    """A license file that cannot be used here: not a license file, edited since the server
    signed it, or signed by another server or for another application's credentials."""


class BindingUnavailable(LicensorError):
    """A hardware binding cannot be read on this computer; never silently an empty identifier."""

    def __init__(self, binding: str, reason: str) -> None:
        super().__init__(f"hardware binding {str(binding)!r} is unavailable: {reason}")
        self.binding = str(binding)
        self.reason = reason
