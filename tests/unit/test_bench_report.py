"""The benchmark's own arithmetic (bench/run.py, bench/report.py): how the parts of one
measurement merge, and what the 1M-against-1k targets compare."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import run  # noqa: E402


def part(latency_us: int, requests: int, seconds: float, server_cores: float) -> dict[str, Any]:
    """A wrk run whose every answer took ``latency_us``."""
    return {
        "requests": requests,
        "seconds": seconds,
        "throughput": requests / seconds,
        "p50_ms": latency_us / 1000,
        "p90_ms": latency_us / 1000,
        "p99_ms": latency_us / 1000,
        "p999_ms": latency_us / 1000,
        "max_ms": latency_us / 1000,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        "error_count": 0,
        "bytes_per_answer": 2000,
        "quantiles_us": [latency_us] * 1000,
        "cpu": {
            "cores": 2,
            "machine_busy_cores": server_cores,
            "server_cores": server_cores,
            "postgres_cores": 0.0,
            "wrk_cores": 0.0,
            "other_cores": 0.0,
            "loadavg_start": 0.5,
            "loadavg_end": 0.7,
        },
    }


def test_parts_merge_by_their_weight() -> None:
    # 950 answers at 1 ms, then 50 at 50 ms: p50 and p90 are 1 ms, p99 50 ms (a mean of the
    # parts' own percentiles would say p50 25.5 ms)
    merged = run.merge_parts([part(1000, 950, 2.0, 1.5), part(50_000, 50, 2.0, 0.5)])
    assert merged["requests"] == 1000
    assert merged["throughput"] == pytest.approx(250.0)
    assert merged["p50_ms"] == 1.0
    assert merged["p90_ms"] == 1.0
    assert merged["p99_ms"] == 50.0
    assert merged["max_ms"] == 50.0
    assert merged["cpu"]["server_cores"] == pytest.approx(1.0)  # CPU seconds add up
    assert "quantiles_us" not in merged
    assert [s["throughput"] for s in merged["slices"]] == [475.0, 25.0]


def test_one_part_is_the_run_itself() -> None:
    only = part(3000, 500, 4.0, 1.0)
    merged = run.merge_parts([only])
    assert merged["p99_ms"] == 3.0 and merged["requests"] == 500
    assert "quantiles_us" not in merged and "quantiles_us" in only


def test_failed_answers_do_not_count_as_throughput() -> None:
    a, b = part(1000, 100, 1.0, 1.0), part(1000, 100, 1.0, 1.0)
    b["errors"]["status"] = 40
    merged = run.merge_parts([a, b])
    assert merged["throughput"] == pytest.approx(80.0)
    assert merged["error_count"] == 40


def row(block: str, group: str, licenses: int | None, endpoint: str, rate: float) -> dict[str, Any]:
    r = part(1000, int(rate), 1.0, 1.5)
    r.pop("quantiles_us")
    r.update(
        block=block,
        group=group,
        db="sqlite",
        licenses=licenses,
        workers=2,
        endpoint=endpoint,
        signature="rsa" if endpoint != "reference" else "-",
    )
    return r


def scale_rows(results: list[dict[str, Any]]) -> dict[str, str]:
    document = {"results": report.with_ratios(results), "open_loop": [], "machine": {}}
    return {
        t["target"]: t["status"]
        for t in report.evaluate_targets(document)
        if " within " in t["target"]
    }


def test_both_sizes_are_ratios_to_their_groups_reference() -> None:
    g = "sqlite 2w"
    results = [
        row(g, g, None, "reference", 10_000),
        row("sqlite 1k 2w", g, 1000, "check_license", 9000),
        row("sqlite 1M 2w", g, 1_000_000, "check_license", 8000),  # 1.125x slower: within
        row("sqlite 1k 2w", g, 1000, "activate_license", 900),
        row("sqlite 1M 2w", g, 1_000_000, "activate_license", 700),  # 1.29x slower: not
        row(g, g, None, "reference", 12_000),
    ]
    ratios = {(r["block"], r["endpoint"]): r["ratio"] for r in report.with_ratios(results)}
    assert ratios[("sqlite 1k 2w", "check_license")] == pytest.approx(9000 / 11_000)
    assert ratios[("sqlite 1M 2w", "check_license")] == pytest.approx(8000 / 11_000)
    status = scale_rows(results)
    assert status["check RSA at 1M within 1.2x of 1k"] == "PASS"
    assert status["activate RSA at 1M within 1.2x of 1k"] == "FAIL"


def test_each_run_is_a_ratio_to_the_reference_of_its_round() -> None:
    # the machine slowed down between the two rounds: each run is compared with the reference
    # measured beside it, not with the group's mean
    g = "sqlite 2w"
    results = [
        {**row(g, g, None, "reference", 20_000), "round": 0},
        {**row("sqlite 1k 2w", g, 1000, "check_license", 18_000), "round": 0},
        {**row(g, g, None, "reference", 10_000), "round": 1},
        {**row("sqlite 1k 2w", g, 1000, "activate_license", 900), "round": 1},
    ]
    ratios = {r["endpoint"]: r["ratio"] for r in report.with_ratios(results) if "block" in r}
    assert ratios["check_license"] == pytest.approx(0.9)
    assert ratios["activate_license"] == pytest.approx(0.09)


def test_repetitions_compare_the_sizes_repetition_by_repetition() -> None:
    # --repeat 3: each repetition's 1M ratio against the 1k ratio of the same repetition
    g = "sqlite 2w"
    results = []
    for round_, (small, big) in enumerate([(2000, 1600), (1000, 1000), (1800, 1200)]):
        results += [
            {**row(g, g, None, "reference", 20_000), "round": round_},
            {**row("sqlite 1k 2w", g, 1000, "deactivate_license", small), "round": round_},
            {**row("sqlite 1M 2w", g, 1_000_000, "deactivate_license", big), "round": round_},
        ]
    document = {"results": report.with_ratios(results), "settings": {"repeat": 3}}
    lines = report._repetitions(document)
    [line] = [x for x in lines if x.startswith(f"| {g} | deactivate_license")]
    assert "1k: 0.100, 0.050, 0.090; 1M: 0.080, 0.050, 0.060" in line
    assert line.endswith("| 1.25, 1.00, 1.50 | 1.25 |")
    assert report._repetitions({"results": results, "settings": {"repeat": 1}}) == []


def test_the_command_line_refuses_what_it_cannot_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> Any:
        monkeypatch.setattr(sys, "argv", ["run.py", *argv])
        return run.parse_args()

    args = parse("--db", "postgresql", "--endpoints", "deactivate_license", "--repeat", "3")
    assert args.dbs == ["postgresql"] and args.endpoints == {"deactivate_license"}
    assert args.workers == [1, 2] and args.reference_duration == args.duration / 2
    assert parse("--pg-setting", "shared_buffers=1GB").pg_settings == {"shared_buffers": "1GB"}
    assert parse("--no-postgres").dbs == ["sqlite"]
    for bad in (
        ["--endpoints", "check"],
        ["--db", "mysql"],
        ["--repeat", "0"],
        ["--pg-setting", "shared_buffers"],
        ["--reference-duration", "9"],
        ["--workers", "0"],
    ):
        with pytest.raises(SystemExit):
            parse(*bad)


def test_writes_and_cold_checks_are_ratios_to_the_floor_of_their_group() -> None:
    g = "sqlite 2w"
    floor = {"floor": True}
    results = [
        row(g, g, None, "reference", 20_000),
        {**row(f"{g} floor", g, None, "activate_license", 2000), **floor},
        {**row(f"{g} floor", g, None, "check_license_cold", 1000), **floor},
        row("sqlite 1k 2w", g, 1000, "activate_license", 1500),  # 0.75 of the floor
        row("sqlite 1M 2w", g, 1_000_000, "activate_license", 1300),  # 0.65
        row("sqlite 1k 2w", g, 1000, "check_license_cold", 1000),
    ]
    # 1.5 server cores at 1,000 cold checks a second: 1.5 ms of CPU each
    document = {"results": report.with_ratios(results), "open_loop": [], "machine": {}}
    assert "floor_ratio" not in results[1]  # (the floor is no ratio of itself)
    status = {
        (t["target"], t["where"]): (t["status"], t["value"])
        for t in report.evaluate_targets(document)
    }
    assert status[("activate RSA / floor >= 0.7", "sqlite 1k 2w")][0] == "PASS"
    assert status[("activate RSA / floor >= 0.7", "sqlite 1M 2w")] == (
        "FAIL",
        "0.650 (1300 / 2000 req/s)",
    )
    assert status[("deactivate / floor >= 0.7", "sqlite 1k 2w")][0] == "n/a"
    assert status[("cold RSA check server CPU <= 1.4 ms", "sqlite 1k 2w")] == ("FAIL", "1.50 ms")
    text = report.markdown(
        {
            **document,
            "mode": "quick",
            "generated_at": "now",
            "source": {"tree": "t", "commit": "c" * 12},
            "machine": {
                "cpu": "x",
                "cores": 2,
                "memory_gib": 1,
                "kernel": "k",
                "python": "3",
                "versions": {},
                "loadavg_at_start": 0.0,
                "loadavg_at_end": 0.0,
            },
            "settings": {"connections": 64, "duration_s": 4, "warmup_s": 1},
            "answer_sizes": {},
            "seeding": [],
            "targets": report.evaluate_targets(document),
            "skipped": [],
            "total_seconds": 1,
        }
    )
    assert "| sqlite 1M 2w | activate_license | rsa | 1300 | 20000 | 0.065 | 0.650 |" in text
