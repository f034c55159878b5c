"""Bad input gets the documented JSON error, signed, and never a 5xx (issue 2 "Bad input",
DECISIONS §3); Ed25519 answers on request (DECISIONS §2); a database that is down answers 503.

Pure HTTP-shape tests share one SQLite-backed server per module (they change nothing); tests whose
outcome depends on the database (NUL bytes, out-of-range integers, the fuzz loop) run on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from licensor.api.app import create_app
from licensor.protocol import (
    format_authorization,
    hmac_signature,
    http_date,
    license_signing_string,
    parse_licensor_signature,
    v2_signing_bytes,
)
from tests.harness.postgres import PostgresServer
from tests.server.support import Api, Server, error_of, shared_keys_dir, start_server

HW = "a53f-0cbc-15fc-ec01"
LIMIT = 64 * 1024
ACTIVATE = "/api/v4/activate_license"
DEACTIVATE = "/api/v4/deactivate_license"
CHECK = "/api/v4/check_license"
TRACK = "/api/v4/track_device_variables"
JSON_ENDPOINTS = (ACTIVATE, DEACTIVATE, TRACK)

Shared = tuple[Server, str]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One SQLite-backed server with a product and an activated license (max 1000 seats)."""
    base = tmp_path_factory.mktemp("bad-input")
    for server in start_server(
        f"sqlite:///{base / 'licensor.db'}",
        base / "data",
        shared_keys_dir(tmp_path_factory.getbasetemp()),
    ):
        yield server, activated(server)


def activated(server: Server) -> str:
    server.product()
    license_ = server.license(max_activations=1000)
    assert license_.license_key
    response = server.api.activate(product="app", license_key=license_.license_key, hardware_id=HW)
    assert response.status_code == 200, response.text
    return license_.license_key


