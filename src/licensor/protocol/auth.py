"""Request authentication: the ``Date`` header and the HMAC ``Authorization`` header (License API v4 §1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

SIGNING_PREFIX = "licenseSpring"
HMAC_ALGORITHM = "hmac-sha256"
REQUIRED_PAIRS = ("algorithm", "headers", "signature", "apikey")

# key="value" pairs separated by commas, with or without spaces around them.
_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"\s*(?:,|$)')


class AuthorizationFormatError(ValueError):
    """The Authorization header cannot be read as key="value" pairs."""


# English names whatever the locale; formatting and parsing them here keeps ``email`` (slow to
# import) off the client's start-up path.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT"
)


def http_date(moment: datetime | None = None) -> str:
    """RFC 7231 IMF-fixdate in GMT, e.g. ``Tue, 07 Jun 2011 20:51:35 GMT``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} "
        f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def parse_http_date(value: str) -> datetime:
    """Parse an RFC 7231 date; raises ``ValueError`` for anything else."""
    fixdate = _IMF_FIXDATE.fullmatch(value.strip())
    if fixdate is not None:
        day, month, year, hour, minute, second = fixdate.groups()
        return datetime(
            int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second),
            tzinfo=UTC,
        )  # fmt: skip
    from email.utils import parsedate_to_datetime  # the obsolete forms RFC 7231 still accepts

    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not an RFC 7231 date: {value!r}") from exc
    if parsed is None:  # pragma: no cover - older Pythons returned None
        raise ValueError(f"not an RFC 7231 date: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def request_signing_string(headers: dict[str, str]) -> str:
    """``licenseSpring`` then one ``name: value`` line per signed header, joined by LF."""
    lines = [SIGNING_PREFIX]
    lines.extend(f"{name.lower()}: {value}" for name, value in headers.items())
    return "\n".join(lines)


def hmac_signature(shared_key: str, date: str) -> str:
    """Base64 HMAC-SHA256 of the signing string of a request with ``headers="date"``."""
    message = request_signing_string({"date": date}).encode()
    digest = hmac.new(shared_key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def offline_signature(
    shared_key: str, date: str, key_or_username: str, hardware_id: str, api_key_or_client_id: str
) -> str:
    """HMAC of offline payloads and of the ``offline_signature`` field (License API v4 §2.4)."""
    message = "\n".join(
        [SIGNING_PREFIX, f"date: {date}", key_or_username, hardware_id, api_key_or_client_id]
    ).encode()
    digest = hmac.new(shared_key.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def format_authorization(api_key: str, signature: str) -> str:
    return (
        f'algorithm="{HMAC_ALGORITHM}", headers="date", signature="{signature}", apikey="{api_key}"'
    )


def parse_authorization(value: str) -> dict[str, str]:
    """Read the key="value" pairs of an HMAC Authorization header.

    Pair names are returned lower-cased (``apiKey`` is seen in the wild). Raises
    ``AuthorizationFormatError`` when the text is not a list of such pairs.
    """
    text = value.strip()
    if not text:
        raise AuthorizationFormatError("empty Authorization header")
    pairs: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None or match.end() == position:
            raise AuthorizationFormatError("Authorization header is malformed")
        name = match.group(1).lower()
        if name in pairs:
            raise AuthorizationFormatError(f"duplicate {name!r} in Authorization header")
        pairs[name] = match.group(2)
        position = match.end()
    return pairs
