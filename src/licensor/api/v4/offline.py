"""``POST /api/v4/activate_offline`` and ``/deactivate_offline`` (v4 §3.5-3.6), and the one
path every way of handing in a request file takes: ``read_file``, ``write_file``, ``file_body``
-- run by ``ActivationFront`` for a file sent as the body of these endpoints, and by
``take_file`` for the rest (their multipart form, the ``/offline`` upload page, the management
API; the CLI calls the management API's service).

The body is the request file itself (its base64 text) or a ``multipart/form-data`` form whose
part ``file`` is the file. The endpoints authenticate their caller as every License API endpoint
does (``Date`` and ``Authorization``); the file names its own caller (``api_key`` or
``client_id``, checked by ``services/offline.py``), which must be of the same company.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from licensor.api.state import AppState, app_state
from licensor.api.v4 import schemas
from licensor.api.v4.endpoints import (
    device_info,
    failure_buckets,
    license_ref,
    parse_object,
    request_caller,
    route,
    utcnow,
    variables_as_text,
)
from licensor.core.errors import LicensorError
from licensor.protocol.offline import MAX_FILE_BYTES, RequestFile, license_file
from licensor.services import activation, bundles, offline, rate_limit, seats
from licensor.services.context import Caller
from licensor.services.licensing import LicenseRef

log = logging.getLogger("licensor.api")

DEACTIVATED = b'"license_deactivated"'
# what a file's write transaction made: an activation, a bundle's activations, or None (a
# deactivation)
Written = activation.Activated | bundles.Activations | None

FILE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {
                "schema": {
                    "type": "string",
                    "description": "The request file: base64 of its JSON (v4 §3.5)",
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}


@dataclass(frozen=True, slots=True)
class TakenFile:
    """A request file taken: what it asked (``kind``: "activation" or "deactivation"), its
    fields, and the answer's body (the license file's JSON, or ``"license_deactivated"``)."""

    kind: str
    fields: dict[str, Any]
    body: bytes

    def vendor_answer(self) -> dict[str, Any]:
        """The management API's answer (``/offline/activate`` and ``/deactivate``): the license
        file to send back (base64 of the license object, as ``protocol.offline.license_file``
        writes it) and the object; or that the seat was freed."""
        if self.kind == "deactivation":
            return {"deactivated": True}
        return {"license_file": license_file(self.body).decode(), "license": json.loads(self.body)}


@dataclass(frozen=True, slots=True)
class FileRequest:
    """A request file read and its caller authenticated (nothing written yet): what
    ``write_file`` takes, and ``ActivationFront`` for a file sent as the body."""

    kind: str  # "activation" or "deactivation"
    found: RequestFile
    data: schemas.ActivateRequest | schemas.OfflineDeactivateFile
    caller: Caller
    ref: LicenseRef
    limits: seats.RateLimits
    bundle: bool = False  # a bundle's file (``/activate_bundle_offline``, ...)

    @property
    def slow(self) -> bool:
        """Whether the write must not hold the event loop: a deactivation (an ORM
        transaction) or a password to verify (Argon2)."""
        return self.kind == "deactivation" or self.bundle or bool(self.data.password)


def read_file(
    state: AppState,
    content: bytes,
    request: str | None,
    *,
    host: str | None,
    now: datetime,
    company_id: int | None = None,
    actor: str | None = None,
    known: Caller | None = None,
    bundle: bool = False,
) -> FileRequest:
    """Read the request file ``content`` -- ``request`` "activation" or "deactivation", or
    ``None`` for whichever the file asks -- and authenticate the caller it names (one
    autocommit read of the caller, none when ``known``, the request's own caller, signed it;
    one of the request id: a file taken already is refused here). ``company_id``:
    the company of whoever hands the file in, if known (the file must be its); ``actor``: who
    the audit log names, if not the file's key or client (a vendor's token)."""
    found = offline.read(content, request)
    kind = offline.kind_of(found)
    model: type[schemas.ActivateRequest] | type[schemas.OfflineDeactivateFile] = (
        schemas.ActivateRequest if kind == "activation" else schemas.OfflineDeactivateFile
    )
    data = parse_object(found.fields, model)
    if known is not None:
        company_id = known.company_id
    db = state.db
    with db.snapshot() as connection:  # (one autocommit read)
        tx = seats.Transaction(connection.connection.dbapi_connection, db.dialect)  # type: ignore[arg-type]
        caller = offline.file_caller(
            tx, state.keys, found, now=now, company_id=company_id, known=known
        )
        offline.refuse_replay(tx, caller, found, data.hardware_id)
    if actor is not None:
        caller = replace(caller, actor=actor)
    policy = rate_limit.Policy.of(state.settings)
    limits = seats.RateLimits(policy, failure_buckets(policy, host, caller.company_id, data))
    ref = license_ref(data, data.password)
    return FileRequest(kind, found, data, caller, ref, limits, bundle)


def write_file(
    state: AppState,
    file: FileRequest,
    now: datetime,
    *,
    wait: bool = True,
    queue_held: bool = False,
) -> Written:
    """The file's write transaction: the activation (``Activated``, a bundle's
    ``Activations``:
    its answer is signed after the commit by ``file_body``) or the deactivation (``None``).
    A refusal
    (``LicensorError``) leaves nothing written (counting it is the caller's: ``limits``);
    ``wait`` and ``queue_held`` as for ``Database.fast_write`` (an activation only)."""
    data = file.data
    if file.bundle:
        if isinstance(data, schemas.ActivateRequest):
            with state.db.fast_write(wait=wait, queue_held=queue_held) as connection:
                return bundles.activate(
                    seats.Transaction(connection, state.db.dialect),
                    state.keys,
                    file.caller,
                    file.ref,
                    device_info(data),
                    now=now,
                    variables=variables_as_text(data.variables),
                    algorithm=offline.algorithm_of(file.found),
                    offline_file=file.found,
                )
        with state.db.transaction(write=True, queued=not queue_held) as session:
            bundles.deactivate(
                session,
                state.keys,
                file.caller,
                file.ref,
                now=now,
                offline_file=file.found,
                variables=variables_as_text(data.variables),
            )
        return None
    if isinstance(data, schemas.ActivateRequest):
        with state.db.fast_write(wait=wait, queue_held=queue_held) as connection:
            return offline.activate(
                seats.Transaction(connection, state.db.dialect),
                state.keys,
                file.found,
                file.caller,
                file.ref,
                device_info(data),
                variables_as_text(data.variables),
                file.limits,
                now=now,
            )
    with state.db.transaction(write=True) as session:
        offline.deactivate(
            session,
            state.keys,
            file.found,
            file.caller,
            file.ref,
            variables_as_text(data.variables),
            file.limits,
            now=now,
            consumptions=data.consumptions,
        )
    return None


def file_body(state: AppState, file: FileRequest, written: Written) -> bytes:
    """The answer's body: the license file's JSON, signed now (committed), or
    ``"license_deactivated"``."""
    if written is None:
        return DEACTIVATED
    if isinstance(written, bundles.Activations):
        return bundles.answer_file(written, state.keys, offline.algorithm_of(file.found))
    return offline.answer_file(written, state.keys, file.found)


def take_file(
    state: AppState,
    content: bytes,
    request: str | None,
    *,
    host: str | None,
    now: datetime,
    company_id: int | None = None,
    actor: str | None = None,
    known: Caller | None = None,
    bundle: bool = False,
) -> TakenFile:
    """Take the request file ``content`` in this thread (``read_file``, ``write_file``,
    ``file_body``). A refusal (``LicensorError``) leaves nothing written but its rate-limit
    counter."""
    file = read_file(
        state,
        content,
        request,
        host=host,
        now=now,
        company_id=company_id,
        actor=actor,
        known=known,
        bundle=bundle,
    )
    try:
        written = write_file(state, file, now)
    except LicensorError as exc:
        file.limits.count(state.db, now, exc.code)
        raise
    try:
        body = file_body(state, file, written)
    except Exception as exc:  # committed: the seat is taken; a new request file answers
        log.error("offline.render_failed", extra={"error": type(exc).__name__})
        raise
    return TakenFile(file.kind, file.found.fields, body)


async def file_of(request: Request) -> bytes:
    """The request file in the body: the body itself, or the form part ``file``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return await request.body()
    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=MAX_FILE_BYTES)
    except Exception as exc:  # (python-multipart's errors: a form that does not parse)
        raise LicensorError(
            "validation_error", f"The multipart body does not parse: {type(exc).__name__}"
        ) from None
    part = form.get("file")
    if part is None:
        raise LicensorError(
            "missing_parameters", "Some parameters are missing in the request: file."
        )
    if isinstance(part, UploadFile):
        return await part.read(MAX_FILE_BYTES + 1)
    return part.encode()