def post_raw(api: Api, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return api.call(
        "POST", path, content=raw, headers={"Content-Type": "application/json", **headers}
    )


def post_json(api: Api, path: str, body: Any) -> httpx.Response:
    """Python's encoder: keeps integers of any size and escapes NULs and lone surrogates."""
    return post_raw(api, path, json.dumps(body).encode())


def assert_error(response: httpx.Response, status: int, code: str, *names: str) -> str:
    assert error_of(response) == (status, code), response.text
    message: str = response.json()["message"]
    for name in names:
        assert name in message, (name, message)
    return message


def good_body(key: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"product": "app", "license_key": key, "hardware_id": HW}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


# -- malformed bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_malformed_json_is_invalid_json(shared: Shared, path: str) -> None:
    server, _key = shared
    for raw in (
        b"{",
        b'{"product": "app",}',
        b"{'product': 'app'}",
        b'{"product": "app"} trailing',
        b"nul",
        b'{"product": NaN}',
        b'{"product": 1e400}',
        b'{"product": "\xff\xfe"}',
        b"\xef\xbb\xbf\xff",
        b'{"hardware_id": "\\ud800", "product": "app"}',  # lone surrogate escapes
        b'"\\ud800"',
        b'{"product": "app", "hardware_id": "\\udc00x"}',
        b'{"product": "\\x41"}',
        b"[" * 5000 + b"]" * 5000,  # nesting deeper than the parser allows
    ):
        assert_error(post_raw(server.api, path, raw), 400, "invalid_json")


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_json_that_is_not_an_object_is_validation_error(shared: Shared, path: str) -> None:
    server, key = shared
    for raw in (
        b"[]",
        json.dumps([good_body(key)]).encode(),
        b'"activate"',
        b"42",
        b"null",
        b"true",
    ):
        assert_error(post_raw(server.api, path, raw), 400, "validation_error")


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_empty_body_is_missing_parameters(shared: Shared, path: str) -> None:
    server, _key = shared
    for raw in (b"", b"   \n", b"{}"):
        assert_error(post_raw(server.api, path, raw), 400, "missing_parameters")


def test_missing_fields(shared: Shared) -> None:
    server, key = shared
    for path in JSON_ENDPOINTS:
        variables = {"variables": {"a": "b"}} if path == TRACK else {}
        no_product = good_body(key, product=..., **variables)
        assert_error(post_json(server.api, path, no_product), 400, "missing_parameters", "product")
        no_hardware = good_body(key, hardware_id=..., **variables)
        assert_error(post_json(server.api, path, no_hardware), 400, "missing_hardware_id")
        neither = {"license_key": key}
        assert_error(
            post_json(server.api, path, neither),
            400,
            "missing_parameters",
            "product",
            "hardware_id",
        )
    assert_error(
        post_json(server.api, TRACK, good_body(key)), 400, "missing_parameters", "variables"
    )
    # the same on query strings
    assert_error(server.api.check(license_key=key, hardware_id=HW), 400, "missing_parameters")
    assert_error(server.api.check(product="app", license_key=key), 400, "missing_hardware_id")
    assert_error(server.api.check(), 400, "missing_parameters")
    for path, params in (
        ("/api/v4/product_details", {}),
        ("/api/v4/trial_key", {"hardware_id": HW}),
        ("/api/v4/get_device_variables", {"product": "app"}),
    ):
        status, code = error_of(server.api.call("GET", path, params=params))
        assert (status, code) in ((400, "missing_parameters"), (400, "missing_hardware_id"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hardware_id", 123),
        ("hardware_id", None),
        ("hardware_id", ["a"]),
        ("product", {"code": "app"}),
        ("license_key", 1234),
        ("is_vm", "yes"),
        ("is_vm", 1),
        ("license_id", "1"),
        ("license_id", True),
        ("license_id", 1.5),
        ("license_id", 0),
        ("license_id", -1),
        ("license_id", 2**63),
        ("license_id", 2**70),
        ("variables", ["a", "b"]),
        ("variables", {"a": [1]}),
        ("variables", {"a": {"b": "c"}}),
        ("variables", {"a": None}),
        ("variables", "a=b"),
        ("hostname", 5),
        ("app_ver", 1.0),
        ("password", False),
    ],
)
def test_wrong_types_name_the_field(shared: Shared, field: str, value: Any) -> None:
    server, key = shared
    body = {**good_body(key, hardware_id="typed"), field: value}
    assert_error(post_json(server.api, ACTIVATE, body), 400, "validation_error", field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("license_id", "abc"),
        ("license_id", str(2**70)),
        ("license_id", "-5"),
        ("license_id", "1.5"),
        ("is_vm", "maybe"),
        ("include_expired_features", "perhaps"),
        ("hardware_id", "h" * 300),
    ],
)
def test_bad_query_values_name_the_field(shared: Shared, field: str, value: str) -> None:
    server, key = shared
    params = {"product": "app", "license_key": key, "hardware_id": HW, field: value}
    assert_error(server.api.check(**params), 400, "validation_error", field)


def test_overlong_strings(shared: Shared) -> None:
    server, key = shared
    for field, length in (
        ("hardware_id", 300),
        ("hardware_id", 257),
        ("product", 101),
        ("license_key", 201),
        ("username", 321),
        ("hostname", 256),
        ("os_ver", 201),
        ("vm_info", 501),
        ("mac_address", 65),
    ):
        response = post_json(server.api, ACTIVATE, good_body(key, **{field: "x" * length}))
        assert_error(response, 400, "validation_error", field)
    # at the limit, hardware_id is an ordinary (new) device
    ok = post_json(server.api, ACTIVATE, good_body(key, hardware_id="h" * 256))
    assert ok.status_code == 200, ok.text
    assert ok.json()["hardware_id"] == "h" * 256


def test_too_many_or_too_big_variables(shared: Shared) -> None:
    server, key = shared
    many = {f"v{i}": str(i) for i in range(101)}
    for path in (ACTIVATE, TRACK):
        body = good_body(key, hardware_id=HW if path == TRACK else "vars", variables=many)
        assert_error(post_json(server.api, path, body), 400, "validation_error", "variables")
    for variables in ({"n" * 201: "v"}, {"n": "v" * 4001}, {"": "v"}):
        body = good_body(key, variables=variables)
        assert_error(post_json(server.api, TRACK, body), 400, "validation_error", "variables")
    hundred = {f"v{i}": i for i in range(100)}
    ok = post_json(server.api, TRACK, good_body(key, variables=hundred))
    assert ok.status_code == 200, ok.text
    assert len(ok.json()) == 100


