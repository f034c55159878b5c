"""QLM-style activation over the License API (DECISIONS §5): every answer carries a Computer Key.

Same authentication, errors and response signatures as the rest of ``/api/v4``; the rules are the
License API's (``services.licensing``) reached through ``services.qlm``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.responses import Response

from licensor.api.state import AppState, app_state
from licensor.api.v4 import computer_key_schemas as schemas
from licensor.api.v4.endpoints import (
    body_doc,
    caller_of,
    failures_counted,
    json_answer,
    parse_json,
    raw_body,
    utcnow,
)
from licensor.api.v4.schemas import DeviceFields
from licensor.core.errors import LicensorError
from licensor.protocol.computer_key import features_text
from licensor.protocol.signing import iso_ms_z
from licensor.services import mail, qlm
from licensor.services.context import Caller
from licensor.services.licensing import ActivationExtras, DeviceInfo, LicenseRef
from licensor.services.payload import customer_object, iso_or_none

Body = TypeVar("Body", bound=BaseModel)
router = APIRouter(prefix="/api/v4", tags=["QLM-style activation (Computer Keys)"])


def route(path: str, model: type[Any]) -> Callable[[Callable[..., Any]], Any]:
    """``POST path`` (and ``path/``) with the JSON body documented from ``model``."""

    def register(func: Callable[..., Any]) -> Any:
        router.add_api_route(path + "/", func, methods=["POST"], include_in_schema=False)
        router.add_api_route(path, func, methods=["POST"], openapi_extra=body_doc(model))
        return func

    return register


def device_info(data: DeviceFields) -> DeviceInfo:
    name = getattr(data, "computer_name", "") or data.hostname or data.os_hostname
    return DeviceInfo(
        is_vm=data.is_vm,
        vm_info=data.vm_info,
        os_ver=data.os_ver,
        hostname=name,
        ip=data.ip,
        ip_local=data.ip_local,
        app_ver=data.app_ver,
        sdk_ver=data.sdk_ver,
        mac_address=data.mac_address,
    )


def extras(data: schemas.ActivationOptions) -> ActivationExtras:
    return ActivationExtras(
        allow_reactivation=True,
        increment_activation_count=data.increment_activation_count,
        computer_type=data.computer_type,
        affiliate_id=data.affiliate_id,
        user_data=data.user_data,
    )


def grant_body(grant: qlm.ComputerKeyGrant) -> dict[str, Any]:
    license_, device = grant.license, grant.device
    customer = customer_object(grant.customer)
    if grant.customer is not None:
        customer["privacy_consent"] = grant.customer.privacy_consent
        customer["privacy_consent_at"] = iso_or_none(grant.customer.privacy_consent_at)
    return {
        "computer_key": grant.computer_key,
        "license_id": license_.id,
        "license_key": license_.license_key,
        "product": grant.product.short_code,
        "hardware_id": device.hardware_id,
        "license_model": grant.license_model.wire_name,
        "license_type": license_.license_type,
        "is_trial": license_.is_trial,
        "features": features_text(license_.feature_flags),
        "validity_period": iso_or_none(license_.validity_period),
        "expires_at": iso_or_none(grant.expires_at),
        "license_enabled": license_.enabled,
        "max_activations": license_.max_activations,
        "allow_unlimited_activations": license_.allow_unlimited_activations,
        "times_activated": license_.times_activated,
        "device_id": device.id,
        "computer_name": device.hostname,
        "computer_type": device.computer_type,
        "activation_count": device.activation_count,
        "reactivated": grant.reactivated,
        "issued_at": iso_ms_z(grant.issued_at),
        "customer": customer,
    }


def granted(
    request: Request,
    raw: bytes,
    model: type[Body],
    issue: Callable[[Session, Caller, AppState, Body, datetime], qlm.ComputerKeyGrant],
) -> Response:
    """Authenticate, parse ``model``, run one Computer Key use case in one transaction and
    answer with the grant."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction() as session:
        caller = caller_of(session, state, request, now)
    data = parse_json(raw, model)
    with (
        failures_counted(request, state, caller, data, now),
        state.db.transaction(write=True) as session,
    ):
        body = grant_body(issue(session, caller, state, data, now))
    return json_answer(body)