async def _answer(request: Request, kind: str, *, bundle: bool = False) -> Response:
    state = app_state(request)
    now = utcnow()

    caller = await run_in_threadpool(request_caller, state, request, now)
    content = await file_of(request)
    host = request.client.host if request.client else None
    taken = await run_in_threadpool(
        take_file, state, content, kind, host=host, now=now, known=caller, bundle=bundle
    )
    return Response(taken.body, media_type="application/json")


@route("POST", "/activate_offline", openapi_extra=FILE_DOC)
async def activate_offline(request: Request) -> Response:
    """Activate a device from its request file; the answer is the license file's JSON."""
    return await _answer(request, "activation")


@route("POST", "/deactivate_offline", openapi_extra=FILE_DOC)
async def deactivate_offline(request: Request) -> Response:
    """Free a device's seat from its deactivation request file."""
    return await _answer(request, "deactivation")


@route("POST", "/activate_bundle_offline", openapi_extra=FILE_DOC)
async def activate_bundle_offline(request: Request) -> Response:
    """Activate every sub-license of a bundle from a request file (all or none); the answer
    is the bundle's license file: ``licenses`` and ``bundle_signature_v2``."""
    return await _answer(request, "activation", bundle=True)


@route("POST", "/deactivate_bundle_offline", openapi_extra=FILE_DOC)
async def deactivate_bundle_offline(request: Request) -> Response:
    """Free a device's seat on every sub-license of a bundle from a deactivation file."""
    return await _answer(request, "deactivation", bundle=True)