def test_deeply_nested_json(shared: Shared) -> None:
    server, key = shared
    # within the parser's depth, the nesting reaches the schema: a variable cannot be an object
    nested: Any = "leaf"
    for _ in range(500):
        nested = {"n": nested}
    response = post_json(server.api, TRACK, good_body(key, variables={"deep": nested}))
    assert_error(response, 400, "validation_error", "variables")
    # deep nesting in an ignored field does not matter
    ignored: Any = []
    for _ in range(500):
        ignored = [ignored]
    response = post_json(server.api, ACTIVATE, good_body(key, hardware_id="deep", extra=ignored))
    assert response.status_code == 200, response.text
    # beyond it, the body is not JSON Licensor reads
    raw = b'{"product": "app", "x": ' + b'{"n": ' * 3000 + b"1" + b"}" * 3000 + b"}"
    assert_error(post_raw(server.api, ACTIVATE, raw), 400, "invalid_json")


# -- database-sensitive values (both databases) ----------------------------------------------


def test_nul_characters_are_validation_errors(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=5)
    key = license_.license_key
    assert key
    for field, value in (
        ("hardware_id", "a\x00b"),
        ("product", "ap\x00p"),
        ("license_key", key + "\x00"),
        ("username", "\x00"),
        ("password", "pw\x00"),
        ("hostname", "host\x00"),
        ("os_ver", "\x00"),
        ("app_ver", "1.0\x00"),
        ("variables", {"a\x00": "b"}),
        ("variables", {"a": "b\x00"}),
    ):
        response = post_json(server.api, ACTIVATE, good_body(key, **{field: value}))
        assert_error(response, 400, "validation_error", field)
    for field in ("hardware_id", "product", "license_key", "hostname", "license_id"):
        params = {"product": "app", "license_key": key, "hardware_id": HW}
        params[field] = "x\x00y"
        assert_error(server.api.check(**params), 400, "validation_error", field)
    for params in (
        {"product": "app\x00"},
        {"product": "app", "include_custom_fields": "\x00"},
    ):
        response = server.api.call("GET", "/api/v4/product_details", params=params)
        assert_error(response, 400, "validation_error")
    trial = server.api.call(
        "GET", "/api/v4/trial_key", params={"product": "app", "hardware_id": "t", "email": "\x00"}
    )
    assert_error(trial, 400, "validation_error", "email")
    # a NUL in an ignored field is ignored
    ok = post_json(server.api, ACTIVATE, good_body(key, note="\x00"))
    assert ok.status_code == 200, ok.text
    assert server.sql("select count(*) from devices")[0][0] == 1


def test_out_of_range_integers_are_validation_errors(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=5)
    key = license_.license_key
    assert key
    for value in (2**63, 2**64, 2**70, -(2**63) - 1, 10**400):
        raw = (
            b'{"product": "app", "license_key": "' + key.encode() + b'", "hardware_id": "'
            + HW.encode() + b'", "license_id": ' + str(value).encode() + b"}"
        )  # fmt: skip
        response = post_raw(server.api, ACTIVATE, raw)
        status, code = error_of(response)
        assert status == 400
        assert code in ("validation_error", "invalid_json"), response.text
        if value < 10**100:
            assert code == "validation_error"
            assert "license_id" in response.json()["message"]
        assert (
            server.api.check(
                product="app", license_key=key, hardware_id=HW, license_id=str(value)
            ).status_code
            == 400
        )
    # the largest id that fits is a valid (unknown) id
    response = post_json(server.api, ACTIVATE, good_body(key, license_id=2**63 - 1))
    assert error_of(response) == (400, "license_not_found")
    # numbers of any size are fine as variable values (they are stored as text)
    ok = post_json(server.api, ACTIVATE, good_body(key, variables={"big": 2**70, "small": -1}))
    assert ok.status_code == 200, ok.text


# -- oversized bodies ------------------------------------------------------------------------


def test_oversized_body_with_content_length(shared: Shared) -> None:
    server, key = shared
    for path in (*JSON_ENDPOINTS, "/api/v4/oauth/token", "/api/v4/nowhere"):
        response = post_raw(server.api, path, b"x" * (LIMIT + 1))
        assert_error(response, 413, "payload_too_large")
    # a valid body padded to exactly the limit is read
    body = json.dumps(good_body(key, hardware_id="at-limit")).encode()
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    ok = post_raw(server.api, ACTIVATE, padded)
    assert ok.status_code == 200, ok.text


