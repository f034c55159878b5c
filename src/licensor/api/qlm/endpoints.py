"""QLM's HTTP methods at ``/qlmservice.asmx/<Method>`` (qlm-reference §4, DECISIONS §5).

GET query strings and form POSTs with QLM's ``is_*`` arguments; answers are ``<QuickLicenseManager>``
XML, with ``<error>`` and a numeric ``<errorCode>`` (EServerErrorCode) on failure. Authentication
is the License API's: the ``Date`` header plus the HMAC ``Authorization`` header of a company API
key, or an OAuth bearer token (and ``Date``). Each method calls the same services as
``/api/v4``; nothing here decides a licensing rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from licensor import __version__
from licensor.api.qlm.errors import server_error_code
from licensor.api.qlm.xml import Elements, document, error_document, qlm_datetime
from licensor.api.state import AppState, app_state
from licensor.core.errors import LicensorError, RateLimited
from licensor.protocol.computer_key import features_text
from licensor.protocol.errors import ERROR_CODES
from licensor.protocol.signing import iso_ms_z
from licensor.services import auth, mail, qlm, rate_limit
from licensor.services.context import Caller
from licensor.services.licensing import ActivationExtras, DeviceInfo, LicenseRef

log = logging.getLogger("licensor.api.qlm")
router = APIRouter(prefix="/qlmservice.asmx", tags=["QLM HTTP methods"])

MEDIA_TYPE = "text/xml; charset=utf-8"
# Longest value accepted per argument (the storage columns); anything longer is malformed.
LIMITS = {
    "is_avkey": 200,
    "is_pcid": 256,
    "is_pckey": 2000,
    "is_computer_name": 255,
    "is_email": 320,
    "is_userdata1": 4000,
    "is_alog_userdata1": 4000,
    "is_affiliateid": 200,
    "is_authcode": 20,
    "is_deactivation_code": 50,
    "is_productid": 100,
}
DEFAULT_LIMIT = 200
# Spellings found in QLM's own documentation (qlm-reference §8.4).
ALIASES = {
    "is_deacivation_code": "is_deactivation_code",
    "is_deactcode": "is_deactivation_code",
    "is_minorverson": "is_minorversion",
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Arguments:
    """The ``is_*`` arguments of one call: names case-insensitive, values validated on use."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def text(self, name: str, *, required: bool = False, code: str = "missing_parameters") -> str:
        value = self.values.get(name, "").strip()
        if not value:
            if required:
                raise LicensorError(code, f"The argument {name} is required")
            return ""
        if "\x00" in value or len(value) > LIMITS.get(name, DEFAULT_LIMIT):
            raise LicensorError("validation_error", f"The argument {name} is malformed")
        return value

    def optional(self, name: str) -> str | None:
        return self.text(name) or None

    def flag(self, name: str, default: bool) -> bool:
        value = self.values.get(name, "").strip().lower()
        if not value:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise LicensorError("validation_error", f"The argument {name} must be true or false")

    def computer_type(self) -> str:
        value = self.values.get("is_computertype", "").strip().upper()
        types = {"": "", "0": "", "NONE": "", "1": "PC", "PC": "PC", "2": "VM", "VM": "VM"}
        if value not in types:
            raise LicensorError("validation_error", "The argument is_computertype must be PC or VM")
        return types[value]

    def version(self) -> str:
        major, minor = self.text("is_majorversion"), self.text("is_minorversion")
        if not major:
            return ""
        if not major.isdigit() or (minor and not minor.isdigit()):
            raise LicensorError("validation_error", "The version arguments must be numbers")
        return f"{int(major)}.{int(minor or 0)}"


