"""A/B of activation settings: activate (RSA, Ed25519) and deactivate under wrk, 64 connections.

    python bench/activation_ab.py [--db sqlite,postgresql] [--workers 2] [--duration 5]
        --variant inline:LICENSOR_FAST_ACTIVATION_THREADS=0 --variant threads:LICENSOR_...=2

Seeds the benchmark's small deployment (1,000 licenses, 200 devices each; bench/seed.py) per
database, then for each variant starts ``licensor serve`` with the variant's environment and
measures with the same wrk script and accounting as bench/run.py (server CPU ms per request =
server cores / throughput). Variants run in turn on the same data (activations add devices,
deactivations use each device once). Wrap it in ``flock /tmp/bench.lock``.
"""

from __future__ import annotations

import argparse
import random
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the variants this often")
    parser.add_argument(
        "--licenses", type=int, default=1000, help="licenses seeded (200,000 devices at least)"
    )
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME:VAR=VALUE[,VAR=VALUE...]"
    )
    parser.add_argument(
        "--warm-check",
        action="store_true",
        help="send each worker a few checks first (starts the answer cache's change watcher, "
        "as a server that also answers checks has)",
    )
    parser.add_argument(
        "--endpoints", default="activate_rsa,activate_ed25519,deactivate", help="subset to run"
    )
    args = parser.parse_args()
    variants: list[tuple[str, dict[str, str]]] = []
    for text in args.variant or ["default:"]:
        name, _, settings = text.partition(":")
        env = dict(pair.split("=", 1) for pair in settings.split(",") if pair)
        variants.append((name, env))
    wanted = set(args.endpoints.split(","))
    procs.install_signal_handlers()
    wrk = run.ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="licensor-ab-"))
    ns = argparse.Namespace(
        warmup=args.warmup, duration=args.duration, slices=1, check_warmup=args.warmup
    )
    ctx = run.Context(ns, wrk, "", work, work, time.monotonic() + 3600)
    pg = None
    rows: list[str] = []
    try:
        for db in args.db.split(","):
            if db == "postgresql":
                from tests.harness.postgres import PostgresServer

                pg = PostgresServer().start()
                ctx.pg_postmaster = pg.postmaster_pid
                url = pg.create_database("ab")
            else:
                url = f"sqlite:///{work / 'ab.db'}"
            deployment = seed.prepare(
                db,
                url,
                work / db,
                licenses=args.licenses,
                min_devices=200_000,
                rng=random.Random(4),
            )
            activate_file = run.write_lines(work / "activate.txt", deployment.activate_pool)

            def deactivations(
                phase: str, _part: int, deployment: seed.Deployment = deployment
            ) -> Path:
                count = int(2600 * ((args.duration if phase == "measure" else args.warmup) + 1))
                pairs = deployment.take_deactivations(count)
                return run.write_lines(
                    work / f"deactivate-{phase}.txt",
                    [f"{k} {h}" for k, h in pairs] or ["none none"],
                )

            for round_ in range(args.rounds):
                for name, env in variants:
                    block = {"name": f"{db} {name} r{round_}", "db": db, "licenses": args.licenses}
                    block["block"] = block["group"] = block["name"]
                    block["workers"] = args.workers
                    print(f"\n== {block['name']} {env}", flush=True)
                    log = work / f"server-{db}-{name}.log"
                    with procs.licensor_server({**deployment.env, **env}, args.workers, log) as (
                        base,
                        session,
                    ):
                        rsa = run.signed_headers(deployment)
                        ed = run.signed_headers(deployment, run.ED25519)
                        if args.warm_check:
                            import httpx

                            for key, hw in deployment.check_pool[:20]:
                                httpx.get(base + run.check_path(key, hw), headers=rsa, timeout=10)
                        plan = [
                            (
                                "activate_rsa",
                                "rsa",
                                rsa,
                                "activate",
                                lambda _p, _i, f=activate_file: f,
                            ),
                            (
                                "activate_ed25519",
                                "ed25519",
                                ed,
                                "activate",
                                lambda _p, _i, f=activate_file: f,
                            ),
                            ("deactivate", "-", rsa, "deactivate", deactivations),
                        ]
                        for label, sig, headers, mode, data in plan:
                            if label not in wanted:
                                continue
                            result = run.completed(
                                run.measure(
                                    ctx, block, label, sig, base, headers, mode, data, session
                                )
                            )
                            if result is not None:
                                cpu = result["cpu"]["server_cores"] / max(
                                    1e-9, result["throughput"]
                                )
                                rows.append(
                                    f"{block['name']:<28} {label:<18} {result['throughput']:7.0f}"
                                    f" req/s  p50 {result['p50_ms']:6.1f}  p99 {result['p99_ms']:6.1f}"
                                    f" ms  server {1000 * cpu:5.2f} ms/req"
                                    f"  pg {result['cpu']['postgres_cores']:.2f} cores"
                                )
            if pg is not None:
                pg.close()
                pg = None
                ctx.pg_postmaster = None
    finally:
        procs.kill_all()
        if pg is not None:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
