"""The product versions a licensed device may download (License API v4 §3.18-3.19, §5.10):
``versions`` lists them, ``installation_file`` answers one -- the one implementation of each.

A license covers the releases published up to the end of its maintenance (when it has one),
else up to the end of its validity; a license with neither covers every release. The device
must hold a seat (an inactive license: ``active_license_required``). Licensor hosts no files:
a release carries the links the vendor gave it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.protocol.signing import iso_ms_z
from licensor.services import check
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import LicenseRef
from licensor.store import repository
from licensor.store.models import ProductRelease


def _covered(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    *,
    env: str | None,
    channel: str | None,
    now: datetime,
) -> list[ProductRelease]:
    """The enabled releases the license of ``ref``'s device covers, newest first."""
    try:
        checked = check.device_in_session(session, keys, caller, ref, now=now)
    except LicensorError as exc:
        if exc.code == "license_not_active":
            raise LicensorError("active_license_required") from None
        raise
    license_ = checked.rows.license
    maintenance = license_.maintenance_period if license_.enable_maintenance_period else None
    until = maintenance or license_.validity_period
    return list(
        repository.releases(
            session, checked.rows.product.id, env=env, channel=channel, released_by=until
        )
    )


def versions(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    *,
    env: str | None = None,
    channel: str | None = None,
    now: datetime,
) -> list[dict[str, Any]]:
    """``[{version, release_date}]`` of the releases the license covers (``/versions``),
    oldest first, each version once."""
    seen: dict[str, datetime] = {}
    for release in _covered(session, keys, caller, ref, env=env, channel=channel, now=now):
        seen.setdefault(release.version, release.release_date)
    ordered = sorted(seen.items(), key=lambda item: item[1])
    return [{"version": v, "release_date": iso_ms_z(when)} for v, when in ordered]


def installation_file(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    *,
    version: str | None = None,
    env: str | None = None,
    channel: str | None = None,
    now: datetime,
) -> dict[str, Any]:
    """The release ``version`` (``None``: the latest the license covers) with its links
    (``/installation_file``); ``version_not_found`` when the license covers no such one."""
    covered = _covered(session, keys, caller, ref, env=env, channel=channel, now=now)
    found = next((r for r in covered if version is None or r.version == version), None)
    if found is None:
        raise LicensorError(
            "version_not_found",
            f"file at requested version {version} does not exist"
            if version
            else "No version is available for this license",
        )
    return {
        "installation_file": found.full_link or None,
        "version": found.version,
        "environment": found.environment,
        "hash_md5": found.hash_md5 or None,
        "eula_link": found.eula_link or None,
        "release_notes_link": found.release_notes_link or None,
        "size": found.size or None,
        "requires_version": found.requires_version or None,
        "channel": found.channel or None,
        "release_date": iso_ms_z(found.release_date),
    }