def read_arguments(query: Mapping[str, str], pairs: list[tuple[str, str]]) -> Arguments:
    """Query string, then form body; the first value of a repeated name wins."""
    values: dict[str, str] = {}
    for name, value in [*query.items(), *pairs]:
        key = name.strip().lower()
        key = ALIASES.get(key, key)
        values.setdefault(key, value)
    return Arguments(values)


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    if request.method != "POST":
        return []
    raw = await request.body()
    if not raw.strip():
        return []
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise LicensorError("invalid_format", "Send the arguments as a form (urlencoded) or query")
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise LicensorError("invalid_format", "The form body is not UTF-8 urlencoded") from None


# -- calls -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    state: AppState
    authorization: str | None
    date: str | None
    args: Arguments
    now: datetime
    client: str | None = None  # the client address (rate limits)

    def caller(self, session: Session) -> Caller:
        return auth.authenticate(
            session,
            self.state.keys,
            authorization=self.authorization,
            date_value=self.date,
            now=self.now,
        )

    def device_info(self) -> DeviceInfo:
        computer_type = self.args.computer_type()
        return DeviceInfo(
            is_vm=computer_type == "VM",
            hostname=self.args.text("is_computer_name"),
            app_ver=self.args.version(),
        )

    def extras(self) -> ActivationExtras:
        return ActivationExtras(
            allow_reactivation=True,
            increment_activation_count=self.args.flag("is_incrementactivationcount", True),
            computer_type=self.args.computer_type(),
            affiliate_id=self.args.text("is_affiliateid"),
            user_data=self.args.text("is_alog_userdata1") or self.args.text("is_userdata1"),
        )


def license_elements(call: Call, grant: qlm.ComputerKeyGrant, result: str) -> Elements:
    """The ``ValidateLicenseHttp`` vocabulary (qlm-reference §4.2), in its documented order."""
    license_, device, customer, product = grant.license, grant.device, grant.customer, grant.product
    expired = grant.expires_at is not None and call.now > grant.expires_at
    status = (4 if grant.expires_at is not None else 2) | (64 if expired else 0)
    full_name = f"{customer.first_name} {customer.last_name}".strip() if customer else ""
    maintenance = license_.maintenance_period if license_.enable_maintenance_period else None
    available = (
        -1
        if license_.allow_unlimited_activations
        else max(license_.max_activations - license_.times_activated, 0)
    )
    return [
        ("creationDateUtc", qlm_datetime(license_.created_at)),
        ("pckey", grant.computer_key),
        ("computerName", device.hostname),
        ("computerID", device.hardware_id),
        ("userCompany", customer.company_name if customer else ""),
        ("userFullName", full_name),
        ("userEmail", customer.email if customer else ""),
        ("productID", product.id),
        ("productName", product.name),
        ("majorVersion", call.args.text("is_majorversion")),
        ("minorVersion", call.args.text("is_minorversion")),
        ("licenseModel", grant.license_model.wire_name),
        ("maintenanceRenewalDate", qlm_datetime(maintenance) if maintenance else ""),
        ("result", "The license has expired." if expired else result),
        ("status", status),
        ("features", features_text(license_.feature_flags)),
        ("duration", license_.validity_days if license_.validity_days else -1),
        ("floatingSeats", grant.floating_seats),
        (
            "numActivationsAllowed",
            -1 if license_.allow_unlimited_activations else license_.max_activations,
        ),
        ("availableLicenses", available),
        (
            "expiryDate",
            qlm_datetime(grant.expires_at, minutes_only=True) if grant.expires_at else "",
        ),
        ("activationKey", license_.license_key),
        ("userData", device.user_data),
        ("activationDate", qlm_datetime(device.first_activated_at)),
        ("serverDate", iso_seconds(call.now)),
        ("computerType", device.computer_type),
        ("activationCount", device.activation_count),
        ("privacyConsent", customer.privacy_consent if customer else None),
    ]


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validate_key(call: Call, session: Session, caller: Caller, pckey: str) -> Elements:
    grant = qlm.validate_computer_key(
        session,
        caller,
        call.state.keys,
        computer_key=pckey,
        hardware_id=call.args.text("is_pcid", required=True, code="missing_hardware_id"),
        license_key=call.args.optional("is_avkey"),
        product=call.args.optional("is_productid"),
        info=call.device_info(),
        now=call.now,
    )
    return license_elements(call, grant, "The license is valid.")


