"""Bundles (License API v4 §3.7): a bundle product is made of sub-products; a license of it
(the bundle license, with the key the customer has) holds one sub-license per sub-product,
each showing the bundle's key (``core.keys.bundle_key_lookup`` finds it).

A bundle activation, check or deactivation is the single one (``activation.activate``,
``check.check``, ``activation.deactivate``) run for each sub-license in one transaction:
every rule of a single license applies to each, and one refused sub-license refuses the whole
bundle -- the caller rolls the transaction back, so no seat is taken on the others. A single
request for one sub-license names the bundle with ``bundle_code`` (``seats.key_lookup_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.protocol.offline import RequestFile
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import activation, check, offline
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import DeviceInfo, LicenseRef, resolve_product
from licensor.services.seats import transaction_of
from licensor.store import repository
from licensor.store.models import License


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle license found for a request: the license and the refs of its sub-licenses
    (the bundle's product order)."""

    license: License
    refs: list[LicenseRef]


def find(session: Session, caller: Caller, ref: LicenseRef, *, writes: bool) -> Bundle:
    """The bundle license ``ref`` names (``ref.product`` the bundle's code, with its key), or
    the refusal: the product's (unknown, disabled, archived, not allowed to this key), not a
    bundle, a read-only key for a write, no key, no such license, a disabled bundle."""
    product = resolve_product(session, caller, ref.product)
    if product.bundle_items is None:
        raise LicensorError("not_a_bundle", f"Product '{ref.product}' is not a bundle")
    if writes and caller.read_only:
        raise LicensorError("read_only_api_key")
    if not ref.license_key:
        raise LicensorError("license_key_required")
    scope = repository.LicenseScope(
        caller.company_id, product.id, caller.scope_customer_id, pinned_id=ref.license_id
    )
    found = repository.license_by_key(
        session, scope, normalize_license_key(ref.license_key), lock=writes
    )
    if found is None:
        raise LicensorError("license_not_found", "License not found")
    if not found.enabled:
        raise LicensorError("license_not_enabled")
    refs = [
        replace(ref, product=code, bundle_code=product.short_code, license_id=None)
        for code in product.bundle_items
    ]
    return Bundle(found, refs)


def activate(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
    variables: dict[str, str] | None = None,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    offline_file: RequestFile | None = None,
) -> list[activation.Activated]:
    """Activate every sub-license of the bundle on ``ref``'s device inside the session's
    write transaction (a refusal: the caller rolls back, nothing is taken). ``offline_file``:
    from a request file (refused where offline activation is not; its ``request_id`` taken
    on the bundle license)."""
    bundle = find(session, caller, ref, writes=True)
    tx = transaction_of(session)
    done = [
        activation.activate(
            tx,
            keys,
            caller,
            sub,
            info,
            now=now,
            variables=variables,
            algorithm=algorithm,
            offline=offline_file is not None,
        )
        for sub in bundle.refs
    ]
    if offline_file is not None:
        offline.take_request_id(tx, bundle.license.id, offline_file, "activation", ref, now)
    return done


def answer(
    done: list[activation.Activated], keys: ServerKeys, algorithm: SignatureAlgorithm
) -> list[dict[str, Any]]:
    """``/activate_bundle``'s answer: the activation license object of each sub-license."""
    return [item.body(keys, algorithm) for item in done]


def answer_file(
    done: list[activation.Activated], keys: ServerKeys, algorithm: SignatureAlgorithm
) -> bytes:
    """The license file of a bundle (``/activate_bundle_offline``): ``licenses``, each an
    offline license object (``date``, ``offline_signature``, both license signatures), and
    ``bundle_signature_v2`` over ``{"licenses": [...]}`` (v4 §2.3)."""
    body: dict[str, Any] = {
        "licenses": [item.body(keys, algorithm, request="offline_activation") for item in done]
    }
    body["bundle_signature_v2"] = keys.keyring.sign_body(algorithm, compact_json(body))
    return compact_json(body)


def checked(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    info: DeviceInfo,
    *,
    now: datetime,
    algorithm: SignatureAlgorithm,
    include_expired_features: bool = False,
    may_write: bool = False,
) -> list[dict[str, Any]]:
    """The check answer of every sub-license on ``ref``'s device (``check.check`` each, in
    the session's transaction; ``check.DeviceTouchNeeded`` unless ``may_write``)."""
    bundle = find(session, caller, ref, writes=False)
    tx = transaction_of(session)
    answers = []
    for sub in bundle.refs:
        found = check.check(tx, keys, caller, sub, info, now=now, may_write=may_write)
        answers.append(
            found.body(
                keys,
                now=now,
                algorithm=algorithm,
                include_expired_features=include_expired_features,
            )
        )
    return answers


# a sub-license that does not hold this device (freed one by one, or never activated on it)
_NOT_HELD = frozenset({"device_not_found", "license_not_active"})


def deactivate(
    session: Session,
    keys: ServerKeys,
    caller: Caller,
    ref: LicenseRef,
    *,
    now: datetime,
    offline_file: RequestFile | None = None,
    variables: dict[str, str] | None = None,
) -> str:
    """Free the device's seat on every sub-license that holds it, inside the session's write
    transaction; ``device_not_found`` when none does. ``offline_file``: from a deactivation
    request file (its ``request_id`` taken on the bundle license, its device variables
    recorded first)."""
    bundle = find(session, caller, ref, writes=True)
    tx = transaction_of(session)
    freed = 0
    for sub in bundle.refs:
        try:
            if variables:
                offline.record_variables(session, keys, caller, sub, variables, now=now)
            activation.deactivate(tx, keys, caller, sub, now=now, offline=offline_file is not None)
        except LicensorError as exc:
            if exc.code not in _NOT_HELD:
                raise
            continue
        freed += 1
    if not freed:
        raise LicensorError("device_not_found")
    if offline_file is not None:
        offline.take_request_id(tx, bundle.license.id, offline_file, "deactivation", ref, now)
    return "license_deactivated"
