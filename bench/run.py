"""Licensor benchmark (issue 4): `make bench`, or `python bench/run.py [--quick]`.

Starts Licensor (`licensor serve`, uvicorn) on SQLite and on a private PostgreSQL, with 1 and 2
worker processes, at 1,000 and 1,000,000 licenses (with devices), and measures with wrk at 64
connections, on 127.0.0.1 only:

* the reference endpoint (bench/reference_app.py: bare Starlette, same uvicorn, same worker count,
  a JSON body the size of a check answer), measured in every block next to the endpoints;
* GET check_license (activated devices), POST activate_license (a fresh hardware_id per request),
  POST deactivate_license (pre-activated devices, each once); check and activate with RSA and
  with Ed25519 (`Licensor-Accept-Signature: ed25519`);
* check_license open loop at half the measured RSA peak (bench/openloop.c, built with gcc into
  bench-results/build/: a fixed timetable, latency from the scheduled time).

Writes bench-results/report.md, results.json and ratios.png, prints the table and PASS/FAIL per
target of issue 4. Bounded: every run has a fixed duration, and the whole benchmark stops
starting new runs after --max-minutes. Every process it starts is killed (by process group) on
exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(BENCH)]

import procs  # noqa: E402
import report  # noqa: E402
import seed  # noqa: E402

CONNECTIONS = 64
ENDPOINTS = (
    "check_license",
    "check_license_cold",
    "activate_license",
    "deactivate_license",
    "activate_offline",
    "add_consumption",
    "check_license_floating",
    "activate_bundle",
    "console_pages",
)
# rows measured at fewer connections than the API's: a console's few staff, each page waited for
ENDPOINT_CONNECTIONS = {"console_pages": 4}
ED25519 = {"Licensor-Accept-Signature": "ed25519"}


# -- preflight ---------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(
            "bench: wrk (the HTTP load generator) is missing; installing the Debian package "
            "`wrk` with apt-get ...",
            flush=True,
        )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
            env=env,
            check=False,
            timeout=300,
        )
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "bench: wrk is required: install it with `apt-get install -y wrk` (as root), then run again"
    )


def ensure_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        return
    print(
        f"bench: matplotlib is missing; installing it into {sys.prefix} with pip (for the chart "
        "only; it is not a project dependency) ...",
        flush=True,
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "matplotlib"],
        check=False,
        timeout=600,
    )


def postgres_available() -> str | None:
    """None when the PostgreSQL server programs are there, else why not."""
    from tests.harness.postgres import find_pg_binaries

    try:
        find_pg_binaries()
    except RuntimeError as exc:
        return str(exc)
    return None


# -- requests ----------------------------------------------------------------------------------


def signed_headers(
    deployment: seed.Deployment, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """HMAC-signed Date/Authorization; valid for the server's 15-minute window."""
    from licensor.protocol.auth import format_authorization, hmac_signature, http_date

    date = http_date()
    headers = {
        "Date": date,
        "Authorization": format_authorization(
            deployment.api_key, hmac_signature(deployment.shared_key, date)
        ),
        "Content-Type": "application/json",
    }
    headers.update(extra or {})
    return headers


def request_files(deployment: seed.Deployment, count: int, signature: str) -> list[str]:
    """``count`` offline activation request files (schema v2, as the client writes them), each
    for a fresh device of a license of the activation pool, dated now."""
    import uuid

    from licensor.protocol.auth import http_date
    from licensor.protocol.offline import write_request

    date = http_date()
    tag = uuid.uuid4().hex[:8]
    pool = deployment.activate_pool
    files = []
    for n in range(count):
        body = {
            "api_key": deployment.api_key,
            "date": date,
            "hardware_id": f"off-{tag}-{n}",
            "license_key": pool[n % len(pool)],
            "product": seed.PRODUCT,
            "request": "activation",
            "request_id": f"{tag}-{n}",
            "os_ver": "Linux",
            "hostname": "bench",
            "app_ver": "1.0",
        }
        if signature == "ed25519":
            body["accept_signature"] = "ed25519"
        files.append(
            write_request(
                body, deployment.shared_key, credential_field="api_key", schema_version=2
            ).decode()
        )
    return files


def check_path(key: str, hardware_id: str) -> str:
    query = {
        "product": seed.PRODUCT,
        "license_key": key,
        "hardware_id": hardware_id,
        "os_ver": "Linux",
        "hostname": "bench",
        "app_ver": "1.0",
        "sdk_ver": "bench",
    }
    return "/api/v4/check_license?" + urlencode(query)


# -- measurements ------------------------------------------------------------------------------


# Measured (--endpoints deactivate_license --repeat 4, PostgreSQL, 2 workers): with the default
# 128MB, deactivations at 1M were 1.29x slower than at 1k (1.21-1.46; PostgreSQL CPU per request
# 0.94-1.04 against 0.64-0.78 ms: both databases share the cluster's buffers, and the big one
# evicts the small one's pages too); with 1GB, 1.12x (1.08-1.22).
PG_SETTINGS = {"shared_buffers": "1GB"}
STEADY_ROUNDS = 8  # at most this many warm-up rounds before a steady check run
# checks of the same devices again and again (answers served again from memory)
STEADY_ENDPOINTS = ("check_license", "check_license_floating")
FLOATING_WARMUP = 6.0  # seconds: every device of the floating pool holds its slot by then


@dataclass
class Context:
    args: argparse.Namespace
    wrk: str
    openloop: str
    out: Path
    work: Path
    deadline: float
    results: list[dict[str, Any]] = field(default_factory=list)
    open_loop: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pg_postmaster: int | None = None
    runs: int = 0

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