def validate_license(call: Call) -> Elements:
    """First call activates (``is_avkey`` + ``is_pcid``); later calls validate ``is_pckey``."""
    args = call.args
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        pckey = args.text("is_pckey")
        if pckey:
            return _validate_key(call, session, caller, pckey)
        license_key = args.text("is_avkey", required=True, code="license_key_required")
        ref = qlm.key_ref(
            session,
            caller,
            license_key=license_key,
            hardware_id=args.text("is_pcid", required=True, code="missing_hardware_id"),
            product=args.optional("is_productid"),
        )
        if not args.flag("is_activate", True):
            grant = qlm.stored_computer_key(
                session, caller, call.state.keys, ref, call.device_info(), now=call.now
            )
            return license_elements(call, grant, "The license is valid.")
        email = args.text("is_email")
        grant = qlm.activate_by_key(
            session,
            caller,
            call.state.keys,
            ref,
            call.device_info(),
            call.extras(),
            customer=qlm.CustomerDetails(email) if email else None,
            now=call.now,
        )
        return license_elements(
            call,
            grant,
            "The license was already activated on this computer."
            if grant.reactivated
            else "The license was activated successfully.",
        )


def activate_by_authorization_code(call: Call) -> Elements:
    args = call.args
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        pckey = args.text("is_pckey")
        if pckey:
            return _validate_key(call, session, caller, pckey)
        outcome = qlm.activate_by_authorization_code(
            session,
            caller,
            call.state.keys,
            code=args.text("is_authcode", required=True),
            hardware_id=args.text("is_pcid", required=True, code="missing_hardware_id"),
            email=args.optional("is_email"),
            product=args.optional("is_productid"),
            info=call.device_info(),
            extras=call.extras(),
            now=call.now,
        )
        if isinstance(outcome, qlm.ComputerKeyGrant):
            return license_elements(call, outcome, "The license was activated successfully.")
    raise LicensorError(outcome.code)  # after the counted try is committed


def request_authorization_code(call: Call) -> Elements:
    args = call.args
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        message = qlm.request_authorization_code(
            session,
            caller,
            call.state.keys,
            email=args.text("is_email", required=True),
            product=args.optional("is_productid"),
            hardware_id=args.optional("is_pcid"),
            now=call.now,
        )
    mail.send_authorization_code(call.state.settings, message)
    return [
        ("result", f"An authorization code was sent to {message.to}."),
        ("email", message.to),
        ("expiryDate", qlm_datetime(message.expires_at)),
    ]


def release_license(call: Call) -> Elements:
    args = call.args
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        license_key = args.text("is_avkey", required=True, code="license_key_required")
        computer = args.text("is_pcid", required=True, code="missing_hardware_id")
        ref = qlm.key_ref(
            session,
            caller,
            license_key=license_key,
            hardware_id=computer,
            product=args.optional("is_productid"),
        )
        qlm.release(
            session,
            caller,
            ref,
            deactivation_code=args.optional("is_deactivation_code"),
            now=call.now,
        )
    return [("result", f"Activation Key {license_key} has been released from computer {computer}.")]


def _floating_ref(call: Call, session: Session, caller: Caller) -> LicenseRef:
    args = call.args
    return qlm.key_ref(
        session,
        caller,
        license_key=args.text("is_avkey", required=True, code="license_key_required"),
        hardware_id=args.text("is_pcid", required=True, code="missing_hardware_id"),
        product=args.optional("is_productid"),
    )


