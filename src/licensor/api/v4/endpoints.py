"""License API v4: authenticate, validate, call one service, render. No rules, no SQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams
from starlette.responses import Response

from licensor.api.errors import describe_validation
from licensor.api.middleware import accepted_algorithm
from licensor.api.state import AppState, app_state
from licensor.api.v4 import schemas
from licensor.core.errors import LicensorError
from licensor.core.keys import normalize_license_key
from licensor.protocol.signing import SignatureAlgorithm, compact_json
from licensor.services import (
    auth,
    bundles,
    check,
    license_features,
    license_users,
    licensing,
    rate_limit,
    releases,
    seats,
    sso,
    variables,
)
from licensor.services.context import Caller

router = APIRouter(prefix="/api/v4", tags=["License API v4"])
Model = TypeVar("Model", bound=BaseModel)
IDEMPOTENCY_KEY_MAX = 200


def route(method: str, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """Register ``path`` and ``path/`` (clients use both)."""

    def register(func: Callable[..., Any]) -> Any:
        router.add_api_route(path + "/", func, methods=[method], include_in_schema=False)
        router.add_api_route(path, func, methods=[method], **kwargs)
        return func

    return register


def utcnow() -> datetime:
    return datetime.now(UTC)


async def raw_body(request: Request) -> bytes:
    return await request.body()


def json_answer(body: Any, status: int = 200) -> Response:
    return Response(compact_json(body), status_code=status, media_type="application/json")


def caller_of(session: Session, state: AppState, request: Request, now: datetime) -> Caller:
    return auth.authenticate(
        session,
        state.keys,
        authorization=request.headers.get("authorization"),
        date_value=request.headers.get("date"),
        now=now,
    )


def request_caller(state: AppState, request: Request, now: datetime) -> Caller:
    """``caller_of`` in its own reads: an HMAC key in one autocommit statement (no session),
    a bearer token in a read transaction."""
    return header_caller(
        state, request.headers.get("authorization"), request.headers.get("date"), now
    )


def header_caller(
    state: AppState, authorization: str | None, date_value: str | None, now: datetime
) -> Caller:
    """The caller of a request's ``Authorization`` and ``Date`` headers (``request_caller``)."""
    found = auth.presented(authorization, date_value)
    if isinstance(found, auth.BearerToken):
        with state.db.transaction() as session:
            return auth.authenticate_bearer_request(session, state.keys, found, now)
    return hmac_caller_of(state, found.pairs, found.date_value, now)


def hmac_caller_of(
    state: AppState, pairs: dict[str, str], date_value: str, now: datetime
) -> Caller:
    """The caller of an HMAC-signed request (``auth.presented`` checked its format), its API
    key read in one autocommit statement; or the refusal."""
    db = state.db
    with db.snapshot() as connection:
        return auth.hmac_request_caller(
            connection.connection.dbapi_connection,  # type: ignore[arg-type]
            db.dialect,
            state.keys,
            pairs=pairs,
            date_value=date_value,
            now=now,
        )


def _validate(model: type[Model], data: Any, *, strict: bool) -> Model:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        missing = [
            ".".join(str(p) for p in e["loc"]) for e in exc.errors() if e["type"] == "missing"
        ]
        if missing:
            if missing == ["hardware_id"]:
                raise LicensorError("missing_hardware_id") from None
            raise LicensorError(
                "missing_parameters",
                "Some parameters are missing in the request: " + ", ".join(missing) + ".",
            ) from None
        raise LicensorError("validation_error", describe_validation(exc.errors())) from None


