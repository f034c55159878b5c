"""Where a Licensor worker spends its time under load: py-spy on a 1-worker server while wrk runs.

    python bench/profile.py [--db sqlite|postgresql] [--endpoint check|activate|offline]
                            [--ed25519]
                            [--seconds 15]

Seeds a small deployment, starts ``licensor serve --workers 1``, drives the endpoint with wrk
(64 connections), records the worker with ``py-spy record --format raw`` (installed into this
venv with pip if missing), and prints the share of on-CPU samples per function (inclusive) for a
list of functions of interest plus the top self-time frames. Raw stacks are written to
bench-results/profile-<db>-<endpoint>-<sig>.txt (load them in speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(BENCH)]

import procs  # noqa: E402
import run  # noqa: E402
import seed  # noqa: E402

# (label, substring of a collapsed frame "function (file:line)")
INTEREST = [
    ("request total (uvicorn httptools cycle)", "run_asgi ("),
    ("threadpool hop: endpoint in a worker thread", "run_sync_in_worker_thread"),
    ("response signing middleware (LicenseSignature header)", "signature_headers ("),
    ("  RSA/Ed25519 sign (all)", "sign_bytes ("),
    ("license_body (answer + license_signature[_v2])", "license_body ("),
    ("authenticate (HMAC, api key + company lookups)", "authenticate ("),
    ("  AES-GCM decrypt of the shared key", "decrypt ("),
    ("seats.find (the one read of the rows)", "find ("),
    ("  the seat read's statement", "seat_rows ("),
    ("session.flush (ORM unit of work)", "flush ("),
    ("session.commit", "commit ("),
    ("SQLAlchemy ORM: Session.execute/scalars", "execute (sqlalchemy/orm/session.py"),
    ("SQLAlchemy: statement compile (cache misses)", "_compiler ("),
    ("DB driver: cursor.execute", "do_execute ("),
    ("pydantic validation (parse_query/parse_json)", "_validate ("),
    ("compact_json (json.dumps of the answer)", "compact_json ("),
    ("FastAPI dependency solving / routing", "solve_dependencies ("),
    ("pool checkout / pre-ping", "_checkout ("),
]


def ensure_py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return str(exe)
    found = shutil.which("py-spy")
    if found:
        return found
    print("profile: installing py-spy into this venv with pip ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600
    )
    return str(exe)


def summarise(raw: Path, top: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] += count
        for label, needle in INTEREST:
            if any(needle in f for f in frames):
                inclusive[label] += count
    lines = [f"{total} samples", "", "inclusive share:"]
    for label, _ in INTEREST:
        lines.append(f"  {100 * inclusive[label] / max(1, total):5.1f}%  {label}")
    lines += ["", f"top {top} self-time frames:"]
    for frame, count in self_time.most_common(top):
        lines.append(f"  {100 * count / max(1, total):5.1f}%  {frame}")
    return "\n".join(lines)


def serial_cost(
    wrk: str,
    base: str,
    headers: dict[str, str],
    mode: str,
    data: Path,
    pid: int,
    work: Path,
    seconds: int = 5,
) -> dict[str, float]:
    """One connection, one request at a time: server CPU and latency per request."""
    cmd = [wrk, "-t1", "-c1", f"-d{seconds}s", "--timeout", "10s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-s", str(BENCH / "load.lua"), base, "--", mode, str(data), f"serial{time.time_ns()}"]
    before = procs.session_cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    cpu = procs.session_cpu_seconds(pid) - before
    summary = json.loads(out.stdout.split("BENCH-JSON", 1)[1].splitlines()[0])
    requests = max(1, summary["requests"])
    return {
        "requests": requests,
        "cpu_ms": 1000 * cpu / requests,
        "latency_ms": summary["latency_us"]["p50"] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="py-spy profile of one Licensor endpoint")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--endpoint", choices=["check", "activate", "offline"], default="check")
    parser.add_argument("--ed25519", action="store_true")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="wrk connections while py-spy records (1: the cost of one request without queueing)",
    )
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread (wall time, waits included); default: only the "
        "thread holding the GIL, i.e. where the worker's Python CPU goes",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120:
        parser.error("--seconds must be in [1, 120]")
    procs.install_signal_handlers()
    py_spy = ensure_py_spy()
    wrk = run.ensure_wrk()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="licensor-profile-"))
    sig = "ed25519" if args.ed25519 else "rsa"
    raw = args.out / f"profile-{args.db}-{args.endpoint}-{sig}.txt"
    pg = None
    try:
        if args.db == "postgresql":
            from tests.harness.postgres import PostgresServer

            pg = PostgresServer().start()
            url = pg.create_database("profile")
        else:
            url = f"sqlite:///{work / 'licensor.db'}"
        deployment = seed.prepare(
            "profile", url, work / "data", licenses=1000, min_devices=100_000, rng=random.Random(4)
        )
        extra = run.ED25519 if args.ed25519 else {}
        headers = run.signed_headers(deployment, extra)
        if args.endpoint == "check":
            mode = "get"
            data = run.write_lines(
                work / "paths.txt", [run.check_path(k, h) for k, h in deployment.check_pool]
            )
        elif args.endpoint == "offline":  # request files, each once (enough for the run)
            mode = "offline"
            headers["Content-Type"] = "text/plain"
            count = int(3000 * (args.seconds + 10))
            data = run.write_lines(work / "files.txt", run.request_files(deployment, count, sig))
        else:
            mode = "activate"
            data = run.write_lines(work / "keys.txt", deployment.activate_pool)
        log = args.out / "logs" / "profile-server.log"
        body_file = work / "reference_body.json"
        with procs.licensor_server(deployment.env, 1, log) as (base, pid):
            key, hw = deployment.check_pool[0]
            import httpx

            body_file.write_bytes(
                httpx.get(base + run.check_path(key, hw), headers=headers, timeout=10).content
            )
            serial = serial_cost(wrk, base, headers, mode, data, pid, work)
            print(
                f"serial cost ({args.endpoint} {sig}, 1 connection, {serial['requests']} "
                f"requests): {serial['cpu_ms']:.2f} ms of server CPU and "
                f"{serial['latency_ms']:.2f} ms latency per request",
                flush=True,
            )
            cmd = [
                wrk,
                "-t1",
                f"-c{args.connections}",
                f"-d{round(args.seconds) + 4}s",
                "--timeout",
                "10s",
            ]
            for name, value in headers.items():
                cmd += ["-H", f"{name}: {value}"]
            cmd += ["-s", str(BENCH / "load.lua"), base, "--", mode, str(data), "prof"]
            load = procs.start(cmd, env=dict(deployment.env), log=work / "wrk.log")
            time.sleep(2)  # warm-up
            server_cpu = procs.session_cpu_seconds(pid)
            subprocess.run(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(round(args.seconds)),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(raw),
                    *([] if args.all_threads else ["--gil"]),
                ],
                check=True,
                timeout=args.seconds + 60,
                stdout=subprocess.DEVNULL,
            )
            server_cpu = procs.session_cpu_seconds(pid) - server_cpu
            load.wait(timeout=30)
            procs._STARTED.pop(load.pid, None)
        with procs.reference_server(body_file, 1, args.out / "logs" / "profile-ref.log") as (
            ref,
            ref_pid,
        ):
            ref_paths = run.write_lines(work / "ref.txt", ["/reference"])
            ref_serial = serial_cost(wrk, ref, {}, "get", ref_paths, ref_pid, work)
        print(
            f"serial cost (reference, same body size): {ref_serial['cpu_ms']:.2f} ms of server "
            f"CPU and {ref_serial['latency_ms']:.2f} ms latency per request; CPU-bound ceiling "
            f"of the ratio: {ref_serial['cpu_ms'] / serial['cpu_ms']:.2f}"
        )
        print(f"under load: server used {server_cpu:.1f} CPU s for the py-spy window")
        print(
            f"profile: {args.db} {args.endpoint} {sig}, 1 worker, {args.connections} connections; "
            f"raw stacks in {raw}"
        )
        summary = json.loads(
            (work / "wrk.log").read_text().split("BENCH-JSON", 1)[-1].splitlines()[0]
        )
        print(json.dumps(summary))
        requests = summary["requests"]
        print(
            f"wrk: {requests} requests in {summary['duration_us'] / 1e6:.1f} s "
            f"({requests / (summary['duration_us'] / 1e6):.0f} req/s), p50 "
            f"{summary['latency_us']['p50'] / 1000:.1f} ms, p99 "
            f"{summary['latency_us']['p99'] / 1000:.1f} ms"
        )
        print(summarise(raw))
    finally:
        procs.kill_all()
        if pg is not None:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