def checkout_license(call: Call) -> Elements:
    """A cloud floating license's seat taken (or kept) by this computer at start-up."""
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        ref = _floating_ref(call, session, caller)
        seat = qlm.checkout(session, caller, call.state.keys, ref, call.device_info(), now=call.now)
    return [
        ("result", "The floating license was checked out."),
        ("activationKey", call.args.text("is_avkey")),
        ("computerID", ref.hardware_id),
        ("floatingSeats", seat.floating_seats),
        ("floatingSeatsInUse", seat.in_use),
        ("seatExpiryDate", qlm_datetime(seat.held_until)),
        ("offlineExpiryDate", qlm_datetime(seat.borrowed_until) if seat.borrowed_until else ""),
        ("serverDate", iso_seconds(call.now)),
    ]


def checkin_license(call: Call) -> Elements:
    """This computer's seat of a cloud floating license given back (at exit)."""
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        ref = _floating_ref(call, session, caller)
        qlm.checkin(session, caller, call.state.keys, ref, now=call.now)
    return [
        ("result", f"The floating license was checked in by computer {ref.hardware_id}."),
        ("computerID", ref.hardware_id),
    ]


def go_offline(call: Call) -> Elements:
    """Keep this computer's floating seat for ``is_period`` minutes without the server."""
    raw = call.args.text("is_period", required=True)
    try:
        minutes = int(raw)
    except ValueError:
        raise LicensorError("validation_error", "is_period: minutes, a whole number") from None
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        ref = _floating_ref(call, session, caller)
        until = qlm.go_offline(session, caller, call.state.keys, ref, minutes, now=call.now)
    return [
        ("result", f"The floating license is checked out offline until {qlm_datetime(until)}."),
        ("computerID", ref.hardware_id),
        ("offlineExpiryDate", qlm_datetime(until)),
    ]


def ping(call: Call) -> Elements:
    with call.state.db.transaction() as session:
        call.caller(session)
    return [
        (
            "result",
            f"Successfully connected to the License Server on {qlm_datetime(call.now)} UTC. "
            f"Licensor version: {__version__}",
        ),
        ("serverDate", iso_seconds(call.now)),
        ("serverVersion", __version__),
    ]


def latest_version(call: Call) -> Elements:
    with call.state.db.transaction() as session:
        caller = call.caller(session)
        found = qlm.latest_version(session, caller, call.args.text("is_productid", required=True))
    if found is None:
        return [
            ("result", "No version of this product has been published."),
            ("latestVersion", ""),
            ("latestVersionUrl", ""),
            ("latestVersionNotes", ""),
        ]
    return [
        ("result", f"The latest version is {found.version}."),
        ("latestVersion", found.version),
        ("latestVersionUrl", found.url),
        ("latestVersionNotes", found.notes),
        ("releaseDate", iso_ms_z(found.release_date) if found.release_date else ""),
    ]


def update_privacy_consent(call: Call) -> Elements:
    args = call.args
    with call.state.db.transaction(write=True) as session:
        caller = call.caller(session)
        if not args.text("is_consent"):
            raise LicensorError("missing_parameters", "The argument is_consent is required")
        customer = qlm.update_privacy_consent(
            session,
            caller,
            email=args.text("is_email", required=True),
            consent=args.flag("is_consent", False),
            license_key=args.optional("is_avkey"),
            now=call.now,
        )
        return [
            ("result", f"The privacy consent of {customer.email} was updated."),
            ("userEmail", customer.email),
            ("privacyConsent", customer.privacy_consent),
            (
                "privacyConsentDate",
                qlm_datetime(customer.privacy_consent_at) if customer.privacy_consent_at else "",
            ),
        ]


METHODS: dict[str, Callable[[Call], Elements]] = {
    "ValidateLicenseHttp": validate_license,
    "ActivateKeyByAuthorizationCodeHttp": activate_by_authorization_code,
    "RequestAuthorizationCodeForActivationHttp": request_authorization_code,
    "ReleaseLicenseHttp": release_license,
    "CheckoutLicenseHttp": checkout_license,
    "CheckinLicenseHttp": checkin_license,
    "GoOfflineHttp": go_offline,
    "PingHttp": ping,
    "GetLatestVersionHttp": latest_version,
    "UpdatePrivacyConsentHttp": update_privacy_consent,
    "UpdatePrivacyPolicyHttp": update_privacy_consent,  # the v11 notes' name
}
_BY_LOWER_NAME = {name.lower(): (name, handler) for name, handler in METHODS.items()}


