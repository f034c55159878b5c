"""Property-based fuzzing of every operation of Licensor's OpenAPI schema (Schemathesis), against
a real ``licensor serve`` process: whatever the input -- valid by the schema or not -- no answer
is a 5xx, every answer is signed, and every error is in its front's documented shape.

Each request is authenticated as a real client would be (HMAC for the License API, a bearer
token for the management API), so the inputs reach the validation and the use cases behind
authentication. When a fuzzed request rotates or deletes the credentials the fuzz uses (the
management API allows it), they are made again before the next one.

The number of cases per operation is bounded for CI (``LICENSOR_FUZZ_EXAMPLES``, default 12);
``make fuzz`` (run by ``make bench`` too) runs many more."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import Case
from schemathesis.core.transport import Response

from licensor.api.app import create_app
from licensor.protocol.auth import format_authorization, hmac_signature, http_date
from licensor.services import catalogue
from tests.harness.postgres import PostgresServer
from tests.server.processes import Deployment, admin_token, issue_licenses, prepare, serve
from tests.server.support import verify_signed

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("LICENSOR_FUZZ_EXAMPLES", "12"))
# unset: the same cases on every run (CI); a number: other cases, reproducible with that number
SEED = os.environ.get("LICENSOR_FUZZ_SEED")
MANAGEMENT = "/api/management/"
_XML_ERROR = re.compile(rb"<error[ >]")


@dataclass
class Live:
    """A running server and the credentials the fuzz signs its requests with."""

    base: str
    deployment: Deployment
    api_key: str = ""
    shared_key: str = ""
    token: str = ""
    statuses: dict[int, int] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)  # ("GET /path") the cases ran
    succeeded: set[str] = field(default_factory=set)  # those that got a 2xx

    def renew(self) -> None:
        """A fresh API key and admin token (the fuzz may have rotated or deleted the last)."""
        deployment = self.deployment
        with deployment.db.transaction(write=True) as session:
            key = catalogue.create_api_key(session, deployment.master_key, deployment.company_id)
        self.api_key, self.shared_key = key.api_key, key.shared_key
        self.token = admin_token(deployment, "fuzz")

    def headers(self, case: Case) -> dict[str, str]:
        if case.path.startswith(MANAGEMENT):
            return {"Authorization": f"Bearer {self.token}"}
        date = http_date()
        return {
            "Date": date,
            "Authorization": format_authorization(
                self.api_key, hmac_signature(self.shared_key, date)
            ),
        }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'licensor.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.create_database("fuzz_" + uuid.uuid4().hex[:12])
    deployment = prepare(url, root / "data")
    # no failure limits: past them every guarded endpoint would answer 429 and the fuzz would
    # stop reaching the use cases (the limits have tests of their own: test_rate_limit.py)
    deployment.env["LICENSOR_RATE_LIMIT_CLIENT_FAILURES"] = "0"
    deployment.env["LICENSOR_RATE_LIMIT_LICENSE_FAILURES"] = "0"
    issue_licenses(deployment, 5, max_activations=3)
    with serve(deployment) as base:
        server = Live(base, deployment)
        server.renew()
        yield server
    deployment.db.dispose()
    statuses = server.statuses
    total = sum(statuses.values())
    print(f"fuzz statuses ({request.param}):", dict(sorted(statuses.items())))
    if total >= 200:  # (under pytest-xdist a worker may have run only some of the operations)
        # the cases got past authentication (the fuzz signs them right) and into the use cases
        assert statuses.get(401, 0) < total / 20, statuses
    # reachable with any well-formed input (under pytest-xdist a worker may have run only
    # operations whose success needs a real key, which the fuzz does not guess)
    reachable = {
        op
        for op in server.operations
        if op.startswith(("GET /api/management", "GET /api/v4/public"))
    }
    if reachable:
        assert server.succeeded, (statuses, sorted(reachable))


# The schema the server publishes at /openapi.json (building the app touches nothing on disk;
# test_the_served_schema_is_the_one_fuzzed checks they are the same).
SPEC: dict[str, Any] = create_app().openapi()
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_served_schema_is_the_one_fuzzed(live: Live) -> None:
    served = httpx.get(live.base + "/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == SPEC
    assert len(SPEC["paths"]) > 50  # every front: License API, Computer Keys, QLM, management


def _header(response: Response, name: str) -> str | None:
    values = response.headers.get(name.lower())
    return values[0] if values else None


def _assert_signed(response: Response, live: Live) -> None:
    keys = live.deployment.public_keys
    verify_signed(response.status_code, partial(_header, response), response.content, keys)


def _assert_documented_error(case: Case, response: Response) -> None:
    status = response.status_code
    if case.path.startswith("/qlmservice.asmx"):
        # the QLM front answers its errors in XML (or as the License API does, before routing)
        if _XML_ERROR.search(response.content):
            return
    body = response.json()
    if case.path == "/api/v4/oauth/token" and status in (400, 401):
        assert {"error", "error_description"} <= set(body), body  # RFC 6749 §5.2
        return
    assert isinstance(body, dict) and set(body) == {"status", "code", "message"}, body
    assert body["status"] == status, body
    assert isinstance(body["code"], str) and body["code"], body
    if status == 429 or status == 503:
        assert _header(response, "Retry-After"), response.headers


def _seeded(test: Any) -> Any:
    return seed(int(SEED))(test) if SEED else test


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=SEED is None,
    database=None,
)
@_seeded
def test_no_input_gets_a_5xx_an_unsigned_answer_or_an_undocumented_error(
    case: Case, live: Live
) -> None:
    response = case.call(base_url=live.base, headers=live.headers(case), timeout=30)
    status = response.status_code
    live.statuses[status] = live.statuses.get(status, 0) + 1
    operation = f"{case.method.upper()} {case.path}"
    live.operations.add(operation)
    if 200 <= status < 300:
        live.succeeded.add(operation)
    assert status < 500, (case.method, case.formatted_path, response.content[:300])
    _assert_signed(response, live)
    if status >= 400:
        _assert_documented_error(case, response)
    if status == 401:
        live.renew()  # maybe the fuzz revoked what it signs with: the next case gets new ones
