"""Open-loop (fixed-rate) load generator, coordinated-omission safe.

Request ``i`` is due at ``t0 + i / rate`` whatever happened to the earlier ones; its latency is
measured from that *scheduled* time to the end of the answer, so time spent waiting for a free
connection or behind a slow answer counts (wrk2-style). At most ``--connections`` requests are in
flight (an httpx connection pool of that size, keep-alive); the rest queue, and the queueing shows
in the latency, as it would for real clients.

Run by bench/run.py in its own process:

    python bench/openloop.py --url http://127.0.0.1:PORT --paths FILE --rate 300 --duration 10 \\
        --header 'Date: ...' --header 'Authorization: ...'

Prints one JSON object. ``send_lag_ms`` (how late the generator itself started requests) tells
whether the generator kept its timetable; ``cpu_seconds`` is its own CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, object]:
    import httpx

    paths = [line.strip() for line in open(args.paths, encoding="utf-8") if line.strip()]
    headers = dict(h.split(": ", 1) for h in args.header)
    total = int(args.rate * args.duration)
    latencies: list[float] = []
    lags: list[float] = []
    statuses: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    timeout = httpx.Timeout(args.timeout, pool=args.timeout)
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, limits=limits, timeout=timeout
    ) as client:

        async def one(i: int, due: float) -> None:
            lags.append(loop.time() - due)
            try:
                response = await client.get(paths[i % len(paths)])
                key = str(response.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            latencies.append(loop.time() - due)
            statuses[key] = statuses.get(key, 0) + 1

        tasks = []
        t0 = loop.time() + 0.1
        for i in range(total):
            due = t0 + i / args.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        sent_seconds = loop.time() - t0
        _done, pending = await asyncio.wait(tasks, timeout=args.timeout + 5)
        for task in pending:
            task.cancel()
        elapsed = loop.time() - t0
    latencies.sort()
    lags.sort()
    ms = 1000.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "generator": "bench/openloop.py (httpx, asyncio, fixed timetable)",
        "rate": args.rate,
        "scheduled": total,
        "completed": len(latencies),
        "ok": statuses.get("200", 0),
        "statuses": statuses,
        "unfinished": len(pending),
        "achieved_rate": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "send_seconds": sent_seconds,
        "latency_ms": {
            "p50": percentile(latencies, 50) * ms,
            "p90": percentile(latencies, 90) * ms,
            "p99": percentile(latencies, 99) * ms,
            "p999": percentile(latencies, 99.9) * ms,
            "max": (latencies[-1] if latencies else float("nan")) * ms,
        },
        "send_lag_ms": {
            "p50": percentile(lags, 50) * ms,
            "p99": percentile(lags, 99) * ms,
            "max": (lags[-1] if lags else float("nan")) * ms,
        },
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--paths", required=True, help="file with one request path per line")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    if not (0 < args.rate <= 50_000 and 0 < args.duration <= 120):
        sys.exit("rate must be in (0, 50000] and duration in (0, 120] seconds")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    result = asyncio.run(run(args))
    result["wall_seconds"] = time.monotonic() - started
    print(json.dumps(result))


if __name__ == "__main__":
    main()
