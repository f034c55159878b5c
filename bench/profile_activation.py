"""In-process CPU cost of one activation / deactivation (no HTTP server, no load generator).

    python bench/profile_activation.py [--db sqlite|postgresql] [--endpoint activate|deactivate]
                                       [--ed25519] [--requests 2000] [--cprofile N]

Seeds a small deployment (bench/seed.py), builds the application state the server builds, and
calls the License API front's ``ActivationFront.answer`` (``--path front``, the default;
signature headers included) or the whole ASGI application (``--path asgi``) with the same
headers and body the benchmark's wrk script sends; prints CPU and wall milliseconds per request (this process, and PostgreSQL's
processes on --db postgresql) and,
with ``--cprofile N``, the N functions with the most cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# bench/profile.py would shadow the standard library's ``profile`` (which cProfile imports)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
import cProfile  # noqa: E402
import pstats  # noqa: E402

sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(BENCH)]

import procs  # noqa: E402
import run  # noqa: E402
import seed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--endpoint",
        choices=["activate", "deactivate", "check"],
        default="activate",
        help="check: a cold check (each request a device not checked before: read, made, signed)",
    )
    parser.add_argument("--ed25519", action="store_true")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument("--licenses", type=int, default=1000)
    parser.add_argument(
        "--path",
        choices=["front", "asgi"],
        default="front",
        help="front: the ActivationFront's answer(); asgi: the whole ASGI application (every "
        "middleware) on an asyncio loop, no socket",
    )
    args = parser.parse_args()

    from licensor.api.app import create_app
    from licensor.api.state import AppState
    from licensor.api.v4.activation import ActivationFront
    from licensor.api.v4.check import CheckFront, _Request
    from licensor.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="licensor-actprof-"))
    pg = None
    if args.db == "postgresql":
        from tests.harness.postgres import PostgresServer

        pg = PostgresServer().start()
        url = pg.create_database("actprof")
    else:
        url = f"sqlite:///{work / 'licensor.db'}"
    try:
        deployment = seed.prepare(
            "actprof",
            url,
            work / "data",
            licenses=args.licenses,
            min_devices=max(200_000, args.licenses),  # as bench/run.py
            rng=random.Random(4),
        )
        settings = Settings(
            data_dir=deployment.data_dir, database_url=url, master_key=seed.MASTER_KEY
        )
        app = create_app(settings)
        state = AppState.open(settings)
        app.state.licensor = state
        headers = run.signed_headers(deployment, run.ED25519 if args.ed25519 else {})
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        headers_of = {k.lower(): v for k, v in headers.items()}
        pairs = deployment.take_deactivations(args.requests)

        def body(i: int) -> bytes:
            if args.endpoint == "activate":
                key = deployment.activate_pool[i % len(deployment.activate_pool)]
                return (
                    '{"product":"bench","license_key":"'
                    + key
                    + '","hardware_id":"act-p-'
                    + str(i)
                    + '","is_vm":false,"os_ver":"Linux","hostname":"bench","app_ver":"1.0",'
                    '"sdk_ver":"bench"}'
                ).encode()
            key, hw = pairs[i % len(pairs)]
            return (
                '{"product":"bench","license_key":"' + key + '","hardware_id":"' + hw + '"}'
            ).encode()

        path = "/api/v4/" + (
            "activate_license" if args.endpoint == "activate" else "deactivate_license"
        )
        front = ActivationFront(app, lambda: state)
        checks = CheckFront(app, lambda: state)
        check_request = _Request(
            headers_of["authorization"],
            headers_of["date"],
            "ed25519" if args.ed25519 else "rsa-sha256",
            "127.0.0.1",
        )

        loop = asyncio.new_event_loop()

        def asgi(scope: dict[str, Any], content: bytes) -> int:
            sent: list[dict[str, Any]] = []
            messages = [{"type": "http.request", "body": content, "more_body": False}]

            async def receive() -> dict[str, Any]:
                return messages.pop(0) if messages else {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            loop.run_until_complete(app(scope, receive, send))
            return int(sent[0]["status"])

        def one(i: int) -> Any:
            content = body(i)
            scope = {
                "type": "http",
                "method": "POST",
                "path": path,
                "headers": raw_headers,
                "query_string": b"",
                "client": ("127.0.0.1", 40000),
                "app": app,
            }
            if args.path == "asgi":
                scope["headers"] = [*raw_headers, (b"content-length", str(len(content)).encode())]
                scope.update(http_version="1.1", scheme="http", root_path="", server=None)
                status = asgi(scope, content)
                if status != 200:
                    raise SystemExit(f"request {i}: status {status}")
                return status
            if args.endpoint == "check":
                key, hw = deployment.check_pool[i % len(deployment.check_pool)]
                query = run.check_path(key, hw).split("?", 1)[1].encode()
                made = checks.answer(state, {"query_string": query}, check_request, inline=False)
                assert made is not None
                if made[0] != 200:
                    raise SystemExit(f"request {i}: {made[0]} {made[1][:300]!r}")
                return made
            answer = front.answer(state, path, headers_of, content, "127.0.0.1")
            if answer[0] != 200:
                raise SystemExit(f"request {i}: {answer[0]} {answer[1][:300]!r}")
            return answer

        n = min(args.requests, len(pairs)) if args.endpoint == "deactivate" else args.requests
        if args.endpoint == "check":
            n = min(n, len(deployment.check_pool))
        warm = min(50, n // 10)
        for i in range(warm):
            one(i)
        profiler = cProfile.Profile() if args.cprofile else None
        postmaster = pg.postmaster_pid if pg is not None else None
        pg0 = procs.tree_cpu_seconds(postmaster)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(warm, n):
            one(i)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        pg_cpu = procs.tree_cpu_seconds(postmaster) - pg0
        count = n - warm
        sig = "ed25519" if args.ed25519 else "rsa"
        print(
            f"{args.db} {args.endpoint} {sig} ({args.path} path): {count} requests, "
            f"{1000 * cpu / count:.2f} ms CPU, {1000 * wall / count:.2f} ms wall per request"
            + (f", PostgreSQL {1000 * pg_cpu / count:.2f} ms CPU" if pg is not None else "")
            + (" (under cProfile)" if profiler else "")
        )
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.cprofile)
            stats.sort_stats("tottime").print_stats(40)
        state.close()
    finally:
        if pg is not None:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