def xml_answer(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=MEDIA_TYPE)


def _error(
    code: str, message: str | None, status: int | None, *, method: str, bom: bool
) -> Response:
    spec = ERROR_CODES.get(code)
    text = message or (spec.message if spec else code)
    http_status = status or (spec.status if spec else 400)
    number = server_error_code(code, release=method == "ReleaseLicenseHttp")
    return xml_answer(error_document(text, number, bom=bom), http_status)


def _run(handler: Callable[[Call], Elements], call: Call, method: str, bom: bool) -> Response:
    """One call: every failure becomes an XML ``<error>``, never a stack trace. Wrong keys and
    passwords count against the client address (services/rate_limit.py)."""
    message: str | None = None
    status: int | None = None
    policy = rate_limit.Policy.of(call.state.settings)
    found = rate_limit.buckets(policy, call.client, 0, "", None)
    try:
        if found:
            with call.state.db.transaction() as session:
                rate_limit.ensure_allowed(session, policy, found, call.now)
        return xml_answer(document(handler(call), bom=bom))
    except LicensorError as exc:
        code, message, status = exc.code, exc.message, exc.status
        if isinstance(exc, RateLimited):
            response = _error(code, message, status, method=method, bom=bom)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        if found and code in rate_limit.COUNTED:
            try:
                with call.state.db.transaction(write=True) as session:
                    rate_limit.record_failure(session, policy, found, call.now, code)
            except (OperationalError, PoolTimeout, DBAPIError) as db_error:
                log.warning("rate_limit.not_recorded", extra={"error": type(db_error).__name__})
    except IntegrityError:
        code = "conflict"
    except DataError:
        code, message = "validation_error", "A value does not fit its field"
    except (OperationalError, PoolTimeout, DBAPIError) as exc:
        log.warning("database.unavailable", extra={"error": type(exc).__name__})
        code, message = "service_unavailable", "The license database is unavailable"
    return _error(code, message, status, method=method, bom=bom)


async def qlm_method(method: str, request: Request) -> Response:
    """GET or form POST with ``is_*`` arguments; answers ``<QuickLicenseManager>`` XML."""
    bom = False
    try:
        found = _BY_LOWER_NAME.get(method.lower())
        if found is None:
            raise LicensorError("not_found", f"Unknown QLM method {method!r}", status=404)
        if request.method not in ("GET", "POST"):
            raise LicensorError("method_not_allowed", "Use GET or POST", status=405)
        args = read_arguments(request.query_params, await _form_pairs(request))
        bom = args.flag("is_writebom", False)
    except LicensorError as exc:
        return _error(exc.code, exc.message, exc.status, method=method, bom=bom)
    name, handler = found
    call = Call(
        state=app_state(request),
        authorization=request.headers.get("authorization"),
        date=request.headers.get("date"),
        args=args,
        now=datetime.now(UTC),
        client=request.client.host if request.client else None,
    )
    return await run_in_threadpool(_run, handler, call, name, bom)


for verb in ("GET", "POST"):
    router.add_api_route(
        "/{method}",
        qlm_method,
        methods=[verb],
        operation_id=f"qlm_method_{verb.lower()}",
        summary=f"A QLM HTTP method by {verb} (ValidateLicenseHttp, ReleaseLicenseHttp, ...)",
    )
# Other verbs get QLM's XML error (405), not the JSON one.
router.add_api_route(
    "/{method}", qlm_method, methods=["PUT", "PATCH", "DELETE"], include_in_schema=False
)