def run_wrk(
    ctx: Context,
    url: str,
    headers: dict[str, str],
    mode: str,
    data: Path,
    tag: str,
    seconds: float,
    server_session: int,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    cmd = [ctx.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-s", str(BENCH / "load.lua"), url, "--", mode, str(data), tag]
    out_file = ctx.work / "wrk.out"
    busy0, _total0 = procs.machine_cpu()
    server0 = procs.session_cpu_seconds(server_session)
    pg0 = procs.tree_cpu_seconds(ctx.pg_postmaster)
    load0 = procs.loadavg()
    with out_file.open("wb") as out:
        process = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs._STARTED[process.pid] = process
        deadline = time.monotonic() + seconds + 30
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                procs.kill_group(process)
                raise RuntimeError(f"wrk did not finish: {cmd}")
            time.sleep(0.05)
        procs._STARTED.pop(process.pid, None)
        process.returncode = os.waitstatus_to_exitcode(status)
    busy1, _total1 = procs.machine_cpu()
    server1 = procs.session_cpu_seconds(server_session)
    pg1 = procs.tree_cpu_seconds(ctx.pg_postmaster)
    text = out_file.read_text(errors="replace")
    match = re.search(r"^BENCH-JSON (\{.*\})$", text, flags=re.M)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text[-2000:]}")
    data_ = json.loads(match.group(1))
    quantiles = re.search(r"^BENCH-QUANTILES (\[.*\])$", text, flags=re.M)
    if quantiles is None:
        raise RuntimeError(f"wrk printed no latency quantiles:\n{text[-2000:]}")
    wall = data_["duration_us"] / 1e6
    errors = sum(data_["errors"].values())
    wrk_cpu = usage.ru_utime + usage.ru_stime
    machine_busy = busy1 - busy0
    server_cpu = server1 - server0
    pg_cpu = max(0.0, pg1 - pg0)  # backends that exited take their CPU time with them
    return {
        "requests": data_["requests"],
        "seconds": wall,
        "throughput": (data_["requests"] - data_["errors"]["status"]) / wall if wall else 0.0,
        "p50_ms": data_["latency_us"]["p50"] / 1000,
        "p90_ms": data_["latency_us"]["p90"] / 1000,
        "p99_ms": data_["latency_us"]["p99"] / 1000,
        "p999_ms": data_["latency_us"]["p999"] / 1000,
        "max_ms": data_["latency_us"]["max"] / 1000,
        "errors": data_["errors"],
        "error_count": errors,
        "bytes_per_answer": data_["bytes"] / data_["requests"] if data_["requests"] else 0,
        "quantiles_us": json.loads(quantiles.group(1)),
        "cpu": {
            "cores": os.cpu_count(),
            "machine_busy_cores": machine_busy / wall if wall else 0.0,
            "server_cores": server_cpu / wall if wall else 0.0,
            "postgres_cores": pg_cpu / wall if wall else 0.0,
            "wrk_cores": wrk_cpu / wall if wall else 0.0,
            "other_cores": max(0.0, machine_busy - server_cpu - pg_cpu - wrk_cpu) / wall
            if wall
            else 0.0,
            "loadavg_start": load0,
            "loadavg_end": procs.loadavg(),
        },
    }


def measure(
    ctx: Context,
    where: dict[str, Any],
    endpoint: str,
    signature: str,
    url: str,
    headers: dict[str, str],
    mode: str,
    data_for: Any,
    session: int,
) -> Generator[None, None, dict[str, Any] | None]:
    """Warm-up, then the measured run in ``--slices`` parts, yielding between parts (run_group
    runs the other blocks' and the reference's parts there: A B R R B A, so that a disturbance
    of the shared machine falls on all of them); the parts are merged into one result, appended to ctx.results.
    ``data_for(phase, part)`` gives the input file of a run ("warmup", 0) or ("measure", i)."""
    warmup = ctx.args.check_warmup if endpoint in STEADY_ENDPOINTS else ctx.args.warmup
    if endpoint == "check_license_floating":
        # the first check of each device takes its slot, a write under the license's lock
        # (measured ~250 a second on PostgreSQL, one write thread per worker): the row measures
        # the steady state after, holders' checks served from memory (with the 1 s default the
        # quick run measured the takes: 803 against 30,350 req/s with 6 s)
        warmup = max(warmup, FLOATING_WARMUP)
    if endpoint == "reference" and where.get("round"):
        warmup = 0.0  # warm since the group's first round
    warm_rounds = STEADY_ROUNDS if endpoint in STEADY_ENDPOINTS else 1
    connections = ENDPOINT_CONNECTIONS.get(endpoint, CONNECTIONS)
    slices = ctx.args.slices
    # (the reference answers ~20 times as many requests a second as a write: half the run
    # length gives it as many samples and takes a quarter less of the benchmark's time)
    duration = ctx.args.reference_duration if endpoint == "reference" else ctx.args.duration
    budget = warmup * warm_rounds + duration + 5 * slices + 10
    if ctx.time_left() < budget:
        ctx.skipped.append(f"{where['block']} {endpoint} {signature}: time bound reached")
        print(f"  skip {endpoint} {signature}: --max-minutes reached", flush=True)
        return None
    ctx.runs += 1
    tag = f"{ctx.runs}{random.randrange(10**6)}"
    warmup_rates: list[list[float]] = []

    def warm_up(label: str) -> None:
        # The steady check is measured once the workers' answer caches are full: warm-up
        # rounds until one's rate is within 10% of the round before (at most STEADY_ROUNDS;
        # each worker makes and signs every device's answer once first: 3-7 one-second rounds
        # at 2 workers on the AMD VM of 2026-12-02).
        rates: list[float] = []
        for n in range(warm_rounds):
            warm = run_wrk(
                ctx,
                url,
                headers,
                mode,
                data_for("warmup", 0),
                f"{label}{n}{tag}",
                warmup,
                session,
                connections,
            )
            rates.append(warm["throughput"])
            if n and abs(rates[-1] - rates[-2]) <= 0.1 * rates[-2]:
                break
        warmup_rates.append(rates)

    if warmup > 0:
        warm_up("w")
    parts = []
    for i in range(slices):
        if i:
            yield
            if endpoint in STEADY_ENDPOINTS and warmup > 0:
                # The steady state again after the other blocks' parts: answers whose date step
                # ended meanwhile (a sixth of them after 10 s idle) are made again here, not in
                # the measured part (where that burst of signatures took p99 from 11 to 274 ms)
                warm_up(f"r{i}x")
        parts.append(
            run_wrk(
                ctx,
                url,
                headers,
                mode,
                data_for("measure", i),
                f"m{i}x{tag}",
                duration / slices,
                session,
                connections,
            )
        )
    result = merge_parts(parts)
    result["connections"] = connections
    result["warmup_rates"] = warmup_rates
    result.update(where, endpoint=endpoint, signature=signature)
    ctx.results.append(result)
    bad = f"  ERRORS {result['errors']}" if result["error_count"] else ""
    print(
        f"  {where['block']:<17} {endpoint:<19} {signature:<8} {result['throughput']:7.0f} req/s"
        f"  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
        f"server {result['cpu']['server_cores']:.2f} + pg {result['cpu']['postgres_cores']:.2f} "
        f"+ wrk {result['cpu']['wrk_cores']:.2f} + other {result['cpu']['other_cores']:.2f} "
        f"cores{bad}",
        flush=True,
    )
    return result


def completed(steps: Generator[None, None, dict[str, Any] | None]) -> dict[str, Any] | None:
    """A measurement run to its end, with nothing between its parts: its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the wrk runs of one measurement: counts and CPU seconds add up, latency
    percentiles come from the merged distributions (each run's 1,000 quantiles, weighted by its
    requests), the maximum is the largest."""
    if len(parts) == 1:
        result = dict(parts[0])
        result.pop("quantiles_us")
        return result
    wall = sum(p["seconds"] for p in parts)
    requests = sum(p["requests"] for p in parts)
    errors = {k: sum(p["errors"][k] for p in parts) for k in parts[0]["errors"]}
    points = sorted(
        (value, p["requests"] / len(p["quantiles_us"]))
        for p in parts
        for value in p["quantiles_us"]
    )
    total = sum(weight for _, weight in points)

    def percentile(q: float) -> float:
        if not total:
            return 0.0
        running = 0.0
        for value, weight in points:
            running += weight
            if running >= q / 100 * total:
                return float(value) / 1000
        return float(points[-1][0]) / 1000

    def cores(key: str) -> float:
        return sum(p["cpu"][key] * p["seconds"] for p in parts) / wall if wall else 0.0

    return {
        "requests": requests,
        "seconds": wall,
        "throughput": (requests - errors["status"]) / wall if wall else 0.0,
        "p50_ms": percentile(50),
        "p90_ms": percentile(90),
        "p99_ms": percentile(99),
        "p999_ms": percentile(99.9),
        "max_ms": max(p["max_ms"] for p in parts),
        "errors": errors,
        "error_count": sum(errors.values()),
        "bytes_per_answer": (
            sum(p["bytes_per_answer"] * p["requests"] for p in parts) / requests if requests else 0
        ),
        "cpu": {
            "cores": parts[0]["cpu"]["cores"],
            **{
                key: cores(key)
                for key in (
                    "machine_busy_cores",
                    "server_cores",
                    "postgres_cores",
                    "wrk_cores",
                    "other_cores",
                )
            },
            "loadavg_start": parts[0]["cpu"]["loadavg_start"],
            "loadavg_end": parts[-1]["cpu"]["loadavg_end"],
        },
        "slices": [
            {"seconds": p["seconds"], "throughput": p["throughput"], "p99_ms": p["p99_ms"]}
            for p in parts
        ],
    }


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Block:
    """One server under test: a deployment (database + size) served by ``workers`` processes."""

    name: str
    db: str
    deployment: seed.Deployment
    workers: int
    group: str

    def fields(self) -> dict[str, Any]:
        return {
            "block": self.name,
            "group": self.group,
            "db": self.db,
            "licenses": self.deployment.licenses,
            "workers": self.workers,
        }


def run_group(
    ctx: Context,
    db: str,
    deployments: list[seed.Deployment],
    workers: int,
    reference_url: str,
    reference_session: int,
) -> None:
    """The blocks of one database and worker count (e.g. 1k and 1M licenses at 2 workers), each
    its own server, started together and measured interleaved, endpoint by endpoint: the 1M
    figure is taken seconds after the 1k one. The reference takes its turn in every round too,
    so that each endpoint's ratio is to the reference measured between its own parts
    (A B R R B A). Measured one block after the other, the two sizes' references moved by up
    to 47% between blocks of one run; within one group of 2026-12-02-5, from 25,100 to 15,000
    req/s between its start and its end."""
    group = f"{db} {workers}w"
    blocks = [
        Block(f"{db} {report.size_label(d.licenses)} {workers}w", db, d, workers, group)
        for d in deployments
    ]
    ref_file = write_lines(ctx.work / "reference.txt", ["/reference"])

    def reference_steps() -> Iterator[None]:
        for round_ in itertools.count():  # as many rounds as the blocks have runs
            where = {
                "block": group,
                "group": group,
                "db": db,
                "licenses": None,
                "workers": workers,
                "round": round_,
            }
            yield from measure(
                ctx,
                where,
                "reference",
                "-",
                reference_url,
                {},
                "get",
                lambda _phase, _part: ref_file,
                reference_session,
            )
            yield

    print(f"\n== {group}: " + ", ".join(b.name for b in blocks), flush=True)
    with contextlib.ExitStack() as servers:
        steps = []
        for b in blocks:
            d = b.deployment
            print(
                f"  {b.name}: {d.licenses:,} licenses, {d.licenses * d.devices_per_license:,} "
                f"devices",
                flush=True,
            )
            log = ctx.out / "logs" / f"licensor-{db}-{d.licenses}-{workers}w.log"
            url, session = servers.enter_context(procs.licensor_server(d.env, workers, log))
            smoke(url, d)
            steps.append(block_steps(ctx, b, url, session, open_loop=workers == 2))
        if ctx.args.floor and set(ctx.args.endpoints) - {"check_license"}:
            small = blocks[0].deployment
            floor_url, floor_session = servers.enter_context(
                procs.floor_server(
                    floor_env(ctx, small),
                    workers,
                    ctx.out / "logs" / f"floor-{db}-{workers}w.log",
                )
            )
            steps.append(floor_steps(ctx, group, db, small, workers, floor_url, floor_session))
        reference = reference_steps()
        steps.append(reference)
        # rounds in alternating order (A B R, R B A, A B R, ...): with two parts per run, each
        # run is measured A B R R B A, so that a steady drift of the machine falls on all alike;
        # done when the blocks are (the reference has then measured one run per block run)
        done = object()
        while steps != [reference]:
            for step in list(steps):
                if next(step, done) is done:
                    steps.remove(step)
            steps.reverse()


def block_steps(
    ctx: Context, block: Block, url: str, session: int, open_loop: bool
) -> Iterator[None]:
    """A block's runs, in order; yields after each, so that run_group can interleave blocks."""
    deployment, db = block.deployment, block.db
    steady_file = write_lines(
        ctx.work / f"check-{db}-{deployment.licenses}.txt",
        [check_path(k, h) for k, h in deployment.check_pool[: seed.STEADY_POOL]],
    )
    # cold: devices checked at most once in the run, warm-up included (seed.cold_pools; the
    # last fifth of each for the warm-up)
    rsa_pool, ed25519_pool = seed.cold_pools(deployment)
    cold_files: dict[tuple[str, str, int], Path] = {}
    slices = ctx.args.slices
    for sig, pool in (("rsa", rsa_pool), ("ed25519", ed25519_pool)):
        cut = len(pool) * 4 // 5
        parts = [("warmup", 0, pool[cut:])]
        parts += [
            ("measure", i, pool[cut * i // slices : cut * (i + 1) // slices]) for i in range(slices)
        ]
        for phase, i, part in parts:
            cold_files[(sig, phase, i)] = write_lines(
                ctx.work / f"check-cold-{sig}-{phase}{i}-{db}-{deployment.licenses}.txt",
                [check_path(k, h) for k, h in part],
            )
    activate_file = write_lines(
        ctx.work / f"activate-{db}-{deployment.licenses}.txt", deployment.activate_pool
    )

    # Enough fresh devices for the fastest deactivation rate we expect, per wrk run (warm-up
    # included: a run that runs out answers device_not_found and measures less than it could).
    def deactivations(phase: str, _part: int) -> Path:
        seconds = ctx.args.duration / slices if phase == "measure" else ctx.args.warmup
        pairs = deployment.take_deactivations(
            max(1000, int(ctx.args.max_deactivate_rate * (seconds + 1)))
        )
        return write_lines(
            ctx.work / f"deactivate-{db}-{deployment.licenses}-{phase}.txt",
            [f"{k} {h}" for k, h in pairs] or ["none none"],
        )

    # Offline activations: request files made just before each run (their ``date`` must be
    # within the server's window), each used once, a fresh device per file, as many as for
    # deactivations.
    def offline_files(sig: str) -> Any:
        def files(phase: str, part: int) -> Path:
            seconds = ctx.args.duration / slices if phase == "measure" else ctx.args.warmup
            count = max(1000, int(ctx.args.max_deactivate_rate * (seconds + 1)))
            return write_lines(
                ctx.work / f"offline-{sig}-{db}-{deployment.licenses}-{phase}{part}.txt",
                request_files(deployment, count, sig),
            )

        return files

    rounds = itertools.count()

    def run(
        endpoint: str, signature: str, headers: dict[str, str], mode: str, files: Any
    ) -> Generator[None, None, dict[str, Any] | None]:
        where = {**block.fields(), "round": next(rounds)}
        return measure(ctx, where, endpoint, signature, url, headers, mode, files, session)

    def same(path: Path) -> Any:
        return lambda _phase, _part: path

    rsa = signed_headers(deployment)
    ed = signed_headers(deployment, ED25519)
    # (endpoint, signature, headers, wrk mode, input files), in order:
    # steady state: the same devices checked again and again (answers kept, served again);
    # cold: a device at most once in the run (every answer read, made and signed)
    plan: list[tuple[str, str, dict[str, str], str, Any]] = [
        ("check_license", "rsa", rsa, "get", same(steady_file)),
        ("check_license", "ed25519", ed, "get", same(steady_file)),
    ]
    if block.workers > 1:  # informative rows, measured where the targets are (2 workers)
        for sig, headers in (("rsa", rsa), ("ed25519", ed)):
            plan.append(
                (
                    "check_license_cold",
                    sig,
                    headers,
                    "get",
                    lambda phase, part, sig=sig: cold_files[(sig, phase, part)],
                )
            )
    plan += [
        ("activate_license", "rsa", rsa, "activate", same(activate_file)),
        ("activate_license", "ed25519", ed, "activate", same(activate_file)),
        ("deactivate_license", "-", rsa, "deactivate", deactivations),
    ]
    consume_file = write_lines(
        ctx.work / f"consume-{db}-{deployment.licenses}.txt",
        [f"{k} {h}" for k, h in deployment.consume_pool] or ["none none"],
    )
    plan.append(("add_consumption", "rsa", rsa, "consume", same(consume_file)))
    # floating checks in the steady state: each device keeps its slot (refreshed once a minute)
    floating_file = write_lines(
        ctx.work / f"check-floating-{db}-{deployment.licenses}.txt",
        [check_path(k, h) for k, h in deployment.floating_pool] or ["/none"],
    )
    plan.append(("check_license_floating", "rsa", rsa, "get", same(floating_file)))
    bundle_file = write_lines(
        ctx.work / f"bundle-{db}-{deployment.licenses}.txt", deployment.bundle_pool or ["none"]
    )
    plan.append(("activate_bundle", "rsa", rsa, "bundle", same(bundle_file)))
    console_file = write_lines(
        ctx.work / f"console-{db}-{deployment.licenses}.txt", deployment.console_paths or ["/"]
    )
    cookie = {"Cookie": f"licensor_console={deployment.console_cookie}"}
    plan.append(("console_pages", "-", cookie, "get", same(console_file)))
    # (the answer's header signed as the online rows sign theirs: Ed25519 for the Ed25519 row)
    plan += [
        (
            "activate_offline",
            sig,
            {**headers, "Content-Type": "text/plain"},
            "offline",
            offline_files(sig),
        )
        for sig, headers in (("rsa", rsa), ("ed25519", ed))
    ]
    started = False
    for repetition in range(ctx.args.repeat):
        for endpoint, sig, headers, mode, files in plan:
            if endpoint not in ctx.args.endpoints:
                continue
            if endpoint == "check_license_cold" and repetition:
                continue  # its devices were checked in the first repetition: no longer cold
            if started:
                yield  # the other blocks' and the reference's turn
            started = True
            result = yield from run(endpoint, sig, headers, mode, files)
            # open loop at half the RSA check's peak, right away: on the same devices, whose
            # answers are still served again (the activation and deactivation runs change
            # their licenses, after which every answer is made and signed again: not the
            # steady state the peak measured)
            if (
                open_loop
                and repetition == 0
                and (endpoint, sig) == ("check_license", "rsa")
                and result is not None
                and result["throughput"] > 0
            ):
                run_open_loop(
                    ctx, block, url, deployment, steady_file, result["throughput"] / 2, session
                )


OPENLOOP_SOURCE = BENCH / "openloop.c"
OPEN_LOOP_WARMUP = 1.0  # seconds of the timetable sent first and not counted
OPEN_LOOP_GRACE = 2.0  # after the timetable: time left for queued and in-flight requests


def build_openloop(out: Path) -> str:
    """Compile bench/openloop.c into <out>/build/openloop (again whenever the source is newer)."""
    binary = out / "build" / "openloop"
    if binary.exists() and binary.stat().st_mtime >= OPENLOOP_SOURCE.stat().st_mtime:
        return str(binary)
    compiler = shutil.which("gcc")
    if compiler is None:
        sys.exit(
            "bench: gcc is required to build the open-loop load generator bench/openloop.c: "
            "install it with `apt-get install -y gcc` (as root), then run again"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    cmd = [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(partial), str(OPENLOOP_SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: building bench/openloop.c failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    partial.replace(binary)
    print(f"bench: built {binary} from bench/openloop.c", flush=True)
    return str(binary)


def run_open_loop(
    ctx: Context,
    block: Block,
    url: str,
    deployment: seed.Deployment,
    check_file: Path,
    rate: float,
    session: int,
) -> None:
    """check_license at a fixed offered rate with bench/openloop.c (wrk2-style, in C): request
    i is due at t0 + i/rate whatever happened before it, goes out on the next free one of 64
    keep-alive connections, waits in a queue (never dropped) while none is free, and its
    latency runs from its scheduled time, so queueing shows. One epoll thread that sleeps
    between requests: it keeps the timetable at 20,000 requests per second on a fraction of
    a core. Rotates over the steady check file's devices; a 1 s warm-up first (not counted);
    what is still queued or in flight 2 s after the timetable's end counts as not ok."""
    seconds = ctx.args.open_loop_seconds
    if ctx.time_left() < seconds + OPEN_LOOP_WARMUP + OPEN_LOOP_GRACE + 20:
        ctx.skipped.append(f"{block.name} open loop: time bound reached")
        return
    rate = float(max(1, round(rate)))
    cmd = [
        ctx.openloop,
        "-c",
        str(CONNECTIONS),
        "-R",
        f"{rate:g}",
        "-d",
        f"{seconds:g}",
        "-w",
        f"{OPEN_LOOP_WARMUP:g}",
        "-g",
        f"{OPEN_LOOP_GRACE:g}",
        "-t",
        "10",
        "-f",
        str(check_file),
    ]
    for name, value in signed_headers(deployment).items():
        if name != "Content-Type":
            cmd += ["-H", f"{name}: {value}"]
    cmd.append(url + "/")
    busy0, _ = procs.machine_cpu()
    server0 = procs.session_cpu_seconds(session)
    pg0 = procs.tree_cpu_seconds(ctx.pg_postmaster)
    started = time.monotonic()
    completed = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + OPEN_LOOP_WARMUP + OPEN_LOOP_GRACE + 60,
        check=False,
        start_new_session=True,
    )
    wall = time.monotonic() - started
    busy1, _ = procs.machine_cpu()
    server1 = procs.session_cpu_seconds(session)
    pg1 = procs.tree_cpu_seconds(ctx.pg_postmaster)
    match = re.search(r"^OPENLOOP-JSON (\{.*\})$", completed.stdout, flags=re.M)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(
            f"bench/openloop.c failed ({completed.returncode}):\n{completed.stderr[-2000:]}"
        )
    data = json.loads(match.group(1))
    statuses = {int(code): n for code, n in data["statuses"].items()}
    ok = statuses.get(200, 0)
    unfinished = data["unfinished"]["in_flight"] + data["unfinished"]["queued"]
    generator_cpu = data["cpu_s"]["total"]
    result: dict[str, Any] = {
        **block.fields(),
        "endpoint": "check_license",
        "signature": "rsa",
        "generator": "bench/openloop.c (fixed timetable, latency from the scheduled time)",
        "rate": rate,
        "connections": CONNECTIONS,
        "warmup_s": OPEN_LOOP_WARMUP,
        "timer_slack_us": data["slack_us"],
        "scheduled": data["scheduled"],
        "sent": data["sent"],
        "completed": data["completed"],
        "ok": ok,
        "statuses": statuses,
        # failed requests, answers other than 200 and failed connection attempts (unfinished
        # requests are counted apart: not ok, but not errors of the server)
        "errors": sum(data["errors"].values()) + sum(n for c, n in statuses.items() if c != 200),
        "error_kinds": data["errors"],
        "unfinished": unfinished,
        "achieved_rate": data["achieved_rate"],
        "latency_ms": data["latency_ms"],
        "send_lag_ms": data["send_lag_ms"],
        "generator_cpu_s": generator_cpu,
        "cpu": {
            "machine_busy_cores": (busy1 - busy0) / wall,
            "server_cores": (server1 - server0) / wall,
            "postgres_cores": max(0.0, pg1 - pg0) / wall,
            "generator_cores": generator_cpu / data["wall_s"] if data["wall_s"] else 0.0,
        },
    }
    ctx.open_loop.append(result)
    lat = result["latency_ms"]
    print(
        f"  open loop check rsa @ {rate:.0f} req/s offered, {data['achieved_rate']:.0f} "
        f"achieved: {ok}/{data['scheduled']} ok, p50 {lat['p50']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms; unfinished {unfinished}, "
        f"errors {result['errors']}; send lag p99 {data['send_lag_ms']['p99']:.2f} ms; "
        f"generator {generator_cpu:.2f} CPU s = {result['cpu']['generator_cores']:.2f} cores",
        flush=True,
    )


def smoke(url: str, deployment: seed.Deployment) -> None:
    """One request of each kind must succeed before any load is sent."""
    import httpx

    key, hw = deployment.check_pool[0]
    for extra, header in (({}, "licensesignature"), (ED25519, "licensor-signature")):
        response = httpx.get(
            url + check_path(key, hw), headers=signed_headers(deployment, extra), timeout=10
        )
        if response.status_code != 200 or header not in response.headers:
            raise RuntimeError(
                f"check_license smoke test failed: {response.status_code} {response.text[:300]}"
            )


def reference_body(ctx: Context, deployment: seed.Deployment) -> dict[str, Any]:
    """Save a real check answer (RSA, the documented default) for the reference app."""
    import httpx

    key, hw = deployment.check_pool[0]
    sizes = {}
    with procs.licensor_server(deployment.env, 1, ctx.out / "logs" / "probe.log") as (url, _):
        for name, extra in (("rsa", {}), ("ed25519", ED25519)):
            response = httpx.get(
                url + check_path(key, hw), headers=signed_headers(deployment, extra), timeout=10
            )
            response.raise_for_status()
            sizes[name] = len(response.content)
            if name == "rsa":
                body = response.json()
                (ctx.work / "reference_body.json").write_bytes(response.content)
    reference_size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return {
        "check_rsa_bytes": sizes["rsa"],
        "check_ed25519_bytes": sizes["ed25519"],
        "reference_bytes": reference_size,
    }


def floor_env(ctx: Context, deployment: seed.Deployment) -> dict[str, str]:
    """The floor app's settings for a deployment, with real answers (an activation and a
    check, RSA) whose sizes its answers take."""
    import httpx
    from sqlalchemy import create_engine, text

    engine = create_engine(deployment.database_url)
    try:
        with engine.connect() as connection:
            company_id = connection.execute(text("SELECT min(id) FROM companies")).scalar_one()
    finally:
        engine.dispose()
    key, hw = deployment.check_pool[0]
    bodies: dict[str, Any] = {}
    with procs.licensor_server(deployment.env, 1, ctx.out / "logs" / "floor-probe.log") as (
        url,
        _,
    ):
        checked = httpx.get(url + check_path(key, hw), headers=signed_headers(deployment))
        checked.raise_for_status()
        bodies["check"] = checked.json()
        activated = httpx.post(
            url + "/api/v4/activate_license",
            json={
                "product": seed.PRODUCT,
                "license_key": deployment.activate_pool[0],
                "hardware_id": f"floor-body-{random.randrange(10**9)}",
                "is_vm": False,
                "os_ver": "Linux",
                "hostname": "bench",
                "app_ver": "1.0",
                "sdk_ver": "bench",
            },
            headers=signed_headers(deployment),
        )
        activated.raise_for_status()
        bodies["activation"] = activated.json()
    path = write_lines(
        ctx.work / f"floor-bodies-{deployment.name}.json", [json.dumps(bodies, ensure_ascii=False)]
    )
    return {
        "BENCH_FLOOR_DATABASE_URL": deployment.database_url,
        "BENCH_FLOOR_KEYS_DIR": str(deployment.data_dir / "keys"),
        "BENCH_FLOOR_API_KEY": deployment.api_key,
        "BENCH_FLOOR_SHARED_KEY": deployment.shared_key,
        "BENCH_FLOOR_COMPANY_ID": str(company_id),
        "BENCH_FLOOR_BODIES": str(path),
    }


def floor_steps(
    ctx: Context,
    group: str,
    db: str,
    deployment: seed.Deployment,
    workers: int,
    url: str,
    session: int,
) -> Iterator[None]:
    """The floor's runs (bench/floor_app.py over the group's smallest deployment): activations,
    deactivations and cold checks, as a block measures them; yields after each."""
    where_base = {
        "block": f"{group} floor",
        "group": group,
        "db": db,
        "licenses": None,
        "workers": workers,
        "floor": True,
    }
    activate_file = write_lines(ctx.work / f"floor-activate-{db}.txt", deployment.activate_pool)
    cold = deployment.check_pool[seed.STEADY_POOL :]
    slices = ctx.args.slices

    def cold_files(sig: str) -> Any:
        # the floor keeps nothing: any activated device is a cold one (the last ones of the
        # pool, which Licensor's cold runs reach last)
        pool = (
            cold[-len(cold) // 3 :] if sig == "rsa" else cold[-2 * len(cold) // 3 : -len(cold) // 3]
        )
        files = {
            (phase, i): write_lines(
                ctx.work / f"floor-cold-{sig}-{phase}{i}-{db}.txt",
                [check_path(k, h) for k, h in part],
            )
            for phase, i, part in [("warmup", 0, pool[: len(pool) // 5])]
            + [
                ("measure", i, pool[len(pool) * i // slices : len(pool) * (i + 1) // slices])
                for i in range(slices)
            ]
        }
        return lambda phase, part: files[(phase, part)]

    def deactivations(phase: str, _part: int) -> Path:
        seconds = ctx.args.duration / slices if phase == "measure" else ctx.args.warmup
        pairs = deployment.take_deactivations(
            max(1000, int(ctx.args.max_deactivate_rate * (seconds + 1)))
        )
        return write_lines(
            ctx.work / f"floor-deactivate-{db}-{phase}.txt",
            [f"{k} {h}" for k, h in pairs] or ["none none"],
        )

    rsa = signed_headers(deployment)
    ed = signed_headers(deployment, ED25519)
    plan: list[tuple[str, str, dict[str, str], str, Any]] = []
    if workers > 1:
        plan += [
            ("check_license_cold", "rsa", rsa, "get", cold_files("rsa")),
            ("check_license_cold", "ed25519", ed, "get", cold_files("ed25519")),
        ]
    plan += [
        ("activate_license", "rsa", rsa, "activate", lambda _p, _i: activate_file),
        ("activate_license", "ed25519", ed, "activate", lambda _p, _i: activate_file),
        ("deactivate_license", "-", rsa, "deactivate", deactivations),
    ]
    rounds = itertools.count()
    for repetition in range(ctx.args.repeat):
        for endpoint, sig, headers, mode, files in plan:
            if endpoint not in ctx.args.endpoints:
                continue
            if endpoint == "check_license_cold" and repetition:
                continue
            yield
            where = {**where_base, "round": next(rounds)}
            yield from measure(ctx, where, endpoint, sig, url, headers, mode, files, session)


# -- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Licensor benchmark (issue 4)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="~1 minute smoke run: 1,000 licenses, 2 workers, short runs",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor reference (bench/floor_app.py: the work the wire requires)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 4)")
    parser.add_argument(
        "--reference-duration",
        type=float,
        help="seconds per measured run of the reference endpoint (default: half --duration)",
    )
    parser.add_argument(
        "--slices",
        type=int,
        help="wrk runs each measured run is split into, alternating with the other blocks of its "
        "group and its reference (1k, 1M, ref, ref, 1M, 1k: default 2; 1 with --quick)",
    )
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each run (1)")
    parser.add_argument(
        "--check-warmup",
        type=float,
        help="seconds of a warm-up round before the steady check_license runs (default 1; "
        f"rounds until one's rate is within 10%% of the one before, at most {STEADY_ROUNDS})",
    )
    parser.add_argument("--open-loop-seconds", type=float, help="open-loop run length (6)")
    parser.add_argument("--big", type=int, default=1_000_000, help="licenses in the big database")
    parser.add_argument("--small", type=int, default=1_000, help="licenses in the small database")
    parser.add_argument(
        "--big-workers",
        default="2",
        help="worker counts at the big size, comma-separated (default 2: 1M on "
        "both databases x both worker counts does not fit the time bound)",
    )
    parser.add_argument(
        "--check-devices",
        type=int,
        default=seed.CHECK_POOL,
        help="activated devices of the check loads (default 60000: the first "
        f"{seed.STEADY_POOL:,} are checked again and again, the others once per run)",
    )
    parser.add_argument(
        "--rev",
        help="benchmark this git revision (e.g. HEAD) instead of the "
        "working tree: its src/ is exported with `git archive` to a temporary "
        "directory and put first on the servers' PYTHONPATH",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--db", default="sqlite,postgresql", help="databases, comma-separated (default both)"
    )
    parser.add_argument(
        "--workers",
        help="worker counts at the small size, comma-separated (default 1,2; 2 with --quick)",
    )
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help="endpoints measured, comma-separated (default all: " + ", ".join(ENDPOINTS) + "; "
        "check_license_cold at 2 workers only); the reference is measured in every round",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each block's endpoints this many times over, in the same interleaved "
        "rounds (check_license_cold only the first time: its devices are then no longer cold; "
        "deactivations take fresh devices each time: lower --max-deactivate-rate if they run "
        "out)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a postgresql.conf setting of the benchmark's PostgreSQL server (repeatable; "
        f"default {' '.join(f'{k}={v}' for k, v in PG_SETTINGS.items())}: the 1,000,000-license "
        "database, ~500 MB, fits in PostgreSQL's buffers as in a deployment sized for it; "
        "PostgreSQL's own default is 128MB)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help="stop starting new runs after this long (default 10)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the machine to be idle "
        "(1-minute load average below 1)",
    )
    parser.add_argument(
        "--max-deactivate-rate",
        type=float,
        default=3000.0,
        help="devices prepared per second of a deactivation run",
    )
    args = parser.parse_args()
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 4.0)
    args.warmup = args.warmup if args.warmup is not None else 1.0
    args.check_warmup = args.check_warmup if args.check_warmup is not None else 1.0
    args.open_loop_seconds = args.open_loop_seconds or (4.0 if quick else 6.0)
    args.slices = args.slices or (1 if quick else 2)
    args.reference_duration = args.reference_duration or args.duration / 2
    args.workers = [int(w) for w in (args.workers or ("2" if quick else "1,2")).split(",") if w]
    args.dbs = [d for d in args.db.split(",") if d]
    if args.no_postgres:
        args.dbs = [d for d in args.dbs if d != "postgresql"]
    args.endpoints = {e for e in args.endpoints.split(",") if e}
    unknown = sorted(args.endpoints - set(ENDPOINTS)) + sorted(
        set(args.dbs) - {"sqlite", "postgresql"}
    )
    if unknown or not args.endpoints or not args.dbs or not args.workers:
        parser.error(f"--db / --endpoints / --workers: nothing to measure or unknown: {unknown}")
    if any(w < 1 for w in args.workers) or not 1 <= args.repeat <= 20:
        parser.error("--workers: at least 1 each; --repeat: 1 to 20")
    try:
        args.pg_settings = {**PG_SETTINGS, **dict(item.split("=", 1) for item in args.pg_setting)}
    except ValueError:
        parser.error("--pg-setting: NAME=VALUE")
    if not 1 <= args.slices <= 10 or args.reference_duration / args.slices < 0.5:
        parser.error(
            "--slices: 1 to 10, each at least half a second of --reference-duration (and so "
            "of --duration)"
        )
    if args.reference_duration > args.duration:
        parser.error("--reference-duration: at most --duration")
    if not (
        0 < args.duration <= 60 and 0 <= args.warmup <= 30 and 0 < args.open_loop_seconds <= 60
    ):
        parser.error("durations: 0 < --duration <= 60, 0 <= --warmup <= 30, open loop <= 60")
    return args


def wait_idle(seconds: float) -> None:
    if seconds <= 0:
        return
    deadline = time.monotonic() + seconds
    while procs.loadavg() >= 1.0 and time.monotonic() < deadline:
        print(
            f"bench: waiting for the machine to be idle (load {procs.loadavg():.1f}) ...",
            flush=True,
        )
        time.sleep(min(15.0, max(0.0, deadline - time.monotonic())))


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for module in ("uvicorn", "starlette", "fastapi", "sqlalchemy", "psycopg", "cryptography"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:
            versions[module] = "?"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0:1],
        "versions": versions,
        "loadavg_at_start": procs.loadavg(),
        "signature_cpu_ms": signing_cost(),
    }


def signing_cost(seconds: float = 1.0) -> dict[str, float]:
    """CPU milliseconds per signature of a 2,500-byte body (an activation answer's size) with
    the server's own code (protocol.signing.sign_bytes: RSA-2048 PKCS#1 v1.5 + SHA-256, and
    Ed25519), measured in this run: a new activation makes two (the license's
    offline_signature and the answer's signature header), which bounds what two cores can
    answer whatever else the server does."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from licensor.protocol.signing import sign_bytes

    body = os.urandom(2500)
    cost = {}
    for name, key in (
        ("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ed25519", ed25519.Ed25519PrivateKey.generate()),
    ):
        sign_bytes(key, body)
        count, cpu0 = 0, time.process_time()
        while time.process_time() - cpu0 < seconds:
            sign_bytes(key, body)
            count += 1
        cost[f"{name}_ms"] = 1000 * (time.process_time() - cpu0) / count
    return cost


def use_revision(rev: str, work: Path) -> dict[str, str]:
    """Export ``rev``'s src/ and make it the code every process imports."""
    target = work / "source"
    target.mkdir()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    src = str(target / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [src, *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    )
    return {"rev": rev, "commit": commit, "tree": "exported (git archive)"}


def working_tree_info() -> dict[str, str]:
    def git(*a: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "src"))
    return {
        "rev": "working tree",
        "commit": git("rev-parse", "HEAD"),
        "tree": "working tree" + (" with uncommitted changes in src/" if dirty else ""),
    }


def main() -> int:
    args = parse_args()
    procs.install_signal_handlers()
    wrk = ensure_wrk()
    args.out.mkdir(parents=True, exist_ok=True)
    openloop = build_openloop(args.out)
    ensure_matplotlib()
    (args.out / "logs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="licensor-bench-"))
    source = use_revision(args.rev, work) if args.rev else working_tree_info()
    print(f"bench: code under test: {source['tree']} at {source['commit'][:12]}", flush=True)
    started = time.monotonic()
    ctx = Context(args, wrk, openloop, args.out, work, started + args.max_minutes * 60)
    pg_problem = "not in --db" if "postgresql" not in args.dbs else postgres_available()
    if pg_problem:
        print(f"bench: PostgreSQL skipped: {pg_problem}", flush=True)
        ctx.skipped.append(f"PostgreSQL: {pg_problem}")
    wait_idle(args.wait_idle)
    info = machine_info()
    rng = random.Random(4)
    small_workers = args.workers
    big_workers = [] if args.quick else [int(w) for w in args.big_workers.split(",") if w]
    sizes = [(args.small, small_workers)] + ([(args.big, big_workers)] if big_workers else [])
    worker_counts = sorted(set(small_workers + big_workers))
    seed.CHECK_POOL = args.check_devices
    seeding: list[dict[str, Any]] = []
    body_info: dict[str, Any] = {}
    pg = None
    try:
        if not pg_problem:
            from tests.harness.postgres import PostgresServer

            pg = PostgresServer(settings=args.pg_settings).start()
            ctx.pg_postmaster = pg.postmaster_pid
        reference: dict[int, tuple[str, int]] = {}
        ref_contexts = []
        for db in [
            d
            for d in ("sqlite", "postgresql")
            if d in args.dbs and not (d == "postgresql" and pg_problem)
        ]:
            if ctx.time_left() < 60:
                ctx.skipped.append(f"{db}: time bound reached")
                continue
            deployments: dict[int, seed.Deployment] = {}
            for licenses, _workers in sizes:
                name = f"{db}-{licenses}"
                url = (
                    f"sqlite:///{work / name / 'licensor.db'}"
                    if db == "sqlite"
                    else pg.create_database(f"bench_{licenses}")  # type: ignore[union-attr]
                )
                print(f"\nbench: seeding {db} with {licenses:,} licenses ...", flush=True)
                deployment = seed.prepare(
                    name, url, work / name, licenses=licenses, min_devices=200_000, rng=rng
                )
                deployments[licenses] = deployment
                devices = deployment.licenses * deployment.devices_per_license
                print(
                    f"bench: seeded {licenses:,} licenses + {devices:,} devices in "
                    f"{deployment.seed_seconds:.1f} s",
                    flush=True,
                )
                seeding.append(
                    {
                        "db": db,
                        "licenses": licenses,
                        "devices": devices,
                        "seconds": round(deployment.seed_seconds, 2),
                    }
                )
            if not reference:
                body_info = reference_body(ctx, deployments[args.small])
                for w in worker_counts:
                    cm = procs.reference_server(
                        work / "reference_body.json",
                        w,
                        args.out / "logs" / f"reference-{w}w.log",
                    )
                    reference[w] = cm.__enter__()
                    ref_contexts.append(cm)
            for workers in worker_counts:
                members = [deployments[licenses] for licenses, counts in sizes if workers in counts]
                ref_url, ref_session = reference[workers]
                run_group(ctx, db, members, workers, ref_url, ref_session)
            for licenses, _workers in sizes:
                if db == "postgresql" and pg is not None:
                    pg.drop_database(f"bench_{licenses}")
                shutil.rmtree(work / f"{db}-{licenses}", ignore_errors=True)
        for cm in reversed(ref_contexts):
            cm.__exit__(None, None, None)
    finally:
        procs.kill_all()
        if pg is not None:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)
    info["loadavg_at_end"] = procs.loadavg()
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "settings": {
            "connections": CONNECTIONS,
            "duration_s": args.duration,
            "reference_duration_s": args.reference_duration,
            "repeat": args.repeat,
            "endpoints": sorted(args.endpoints),
            "postgresql_settings": args.pg_settings,
            "slices": args.slices,
            "warmup_s": args.warmup,
            "check_warmup_s": args.check_warmup,
            "open_loop_s": args.open_loop_seconds,
            "load_generator": "wrk -t1 (bench/load.lua)",
            "open_loop_generator": "bench/openloop.c (wrk2-style fixed timetable, 64 keep-alive "
            "connections, latency from the scheduled time, 1 s warm-up, rotating over the "
            f"{seed.STEADY_POOL:,} steady devices)",
        },
        "machine": info,
        "source": source,
        "answer_sizes": body_info,
        "seeding": seeding,
        "results": report.with_ratios(ctx.results),
        "open_loop": ctx.open_loop,
        "skipped": ctx.skipped,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    document["targets"] = report.evaluate_targets(document)
    report.write_all(document, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