def test_oversized_body_streamed_without_length(shared: Shared) -> None:
    server, key = shared

    def chunks(total: int, size: int = 4096) -> Iterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            yield b" " * piece
            sent += piece

    for path in JSON_ENDPOINTS:
        response = server.api.call(
            "POST",
            path,
            content=chunks(LIMIT + 10),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")
    # a small streamed body is read as usual
    small = json.dumps(good_body(key, hardware_id="streamed")).encode()
    response = server.api.call("POST", ACTIVATE, content=iter([small[:10], small[10:]]), headers={})
    assert response.status_code == 200, response.text


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free port in a thread; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_oversized_body_over_a_real_socket(shared: Shared) -> None:
    """Through a real HTTP server: chunked transfer encoding and a declared length."""
    server, _key = shared
    with serving(create_app(server.settings)) as base, httpx.Client(base_url=base) as client:
        api = Api(client, server.public_keys, server.api.api_key, server.api.shared_key)

        def chunked() -> Iterator[bytes]:
            for _ in range(20):
                yield b" " * 4096

        streamed = api.call(
            "POST", ACTIVATE, content=chunked(), headers={"Content-Type": "application/json"}
        )
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert_error(streamed, 413, "payload_too_large")
        declared = post_raw(api, ACTIVATE, b" " * (LIMIT + 1))
        assert_error(declared, 413, "payload_too_large")
        # the server is still fine afterwards
        check = api.call("GET", "/api/v4/product_details", params={"product": "app"})
        assert check.status_code == 200, check.text


def _raw_exchange(base: str, request: bytes) -> bytes:
    """Send ``request`` as raw bytes over a socket; the whole answer (the server closes)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_header_injection_is_refused_or_inert(shared: Shared) -> None:
    """Line breaks smuggled into a header are refused by the HTTP parser; line breaks in the
    values the application sees (JSON strings, query values) never reach an answer's headers."""
    server, key = shared
    with serving(create_app(server.settings)) as base:
        date = http_date()
        auth = format_authorization(
            server.api.api_key, hmac_signature(server.api.shared_key, date)
        ).encode()
        head = b"GET /api/v4/product_details?product=app HTTP/1.1\r\nhost: t\r\n"
        signed = b"date: " + date.encode() + b"\r\nauthorization: " + auth + b"\r\n"
        smuggled = [
            b"idempotency-key: a\rx-injected: 1\r\n",  # a bare CR inside a value
            b"idempotency-key: a\nx-injected: 1\r\n",  # a bare LF (a header of its own?)
            b"idempotency-key: a\x00b\r\n",  # NUL
            b"x-folded: a\r\n b\r\n",  # obsolete line folding
            b"bad header: 1\r\n",  # a space in a name
        ]
        for extra in smuggled:
            answer = _raw_exchange(base, head + signed + extra + b"connection: close\r\n\r\n")
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.startswith(b"HTTP/1.1 4"), (extra, answer[:300])
            headers = rest.partition(b"\r\n\r\n")[0].lower()
            assert b"x-injected" not in headers, (extra, answer[:300])
        # the same request without them is answered
        answer = _raw_exchange(base, head + signed + b"connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]

        with httpx.Client(base_url=base) as client:
            api = Api(client, server.public_keys, server.api.api_key, server.api.shared_key)
            injected = "x\r\nX-Injected: 1\r\n\r\n<html>"
            responses = [
                api.activate(**good_body(key, hardware_id=injected)),
                api.activate(**good_body(key, hostname=injected, hardware_id="hi-1")),
                api.check(product="app", license_key=key, hardware_id=injected),
                api.call("GET", "/api/v4/product_details", params={"product": injected}),
                api.call(
                    "POST", ACTIVATE, json=good_body(key), headers={"Idempotency-Key": "a%0d%0ab"}
                ),
            ]
    for response in responses:
        assert response.status_code < 500, response.text
        assert "x-injected" not in response.headers, response.headers
        assert all("\n" not in value and "\r" not in value for value in response.headers.values())


# -- paths, methods, query strings -----------------------------------------------------------


def test_unknown_paths_are_404(shared: Shared) -> None:
    server, _key = shared
    for path in (
        "/",
        "/api",
        "/api/v4",
        "/api/v4/nope",
        "/api/v5/check_license",
        "/api/v4/check_license/extra",
        "/api/v4//check_license",
        "/%ff%fe",
        "/api/v4/check_license%00",
        "/" + "a" * 5000,
        "/docs/x",
        "/docsx",
        "/openapi.jsonx",
        "/redoc/x",
    ):
        for auth in (True, False):
            response = server.api.call("GET", path, auth=auth)
            assert_error(response, 404, "not_found")
    response = server.api.call("POST", "/api/v4/activate", json={"a": 1})
    assert_error(response, 404, "not_found")
    # the documentation itself is served (unsigned: it is not a License API answer)
    openapi = server.client.get("/openapi.json")
    assert openapi.status_code == 200
    assert "/api/v4/activate_license" in openapi.json()["paths"]


def test_wrong_methods_are_405(shared: Shared) -> None:
    server, _key = shared
    for method, path, allowed in (
        ("GET", ACTIVATE, "POST"),
        ("DELETE", ACTIVATE, "POST"),
        ("PUT", ACTIVATE, "POST"),
        ("PATCH", DEACTIVATE, "POST"),
        ("DELETE", CHECK, "GET"),
        ("POST", CHECK, "GET"),
        ("PUT", "/api/v4/product_details", "GET"),
        ("GET", "/api/v4/oauth/token", "POST"),
        ("GET", ACTIVATE + "/", "POST"),
        ("DELETE", CHECK + "/", "GET"),
    ):
        response = server.api.call(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert allowed in response.headers.get("Allow", ""), (method, path, response.headers)


def test_trailing_slash_paths_work(shared: Shared) -> None:
    server, key = shared
    params = {"product": "app", "license_key": key, "hardware_id": HW}
    assert server.api.call("GET", CHECK + "/", params=params).status_code == 200
    details = server.api.call("GET", "/api/v4/product_details/", params={"product": "app"})
    assert details.status_code == 200, details.text
    response = server.api.call("GET", "/api/v4/get_device_variables/", params=params)
    assert response.status_code == 200, response.text
    activated = server.api.call("POST", ACTIVATE + "/", json=good_body(key, hardware_id="slash"))
    assert activated.status_code == 200, activated.text
    deactivated = server.api.call(
        "POST", DEACTIVATE + "/", json=good_body(key, hardware_id="slash")
    )
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json() == "license_deactivated"


def test_duplicate_query_parameters(shared: Shared) -> None:
    server, key = shared
    for query in (
        f"product=app&product=app&license_key={key}&hardware_id={HW}",
        f"product=app&license_key={key}&hardware_id={HW}&hardware_id=other",
        f"product=app&license_key={key}&license_key={key}&hardware_id={HW}",
    ):
        response = server.api.call("GET", f"{CHECK}?{query}")
        assert_error(response, 400, "validation_error", "more than once")
    response = server.api.call("GET", "/api/v4/product_details?product=app&product=other")
    assert_error(response, 400, "validation_error", "product")


def test_odd_query_encodings_are_not_server_errors(shared: Shared) -> None:
    server, key = shared
    for query in (
        f"product=app&license_key={key}&hardware_id=%ff%fe",
        f"product=app&license_key={key}&hardware_id=%ED%A0%80",
        f"product=app&license_key={key}&hardware_id=%",
        "product=app&&&&=&=x&license_key=&hardware_id=",
        "product=%F0%9F%98%80&license_key=%F0%9F%98%80&hardware_id=%F0%9F%98%80",
        f"product=app&license_key={key}&hardware_id={HW}&" + "x=1&" * 500,
    ):
        response = server.api.call("GET", f"{CHECK}?{query}")
        assert 400 <= response.status_code < 500, response.text
        error_of(response)


def test_idempotency_key_must_be_printable(shared: Shared) -> None:
    server, key = shared
    for value in ("a\x01b", "k" * 201, ""):
        response = server.api.call(
            "POST",
            ACTIVATE,
            json=good_body(key, hardware_id="idem"),
            headers={"Idempotency-Key": value},
        )
        assert_error(response, 400, "validation_error", "Idempotency-Key")


def test_authentication_comes_before_body_and_parameter_checks(shared: Shared) -> None:
    """v4 §4.3: path, headers, authentication, then body parse, then schema."""
    server, _key = shared
    unknown = Api(server.client, server.public_keys, "00000000-0000-0000-0000-000000000000", "x")
    for path in JSON_ENDPOINTS:
        for raw in (b"{not json", b"[]", b"", b'{"hardware_id": 1}'):
            response = server.api.call(
                "POST", path, auth=False, content=raw, headers={"Idempotency-Key": ""}
            )
            assert_error(response, 400, "missing_headers")
            assert_error(unknown.call("POST", path, content=raw), 400, "invalid_api_key")
    bad_idempotency = unknown.call(
        "POST", ACTIVATE, content=b"{", headers={"Idempotency-Key": "a\x01b"}
    )
    assert_error(bad_idempotency, 400, "invalid_api_key")
    duplicated = f"{CHECK}?product=a&product=b&hardware_id=1&hardware_id=2&license_id=x"
    assert_error(server.api.call("GET", duplicated, auth=False), 400, "missing_headers")
    assert_error(unknown.call("GET", duplicated), 400, "invalid_api_key")
    # then the body, then the schema
    assert_error(post_raw(server.api, ACTIVATE, b'{"product": 1'), 400, "invalid_json")
    assert_error(
        post_json(server.api, ACTIVATE, {"product": "nope", "license_key": "K"}),
        400,
        "missing_hardware_id",
    )


# -- fuzz ------------------------------------------------------------------------------------

WEIRD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**31,
    2**63,
    2**70,
    -(2**70),
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff\ud800",
    "\u202e\u0301",
    "😀" * 10,
    "x" * 300,
    "x" * 5000,
    "' OR 1=1 --",
    "%00",
    "../../etc/passwd",
    "\r\n\t",
    [],
    [1, "a", None],
    {},
    {"a": {"b": []}},
    {"$gt": ""},
]
FIELDS = [
    "product",
    "hardware_id",
    "license_key",
    "username",
    "password",
    "license_id",
    "is_vm",
    "variables",
    "hostname",
    "app_ver",
    "sdk_ver",
    "os_ver",
    "vm_info",
    "ip",
    "email",
    "include_custom_fields",
    "include_latest_version",
]
GET_PATHS = [
    CHECK,
    "/api/v4/get_device_variables",
    "/api/v4/product_details",
    "/api/v4/trial_key",
    "/api/v4/public_keys",
    "/api/v4/oauth_url",
]


def _mutated_json(rng: random.Random, key: str) -> bytes:
    body: dict[str, Any] = good_body(key, hardware_id=f"fz-{rng.randrange(8)}")
    for _ in range(rng.randrange(1, 4)):
        action = rng.random()
        name = rng.choice(FIELDS)
        if action < 0.6:
            body[name] = rng.choice(WEIRD_VALUES)
        elif action < 0.8:
            body.pop(name, None)
        else:
            body[rng.choice(["variables", "extra"])] = {
                rng.choice(["a", "\x00", "😀", "k" * 300]): rng.choice(WEIRD_VALUES)
                for _ in range(rng.randrange(0, 4))
            }
    raw = bytearray(json.dumps(body).encode())
    if rng.random() < 0.3 and raw:  # byte-level damage
        for _ in range(rng.randrange(1, 4)):
            position = rng.randrange(len(raw))
            choice = rng.random()
            if choice < 0.4:
                raw[position] = rng.randrange(256)
            elif choice < 0.7:
                del raw[position]
            else:
                raw[position:position] = bytes([rng.randrange(256)])
    return bytes(raw)


def _fuzz_request(rng: random.Random, server: Server, key: str) -> httpx.Response:
    api = server.api
    headers: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.1:
        headers["Date"] = rng.choice(["", "garbage", "0", "Tue, 07 Jun 2011 20:51:35 GMT", "\x7f"])
        headers["Authorization"] = api.headers(http_date())["Authorization"]
    elif roll < 0.2:
        date = http_date()
        headers["Date"] = date
        headers["Authorization"] = rng.choice(
            [
                "garbage",
                "Bearer ",
                "Bearer a.b.c",
                format_authorization(api.api_key, hmac_signature("wrong", date)),
                format_authorization("\x01", "x"),
                'algorithm="hmac-sha256"' * 50,
                "=" * 1000,
            ]
        )
    if rng.random() < 0.1:
        headers["Licensor-Accept-Signature"] = "ed25519"
    if rng.random() < 0.05:
        headers["Idempotency-Key"] = rng.choice(["k", "x" * 300, "a b", "\x7f"])
    kind = rng.random()
    if kind < 0.45:
        path = rng.choice([*JSON_ENDPOINTS, ACTIVATE + "/"])
        content = (
            _mutated_json(rng, key) if rng.random() < 0.8 else rng.randbytes(rng.randrange(0, 300))
        )
        headers.setdefault("Content-Type", rng.choice(["application/json", "text/plain", "x/y"]))
        return _send(api, "POST", path, headers, content=content)
    if kind < 0.85:
        params: list[tuple[str, str]] = [
            ("product", "app"),
            ("license_key", key),
            ("hardware_id", HW),
        ]
        for _ in range(rng.randrange(0, 4)):
            value = rng.choice(WEIRD_VALUES)
            text = value if isinstance(value, str) else json.dumps(value)
            text = text.encode("utf-8", "replace").decode("utf-8")
            params.append((rng.choice(FIELDS), text))
        if rng.random() < 0.5:
            params = [p for p in params if rng.random() < 0.8]
        return _send(api, "GET", rng.choice(GET_PATHS), headers, params=params)
    if kind < 0.92:
        form = {
            rng.choice(["grant_type", "client_id", "client_secret", "x"]): rng.choice(
                ["client_credentials", "", "\x00", "x" * 500, "😀"]
            )
            for _ in range(rng.randrange(0, 4))
        }
        return _send(api, "POST", "/api/v4/oauth/token", headers, data=form)
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    path = rng.choice(["/", "/api/v4/", "/api/v4/x", CHECK, ACTIVATE, "/.well-known/x", "/health"])
    return _send(api, method, path, headers)


def _send(api: Api, method: str, path: str, headers: dict[str, Any], **kwargs: Any) -> Any:
    auth = "Authorization" not in headers and "Date" not in headers
    encoded = {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in headers.items()}
    if method == "HEAD":
        # No body comes back: the signature header covers the body a GET would have had.
        response = api.client.request(method, path, headers={**api.headers(), **encoded})
        assert response.headers.get("LicenseSignature") or response.headers.get(
            "Licensor-Signature"
        )
        return response
    return api.call(method, path, auth=auth, headers=encoded, **kwargs)


def test_fuzz_never_5xx_always_signed(server: Server) -> None:
    server.product()
    license_ = server.license(max_activations=3)
    key = license_.license_key
    assert key
    # CI: 300 requests of a fixed seed; make fuzz: more, of a new seed each run
    rng = random.Random(int(os.environ.get("LICENSOR_FUZZ_SEED", "20240607")))
    requests = max(300, 10 * int(os.environ.get("LICENSOR_FUZZ_EXAMPLES", "0")))
    statuses: dict[int, int] = {}
    for index in range(requests):
        response = _fuzz_request(rng, server, key)  # Api.call verifies the signature
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (index, response.request.method, response.request.url, response.text)
        if response.request.method == "HEAD":
            continue
        if response.request.url.path.startswith("/api/v4/oauth/token") and status in (400, 401):
            assert {"error", "error_description"} <= set(response.json()), response.text
        elif status >= 400:
            error_of(response)
        else:
            response.json()
    assert statuses.get(200, 0) > 0 and sum(v for s, v in statuses.items() if s >= 400) > 100
    # the license is still consistent
    seats = server.sql("select times_activated from licenses where id = :i", i=license_.id)[0][0]
    active = server.sql(
        "select count(*) from devices where license_id = :i and active = :yes",
        i=license_.id,
        yes=True,
    )[0][0]
    assert seats == active <= 3


# -- Ed25519 on request ----------------------------------------------------------------------


def test_ed25519_on_request(shared: Shared) -> None:
    server, key = shared
    asked = {"Licensor-Accept-Signature": "ed25519"}
    response = server.api.call(
        "POST", ACTIVATE, json=good_body(key, hardware_id="ed-device"), headers=asked
    )
    assert response.status_code == 200, response.text
    assert "LicenseSignature" not in response.headers
    pairs = parse_licensor_signature(response.headers["Licensor-Signature"])
    assert pairs["algorithm"] == "ed25519"
    assert pairs["kid"] == server.keyring.ed25519.kid
    server.public_keys.verify(
        response.content, pairs["signature"], kid=pairs["kid"], algorithm="ed25519"
    )
    body = response.json()
    signing = license_signing_string("ed-device", key, body["validity_period"]).encode()
    server.public_keys.verify(
        signing, body["license_signature"], kid=server.keyring.ed25519.kid, algorithm="ed25519"
    )

    check = server.api.call(
        "GET",
        CHECK,
        params={"product": "app", "license_key": key, "hardware_id": "ed-device"},
        headers=asked,
    )
    assert check.status_code == 200, check.text
    assert "Licensor-Signature" in check.headers
    body = check.json()
    server.public_keys.verify(
        v2_signing_bytes(body), body["license_signature_v2"], algorithm="ed25519"
    )
    server.public_keys.verify(signing, body["license_signature"], algorithm="ed25519")

    # errors too
    error = server.api.call("GET", "/api/v4/nope", headers=asked)
    assert "Licensor-Signature" in error.headers and "LicenseSignature" not in error.headers


def test_rsa_without_the_header(shared: Shared) -> None:
    server, key = shared
    response = server.api.activate(**good_body(key, hardware_id="rsa-device"))
    assert response.status_code == 200, response.text
    assert "Licensor-Signature" not in response.headers
    server.public_keys.verify(
        response.content, response.headers["LicenseSignature"], algorithm="rsa-sha256"
    )
    assert response.headers["Licensor-Key-Id"] == server.keyring.rsa.kid
    body = response.json()
    signing = license_signing_string("rsa-device", key, body["validity_period"]).encode()
    server.public_keys.verify(
        signing, body["license_signature"], kid=server.keyring.rsa.kid, algorithm="rsa-sha256"
    )
    # an unknown algorithm request falls back to the documented RSA
    other = server.api.call(
        "GET",
        "/api/v4/product_details",
        params={"product": "app"},
        headers={"Licensor-Accept-Signature": "hmac-md5"},
    )
    assert "LicenseSignature" in other.headers


# -- database down ---------------------------------------------------------------------------


def test_database_down_is_503_and_recovers(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with PostgresServer() as pg:
        url = pg.create_database("licensor_down")
        servers = start_server(
            url, tmp_path / "data", shared_keys_dir(tmp_path_factory.getbasetemp())
        )
        server = next(servers)
        try:
            key = activated(server)
            check = {"product": "app", "license_key": key, "hardware_id": HW}
            assert server.api.check(**check).status_code == 200

            server.db.dispose()  # the test's own connections; the app keeps its pool
            pg.stop_server()
            for attempt in range(3):
                started = time.monotonic()
                response = server.api.check(**check)
                elapsed = time.monotonic() - started
                assert error_of(response) == (503, "service_unavailable"), attempt
                assert elapsed < 10, elapsed
                assert response.headers.get("Retry-After")
            activate = server.api.activate(**good_body(key, hardware_id="while-down"))
            assert error_of(activate) == (503, "service_unavailable")
            health = server.api.call("GET", "/health", auth=False)
            assert error_of(health) == (503, "service_unavailable")

            pg.start_server()
            again = server.api.check(**check)
            assert again.status_code == 200, again.text
            assert server.api.activate(**good_body(key, hardware_id="after")).status_code == 200
            assert server.api.call("GET", "/health", auth=False).status_code == 200
        finally:
            servers.close()


def test_text_that_grows_when_lower_cased(server: Server) -> None:
    """Usernames and e-mails are lower-cased before use; "İ" becomes two code points."""
    server.product("team", authorization_method="user", allow_trial=True, trial_days=7)
    email = "\u0130" * 300 + "@x.io"
    response = server.api.call(
        "GET", "/api/v4/trial_key", params={"product": "team", "hardware_id": HW, "email": email}
    )
    assert_error(response, 400, "validation_error", "email")
    assert server.sql("select count(*) from license_users")[0][0] == 0
    check = server.api.check(product="team", username=email, hardware_id=HW)
    assert error_of(check) == (400, "license_not_found")