@route("/activate_license_by_key", schemas.ActivateByKeyRequest)
def activate_license_by_key(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Activate (or re-activate, without a new seat) this computer; answers a Computer Key.

    With ``customer``, registers or updates the customer (name, company, privacy consent)."""

    def issue(
        session: Session,
        caller: Caller,
        state: AppState,
        data: schemas.ActivateByKeyRequest,
        now: datetime,
    ) -> qlm.ComputerKeyGrant:
        customer = (
            qlm.CustomerDetails(
                email=data.customer.email,
                full_name=data.customer.full_name,
                company=data.customer.company,
                privacy_consent=data.customer.privacy_consent,
            )
            if data.customer is not None
            else None
        )
        return qlm.activate_by_key(
            session,
            caller,
            state.keys,
            LicenseRef(data.product, data.hardware_id, license_key=data.license_key),
            device_info(data),
            extras(data),
            customer=customer,
            now=now,
        )

    return granted(request, raw, schemas.ActivateByKeyRequest, issue)


@route("/request_authorization_code", schemas.RequestAuthorizationCodeRequest)
def request_authorization_code(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Step 1 of activation by authorization code: e-mail a 6-digit code (10 minutes)."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        data = parse_json(raw, schemas.RequestAuthorizationCodeRequest)
        message = qlm.request_authorization_code(
            session,
            caller,
            state.keys,
            email=data.email,
            product=data.product,
            hardware_id=data.hardware_id,
            now=now,
        )
    mail.send_authorization_code(state.settings, message)  # after the code is committed
    return json_answer(
        {
            "status": "sent",
            "email": message.to,
            "product": message.product,
            "expires_at": iso_ms_z(message.expires_at),
        }
    )


@route("/activate_license_by_code", schemas.ActivateByCodeRequest)
def activate_license_by_code(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Step 2: the e-mailed code + this computer → Computer Key (single use, 5 tries)."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        data = parse_json(raw, schemas.ActivateByCodeRequest)
        outcome = qlm.activate_by_authorization_code(
            session,
            caller,
            state.keys,
            code=data.authorization_code,
            hardware_id=data.hardware_id,
            email=data.email,
            product=data.product,
            info=device_info(data),
            extras=extras(data),
            now=now,
        )
        body = grant_body(outcome) if isinstance(outcome, qlm.ComputerKeyGrant) else None
    if isinstance(outcome, qlm.CodeRefused):
        raise LicensorError(outcome.code)  # the counted try is committed first
    return json_answer(body)


@route("/activate_license_by_field", schemas.ActivateByFieldRequest)
def activate_license_by_field(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Find the license by ``OrderID`` or ``ReceiptID`` (the product's choice) + e-mail."""

    def issue(
        session: Session,
        caller: Caller,
        state: AppState,
        data: schemas.ActivateByFieldRequest,
        now: datetime,
    ) -> qlm.ComputerKeyGrant:
        return qlm.activate_by_field(
            session,
            caller,
            state.keys,
            product=data.product,
            field=data.field,
            value=data.value,
            email=data.email,
            hardware_id=data.hardware_id,
            info=device_info(data),
            extras=extras(data),
            now=now,
        )

    return granted(request, raw, schemas.ActivateByFieldRequest, issue)


@route("/activate_license_by_credentials", schemas.ActivateByCredentialsRequest)
def activate_license_by_credentials(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """A customer account (e-mail + password) activates the customer's license."""

    def issue(
        session: Session,
        caller: Caller,
        state: AppState,
        data: schemas.ActivateByCredentialsRequest,
        now: datetime,
    ) -> qlm.ComputerKeyGrant:
        return qlm.activate_by_credentials(
            session,
            caller,
            state.keys,
            username=data.username,
            password=data.password,
            product=data.product,
            hardware_id=data.hardware_id,
            info=device_info(data),
            extras=extras(data),
            now=now,
        )

    return granted(request, raw, schemas.ActivateByCredentialsRequest, issue)


@route("/computer_key", schemas.ComputerKeyRequest)
def computer_key(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """The Computer Key of a computer that holds a seat, re-issued with today's terms."""

    def issue(
        session: Session,
        caller: Caller,
        state: AppState,
        data: schemas.ComputerKeyRequest,
        now: datetime,
    ) -> qlm.ComputerKeyGrant:
        return qlm.current_computer_key(
            session,
            caller,
            state.keys,
            LicenseRef(data.product, data.hardware_id, license_key=data.license_key),
            device_info(data),
            now=now,
        )

    return granted(request, raw, schemas.ComputerKeyRequest, issue)


@route("/validate_computer_key", schemas.ValidateComputerKeyRequest)
def validate_computer_key(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Is this Computer Key genuine, bound to this computer, and does the computer hold a seat?"""

    def issue(
        session: Session,
        caller: Caller,
        state: AppState,
        data: schemas.ValidateComputerKeyRequest,
        now: datetime,
    ) -> qlm.ComputerKeyGrant:
        return qlm.validate_computer_key(
            session,
            caller,
            state.keys,
            computer_key=data.computer_key,
            hardware_id=data.hardware_id,
            license_key=data.license_key,
            product=data.product,
            info=device_info(data),
            now=now,
        )

    return granted(request, raw, schemas.ValidateComputerKeyRequest, issue)


@route("/release_license", schemas.ReleaseRequest)
def release_license(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Free the computer's seat; with ``deactivation_code``, the code its client showed offline."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        data = parse_json(raw, schemas.ReleaseRequest)
        qlm.release(
            session,
            caller,
            LicenseRef(data.product, data.hardware_id, license_key=data.license_key),
            deactivation_code=data.deactivation_code,
            now=now,
        )
    return json_answer("license_released")


@route("/update_privacy_consent", schemas.PrivacyConsentRequest)
def update_privacy_consent(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Record a customer's privacy-policy consent (or its withdrawal) and when it was given."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        data = parse_json(raw, schemas.PrivacyConsentRequest)
        customer = qlm.update_privacy_consent(
            session,
            caller,
            email=data.email,
            consent=data.consent,
            license_key=data.license_key,
            now=now,
        )
        body = {
            "email": customer.email,
            "privacy_consent": customer.privacy_consent,
            "privacy_consent_at": iso_or_none(customer.privacy_consent_at),
        }
    return json_answer(body)
