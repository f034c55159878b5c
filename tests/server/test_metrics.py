"""``/metrics`` in the Prometheus text format: off unless a token is configured, refused without
it, and -- under ``licensor serve --workers 2`` -- the counts of every worker added up: as many
requests and refusals as were sent, by endpoint and code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.server.processes import issue, prepare, serve
from tests.server.support import Api, Server


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if found and ",".join(sorted(found.group(1).split(","))) == wanted:
            return float(found.group(2))
    return 0.0


def test_metrics_need_their_token(sqlite_server: Server) -> None:
    server = sqlite_server
    assert server.client.get("/metrics").status_code == 404  # (off: no token configured)
    server.settings.metrics_token = "scrape-token-1"
    assert server.client.get("/metrics").status_code == 401
    wrong = server.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    headers = {"Authorization": "Bearer scrape-token-1"}
    before = server.client.get("/metrics", headers=headers).text
    server.product("app")
    refused = server.api.check(product="app", license_key="NOPE-NOPE", hardware_id="pc")
    assert refused.status_code == 400
    after = server.client.get("/metrics", headers=headers)
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    for name, labels in (
        ("licensor_requests_total", {"endpoint": "/api/v4/check_license", "status": "400"}),
        ("licensor_refusals_total", {"code": "license_not_found"}),
    ):
        assert sample(after.text, name, **labels) == sample(before, name, **labels) + 1
    assert "licensor_request_seconds_bucket" in after.text
    # checks: the first made and signed, the next one served again from memory
    key = server.license("app").license_key or ""
    assert server.api.activate(product="app", license_key=key, hardware_id="pc").status_code == 200
    counted = server.client.get("/metrics", headers=headers).text
    for _ in range(2):
        assert server.api.check(product="app", license_key=key, hardware_id="pc").status_code == 200
    checks = server.client.get("/metrics", headers=headers).text
    made = sample(checks, "licensor_check_answers_total", source="made")
    kept = sample(checks, "licensor_check_answers_total", source="kept")
    assert made == sample(counted, "licensor_check_answers_total", source="made") + 1
    assert kept == sample(counted, "licensor_check_answers_total", source="kept") + 1
    # a path the server does not know makes no label of its own
    for n in range(5):
        server.client.get(f"/api/v4/made-up-{n}")
    labels = server.client.get("/metrics", headers=headers).text
    assert "made-up" not in labels


def test_every_workers_counts_are_added_up(tmp_path: Path) -> None:
    deployment = prepare(f"sqlite:///{tmp_path / 'licensor.db'}", tmp_path / "data")
    deployment.env["LICENSOR_METRICS_TOKEN"] = "scrape-token-2"
    key = issue(deployment, max_activations=20)
    with serve(deployment, workers=2) as base:
        api = Api(
            httpx.Client(base_url=base, timeout=30),
            deployment.public_keys,
            deployment.api_key,
            deployment.shared_key,
        )
        for n in range(12):  # (new connections: the kernel spreads them over both workers)
            api.client = httpx.Client(base_url=base, timeout=30)
            assert (
                api.activate(product="app", license_key=key, hardware_id=f"pc-{n}").status_code
                == 200
            )
            assert (
                api.check(product="app", license_key="WRONG", hardware_id="pc").status_code == 400
            )
        scraped = httpx.get(base + "/metrics", headers={"Authorization": "Bearer scrape-token-2"})
    deployment.db.dispose()
    assert scraped.status_code == 200
    text = scraped.text
    labels = {"endpoint": "/api/v4/activate_license", "status": "200"}
    assert sample(text, "licensor_requests_total", **labels) == 12
    assert sample(text, "licensor_refusals_total", code="license_not_found") == 12
    assert len(list((tmp_path / "data" / "metrics").glob("*.db"))) >= 2  # (both workers counted)


def test_one_json_line_per_request_without_secrets(tmp_path: Path) -> None:
    deployment = prepare(f"sqlite:///{tmp_path / 'licensor.db'}", tmp_path / "data")
    deployment.env["LICENSOR_REQUEST_LOG"] = "json"
    key = issue(deployment, max_activations=2)
    with serve(deployment) as base:
        api = Api(
            httpx.Client(base_url=base, timeout=30),
            deployment.public_keys,
            deployment.api_key,
            deployment.shared_key,
        )
        sent = api.call(
            "POST",
            "/api/v4/activate_license",
            json={"product": "app", "license_key": key, "hardware_id": "pc-1"},
            headers={"X-Request-ID": "trace-42"},
        )
        assert sent.headers["x-request-id"] == "trace-42"
        refused = api.check(product="app", license_key="WRONG", hardware_id="pc-1")
        assert len(refused.headers["x-request-id"]) == 32  # (made for it)
        log_path = next((tmp_path / "data").glob("serve-*.log"))
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    deployment.db.dispose()
    mine = next(line for line in lines if line["request_id"] == "trace-42")
    assert mine["endpoint"] == "/api/v4/activate_license" and mine["status"] == 200
    assert mine["code"] == "ok" and mine["ms"] > 0
    assert any(line["code"] == "license_not_found" for line in lines)
    text = log_path.read_text()
    for secret in (key, deployment.api_key, deployment.shared_key):
        assert secret not in text