def parse_json(raw: bytes, model: type[Model]) -> Model:
    if not raw.strip():
        raise LicensorError("missing_parameters", "The request body is empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LicensorError("invalid_json", f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LicensorError("validation_error", "body: must be a JSON object")
    return _validate(model, data, strict=True)


def parse_object(data: dict[str, Any], model: type[Model]) -> Model:
    """``data`` (a JSON object already parsed: an offline request file's) as ``model``."""
    return _validate(model, data, strict=True)


def parse_query(request: Request, model: type[Model]) -> Model:
    return parse_params(request.query_params, model)


def parse_params(params: QueryParams, model: type[Model]) -> Model:
    data: dict[str, Any] = {}
    for name in params:
        values = params.getlist(name)
        if len(values) > 1:
            raise LicensorError("validation_error", f"{name}: given more than once")
        data[name] = values[0]
    return _validate(model, data, strict=False)


def idempotency_key_of(request: Request) -> str | None:
    return checked_idempotency_key(request.headers.get("idempotency-key"))


def checked_idempotency_key(value: str | None) -> str | None:
    if value is not None and not (0 < len(value) <= IDEMPOTENCY_KEY_MAX and value.isprintable()):
        raise LicensorError("validation_error", "Idempotency-Key: 1-200 printable characters")
    return value


def failure_buckets(
    policy: rate_limit.Policy, client: str | None, company_id: int, data: BaseModel
) -> list[tuple[str, int]]:
    """The rate-limit buckets of a request naming ``product`` and ``license_key`` or
    ``username`` (services/rate_limit.py)."""
    key, username = getattr(data, "license_key", None), getattr(data, "username", None)
    identity = (
        normalize_license_key(key)
        if isinstance(key, str) and key
        else (username.strip().lower() if isinstance(username, str) else "") or None
    )
    product = getattr(data, "product", None)
    return rate_limit.buckets(
        policy, client, company_id, product if isinstance(product, str) else "", identity
    )


@contextmanager
def failures_counted(
    request: Request, state: AppState, caller: Caller, data: BaseModel, now: datetime
) -> Iterator[None]:
    """Refuse (429) a client address or license identity over its failure limit, and count
    this request's failure if it reveals a wrong guess (services/rate_limit.py). ``data``: a
    request naming ``product`` and ``license_key`` or ``username``."""
    policy = rate_limit.Policy.of(state.settings)
    client = request.client.host if request.client else None
    found = failure_buckets(policy, client, caller.company_id, data)
    if found:
        with state.db.transaction() as session:
            rate_limit.ensure_allowed(session, policy, found, now)
    try:
        yield
    except LicensorError as exc:
        seats.RateLimits(policy, found).count(state.db, now, exc.code)
        raise


def license_ref(data: schemas.LicenseIdentity, password: str | None = None) -> licensing.LicenseRef:
    return licensing.LicenseRef(
        product=data.product,
        hardware_id=data.hardware_id,
        license_key=data.license_key,
        username=data.username,
        password=password,
        license_id=data.license_id,
        bundle_code=data.bundle_code,
    )


def sso_user(
    state: AppState, caller: Caller, data: schemas.LicenseIdentity | schemas.UserLicensesQuery
) -> sso.SsoUser | None:
    """The user single sign-on credentials name, or ``None`` when none came. Called before the
    write transaction, in a read one of its own: it may ask the identity provider, over the
    network, and SQLite's write lock must not wait for it."""
    if not isinstance(data, schemas.SsoFields) or not (
        data.customer_account_code or data.id_token or data.code
    ):
        return None
    if not data.customer_account_code:
        raise LicensorError(
            "missing_parameters",
            "Some parameters are missing in the request: customer_account_code.",
        )
    credentials = sso.SsoCredentials(
        data.customer_account_code, data.id_token, data.code, data.redirect_uri, data.nonce
    )
    with state.db.transaction() as session:
        return sso.verified_user(session, state.keys, caller, data.product, credentials)


def identity_ref(
    session: Session,
    caller: Caller,
    data: schemas.LicenseIdentity,
    user: sso.SsoUser | None,
    password: str | None = None,
    *,
    now: datetime,
    create_user: bool = False,
) -> licensing.LicenseRef:
    """The license reference, naming the verified ``user`` (``sso_user``) if any."""
    ref = license_ref(data, password)
    if user is None:
        return ref
    return sso.resolve_ref(session, caller, ref, user, now=now, create_user=create_user)


def device_info(data: schemas.DeviceFields) -> licensing.DeviceInfo:
    return licensing.DeviceInfo(
        is_vm=data.is_vm,
        vm_info=data.vm_info,
        os_ver=data.os_ver,
        hostname=data.hostname or data.os_hostname,
        ip=data.ip,
        ip_local=data.ip_local,
        app_ver=data.app_ver,
        sdk_ver=data.sdk_ver,
        mac_address=data.mac_address,
    )


def variables_as_text(values: dict[str, Any] | None) -> dict[str, str] | None:
    if values is None:
        return None
    return {
        name: ("true" if v is True else "false" if v is False else str(v))
        for name, v in values.items()
    }


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` put in place of their references: within an
    operation of the OpenAPI document a ``#/$defs/...`` reference points at the document's
    root, where there is none (ReDoc refuses the whole document)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inlined(value: Any) -> Any:
        if isinstance(value, dict):
            reference = value.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                found = definitions[reference.removeprefix("#/$defs/")]
                rest = {k: v for k, v in value.items() if k != "$ref"}
                return {**inlined(found), **inlined(rest)}
            return {k: inlined(v) for k, v in value.items()}
        if isinstance(value, list):
            return [inlined(v) for v in value]
        return value

    result: dict[str, Any] = inlined(schema)
    return result


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model_schema(model)}},
        }
    }


def query_doc(model: type[BaseModel]) -> dict[str, Any]:
    schema = model_schema(model)
    required = set(schema.get("required", []))
    return {
        "parameters": [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
    }


# -- endpoints ---------------------------------------------------------------------------------


@route("POST", "/track_device_variables", openapi_extra=body_doc(schemas.TrackVariablesRequest))
def track_device_variables(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        data = parse_json(raw, schemas.TrackVariablesRequest)
        values = variables_as_text(data.variables) or {}
        answer = variables.track(session, state.keys, caller, license_ref(data), values, now=now)
    return json_answer(answer)


@route("GET", "/get_device_variables", openapi_extra=query_doc(schemas.GetVariablesQuery))
def get_device_variables(request: Request) -> Response:
    state = app_state(request)
    now = utcnow()
    with state.db.transaction() as session:
        caller = caller_of(session, state, request, now)
        query = parse_query(request, schemas.GetVariablesQuery)
        answer = variables.get(session, state.keys, caller, license_ref(query), now=now)
    return json_answer(answer)


@route("GET", "/check_license_feature", openapi_extra=query_doc(schemas.CheckFeatureQuery))
def check_license_feature(request: Request) -> Response:
    """The license's feature ``feature`` on this device (expired ones refused unless
    ``include_expired_features``)."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.CheckFeatureQuery)
    db = state.db

    def checked(tx: seats.Transaction, *, may_write: bool) -> dict[str, Any]:
        return license_features.check_feature(
            tx,
            state.keys,
            caller,
            license_ref(query),
            query.feature,
            now=now,
            include_expired=query.include_expired_features,
            may_write=may_write,
        )

    with failures_counted(request, state, caller, query, now):
        try:
            with db.snapshot() as connection:
                dbapi = connection.connection.dbapi_connection
                answer = checked(seats.Transaction(dbapi, db.dialect), may_write=False)  # type: ignore[arg-type]
        except license_features.SlotWriteNeeded:  # (a floating feature's slot to take)
            with db.fast_write() as dbapi:
                answer = checked(seats.Transaction(dbapi, db.dialect), may_write=True)
    return json_answer(answer)


@route("GET", "/versions", openapi_extra=query_doc(schemas.VersionsQuery))
def versions(request: Request) -> Response:
    """The versions this device's license covers (released before its maintenance or
    validity end), oldest first."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.VersionsQuery)
    with failures_counted(request, state, caller, query, now), state.db.transaction() as session:
        answer = releases.versions(
            session,
            state.keys,
            caller,
            license_ref(query),
            env=query.env,
            channel=query.channel,
            now=now,
        )
    return json_answer(answer)


@route("GET", "/installation_file", openapi_extra=query_doc(schemas.InstallationFileQuery))
def installation_file(request: Request) -> Response:
    """The links of a version this device's license covers (``version``, else the latest)."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.InstallationFileQuery)
    with failures_counted(request, state, caller, query, now), state.db.transaction() as session:
        answer = releases.installation_file(
            session,
            state.keys,
            caller,
            license_ref(query),
            version=query.version,
            env=query.env,
            channel=query.channel,
            now=now,
        )
    return json_answer(answer)


def signature_algorithm(request: Request) -> SignatureAlgorithm:
    """The algorithm of the license signatures in the answer (``Licensor-Accept-Signature``)."""
    return accepted_algorithm(request.headers.get("licensor-accept-signature", ""))


@route("GET", "/check_bundle", openapi_extra=query_doc(schemas.CheckQuery))
def check_bundle(request: Request) -> Response:
    """The check answer of every sub-license of a bundle on this device (an array)."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.CheckQuery)
    algorithm = signature_algorithm(request)

    def checked(tx: seats.Transaction, *, may_write: bool) -> list[dict[str, Any]]:
        return bundles.checked(
            tx,
            state.keys,
            caller,
            license_ref(query),
            device_info(query),
            now=now,
            algorithm=algorithm,
            include_expired_features=query.include_expired_features,
            may_write=may_write,
        )

    db = state.db
    with failures_counted(request, state, caller, query, now):
        try:
            with db.snapshot() as connection:
                dbapi = connection.connection.dbapi_connection
                answer = checked(seats.Transaction(dbapi, db.dialect), may_write=False)  # type: ignore[arg-type]
        except check.DeviceTouchNeeded:  # (device facts or a floating slot to record)
            with db.fast_write() as dbapi:
                answer = checked(seats.Transaction(dbapi, db.dialect), may_write=True)
    return json_answer(answer)


@route("POST", "/deactivate_bundle", openapi_extra=body_doc(schemas.DeactivateRequest))
def deactivate_bundle(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """Free this device's seat on every sub-license of a bundle that holds it."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    data = parse_json(raw, schemas.DeactivateRequest)
    if data.consumptions is not None:
        raise LicensorError(
            "validation_error", "consumptions: report them on each sub-license (add_consumption)"
        )
    with (
        failures_counted(request, state, caller, data, now),
        state.db.transaction(write=True, queued=True) as session,
    ):
        answer = bundles.deactivate(session, state.keys, caller, license_ref(data), now=now)
    return json_answer(answer)


@route("POST", "/change_password", openapi_extra=body_doc(schemas.ChangePasswordRequest))
def change_password(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """A license user's new password, on the licenses their current one opens."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    data = parse_json(raw, schemas.ChangePasswordRequest)
    with (
        failures_counted(request, state, caller, data, now),
        state.db.transaction(write=True) as session,
    ):
        answer = license_users.change_password(
            session,
            caller,
            username=data.username,
            password=data.password,
            new_password=data.new_password,
            now=now,
        )
    return json_answer(answer)


@route("GET", "/customer_license_users", openapi_extra=query_doc(schemas.CustomerLicenseUsersQuery))
def customer_license_users(request: Request) -> Response:
    """A customer (by e-mail) and the license users of its licenses of a user-based product."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.CustomerLicenseUsersQuery)
    with state.db.transaction() as session:
        answer = license_users.customer_license_users(
            session, caller, product=query.product, customer=query.customer
        )
    return json_answer(answer)


@route("GET", "/user_licenses", openapi_extra=query_doc(schemas.UserLicensesQuery))
def user_licenses(request: Request) -> Response:
    """The licenses of a product a license user holds (by password or single sign-on)."""
    state = app_state(request)
    now = utcnow()
    caller = request_caller(state, request, now)
    query = parse_query(request, schemas.UserLicensesQuery)
    with failures_counted(request, state, caller, query, now):
        user = sso_user(state, caller, query)
        if user is None and not (query.username and query.password):
            missing = [n for n in ("username", "password") if not getattr(query, n)]
            raise LicensorError(
                "missing_parameters",
                "Some parameters are missing in the request: " + ", ".join(missing) + ".",
            )
        with state.db.transaction() as session:
            answer = license_users.user_licenses(
                session,
                caller,
                product=query.product,
                username=user.email if user is not None else query.username or "",
                password=None if user is not None else query.password,
                now=now,
            )
    return json_answer(answer)


@route("GET", "/product_details", openapi_extra=query_doc(schemas.ProductDetailsQuery))
def product_details(request: Request) -> Response:
    state = app_state(request)
    now = utcnow()
    with state.db.transaction() as session:
        caller = caller_of(session, state, request, now)
        query = parse_query(request, schemas.ProductDetailsQuery)
        answer = licensing.product_details(
            session,
            caller,
            query.product,
            include_latest_version=query.include_latest_version,
            include_custom_fields=query.include_custom_fields,
        )
    return json_answer(answer.body)


@route("GET", "/trial_key", openapi_extra=query_doc(schemas.TrialKeyQuery))
def trial_key(request: Request) -> Response:
    """Create (or return the existing) trial license of this device."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction(write=True) as session:
        caller = caller_of(session, state, request, now)
        query = parse_query(request, schemas.TrialKeyQuery)
        answer = licensing.trial_key(
            session,
            caller,
            licensing.TrialRequest(
                product=query.product,
                hardware_id=query.hardware_id,
                email=query.email,
                password=query.password,
                first_name=query.first_name,
                last_name=query.last_name,
                phone=query.phone,
                license_policy=query.license_policy,
            ),
            now=now,
        )
    return json_answer(answer.body)


@route("GET", "/sso_url", openapi_extra=query_doc(schemas.SsoUrlQuery))
def sso_url(request: Request) -> Response:
    """The customer's identity provider login URL (with ``state`` and ``nonce``) and metadata."""
    state = app_state(request)
    now = utcnow()
    with state.db.transaction() as session:
        caller = caller_of(session, state, request, now)
        query = parse_query(request, schemas.SsoUrlQuery)
        body = sso.sso_url(
            session,
            state.keys,
            caller,
            product=query.product,
            customer_account_code=query.customer_account_code,
            response_type=query.response_type,
            redirect_uri=query.redirect_uri,
        )
    return json_answer(body)


@route("GET", "/public_keys")
def public_keys(request: Request) -> Response:
    """The public keys that verify Licensor's signatures (active and retired), by key id."""
    return json_answer({"keys": app_state(request).keys.keyring.public_keys()})


# -- OAuth -------------------------------------------------------------------------------------


def token_endpoint_url(request: Request) -> str:
    base = app_state(request).settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/api/v4/oauth/token"


@route("POST", "/oauth/token")
def oauth_token(request: Request, raw: bytes = Depends(raw_body)) -> Response:
    """OAuth 2.0 client credentials (form-encoded), answering the documented token shape."""
    state = app_state(request)
    try:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), strict_parsing=False).items()}
    except UnicodeDecodeError:
        form = {}
    try:
        with state.db.transaction() as session:
            token = auth.issue_token(
                session,
                state.keys,
                grant_type=form.get("grant_type"),
                client_id=form.get("client_id"),
                client_secret=form.get("client_secret"),
                now=utcnow(),
            )
    except auth.OAuthError as exc:
        return json_answer({"error": exc.error, "error_description": exc.description}, exc.status)
    response = json_answer(token.as_response())
    response.headers["Cache-Control"] = "no-store"
    return response


@route("GET", "/oauth_url")
def oauth_url(request: Request, login_type: str = "client_credentials") -> Response:
    if login_type != "client_credentials":
        raise LicensorError("validation_error", "login_type: only client_credentials is supported")
    return json_answer({"url": token_endpoint_url(request)})


well_known_router = APIRouter(tags=["OAuth"])


@well_known_router.get("/.well-known/openid-configuration")
def openid_configuration(request: Request) -> Response:
    token_url = token_endpoint_url(request)
    return json_answer(
        {
            "issuer": token_url.rsplit("/api/v4/", 1)[0],
            "token_endpoint": token_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }
    )
