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
from licensor.protocol.offline import RequestFile
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import activation, auth, check, offline
from licensor.services.context import Caller, ServerKeys
from licensor.services.licensing import DeviceInfo, LicenseRef, product_refusal
from licensor.services.offline import record_variables
from licensor.services.seats import (
    NO_LIMITS,
    Credentials,
    RateLimits,
    Transaction,
    over_limits,
    transaction_of,
)
from licensor.store import activation as statements


def find(
    tx: Transaction,
    caller: Caller,
    ref: LicenseRef,
    *,
    writes: bool,
    limits: RateLimits = NO_LIMITS,
    now: datetime,
) -> list[LicenseRef]:
    """The refs of the sub-licenses of the bundle ``ref`` names (``ref.product`` the
    bundle's code, with its key), in the bundle's order, or the refusal: too many failures
    (429, ``limits``), the product's (unknown, disabled, archived, not allowed to this key),
    not a bundle, a read-only key for a write, no key. One prepared read: the sub-licenses'
    own reads then find the license (``license_not_found``, ``license_not_enabled``: a
    bundle license's switch is its sub-licenses')."""
    found = statements.product_rows(
        tx.connection,
        tx.dialect,
        company_id=caller.company_id,
        product=ref.product,
        buckets=[bucket for bucket, _ in limits.buckets],
    )
    refused = over_limits(limits, found.rate_counters, now)
    if refused is not None:
        raise refused
    product = found.product
    if product is None:
        raise LicensorError(
            "unknown_product", f"Provided product code '{ref.product}' was not found."
        )
    refusal = product_refusal(product, caller)
    if refusal is not None:
        raise LicensorError(refusal)
    if product.bundle_items is None:
        raise LicensorError("not_a_bundle", f"Product '{ref.product}' is not a bundle")
    if writes and caller.read_only:
        raise LicensorError("read_only_api_key")
    if not ref.license_key:
        raise LicensorError("license_key_required")
    return [
        replace(ref, product=code, bundle_code=product.short_code, license_id=None)
        for code in product.bundle_items
    ]


@dataclass(frozen=True, slots=True)
class Activations:
    """A committed bundle activation: each sub-license's (``render`` makes the answer, as
    ``activation.Activated.render`` does)."""

    items: list[activation.Activated]
    status: int = 200
    replayed: bool = False

    def render(self, keys: ServerKeys, algorithm: SignatureAlgorithm) -> bytes:
        """``/activate_bundle``'s answer: the activation license object of each sub-license."""
        return compact_json([item.body(keys, algorithm) for item in self.items])


def activate(
    tx: Transaction,
    keys: ServerKeys,
    who: Caller | Credentials,
    ref: LicenseRef,
    info: DeviceInfo,
    limits: RateLimits = NO_LIMITS,
    *,
    now: datetime,
    variables: dict[str, str] | None = None,
    algorithm: SignatureAlgorithm = "rsa-sha256",
    offline_file: RequestFile | None = None,
) -> Activations:
    """Activate every sub-license of the bundle on ``ref``'s device inside the write
    transaction ``tx`` (a refusal: the caller rolls back, nothing is taken). ``offline_file``:
    from a request file (refused where offline activation is not; its ``request_id`` taken
    on the bundle license). ``limits``: the request's rate limits (their counters read in
    the transaction; counting a refusal is the caller's)."""
    caller = (
        who
        if isinstance(who, Caller)
        else auth.hmac_request_caller(
            tx.connection, tx.dialect, keys, pairs=who.pairs, date_value=who.date_value, now=now
        )
    )
    refs = find(tx, caller, ref, writes=True, limits=limits, now=now)
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
            # (signed when the answer is rendered, after the commit: n signatures inside the
            # write transaction would hold SQLite's lock n times as long)
            keeps_signature=False,
            offline=offline_file is not None,
        )
        for sub in refs
    ]
    if offline_file is not None:  # (on the first sub-license: one file, one request id)
        offline.take_request_id(tx, done[0].license.id, offline_file, "activation", ref, now)
    return Activations(done)


def answer_file(done: Activations, keys: ServerKeys, algorithm: SignatureAlgorithm) -> bytes:
    """The license file of a bundle (``/activate_bundle_offline``): ``licenses``, each an
    offline license object (``date``, ``offline_signature``, both license signatures), and
    ``bundle_signature_v2`` over ``{"licenses": [...]}`` (v4 §2.3)."""
    body: dict[str, Any] = {
        "licenses": [
            item.body(keys, algorithm, request="offline_activation") for item in done.items
        ]
    }
    body["bundle_signature_v2"] = keys.keyring.sign_body(algorithm, compact_json(body))
    return compact_json(body)


def checked(
    tx: Transaction,
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
    the transaction ``tx``; ``check.DeviceTouchNeeded`` unless ``may_write``)."""
    answers = []
    for sub in find(tx, caller, ref, writes=False, now=now):
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
    request file (its ``request_id`` taken on the first sub-license freed, its device
    variables recorded first)."""
    tx = transaction_of(session)
    freed: list[int] = []
    for sub in find(tx, caller, ref, writes=True, now=now):
        try:
            held = record_variables(session, keys, caller, sub, variables, now=now)
            activation.deactivate(tx, keys, caller, sub, now=now, offline=offline_file is not None)
        except LicensorError as exc:
            if exc.code not in _NOT_HELD:
                raise
            continue
        freed.append(held.rows.license.id)
    if not freed:
        raise LicensorError("device_not_found")
    if offline_file is not None:
        offline.take_request_id(tx, freed[0], offline_file, "deactivation", ref, now)
    return "license_deactivated"
