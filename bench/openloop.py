"""Open-loop (fixed-rate) load generator, coordinated-omission safe.

Request ``i`` is due at ``t0 + i / rate`` whatever happened to the earlier ones; its latency is
measured from that *scheduled* time to the end of the answer, so time spent waiting for a free
connection or behind a slow answer counts (wrk2-style). At most ``--connections`` requests are in
flight (that many keep-alive connections); the rest queue, and the queueing shows in the
latency, as it would for real clients.

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
    """Raw HTTP/1.1 keep-alive over asyncio streams, requests pre-encoded: an httpx client
    spent ~0.8 cores at 200 req/s, on the same two cores as the server it was measuring."""
    from urllib.parse import urlsplit

    with open(args.paths, encoding="utf-8") as lines:
        paths = [line.strip() for line in lines if line.strip()]
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head = "".join(f"{h}\r\n" for h in args.header)
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode() for p in paths]
    total = int(args.rate * args.duration)
    latencies: list[float] = []
    lags: list[float] = []
    statuses: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def connection() -> None:
        reader = writer = None
        while True:
            item = await queue.get()
            if item is None:
                break
            i, due = item
            lags.append(loop.time() - due)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(requests[i % len(requests)])
                head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), args.timeout)
                status = head_bytes.split(b" ", 2)[1].decode()
                length = 0
                for line in head_bytes.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await asyncio.wait_for(reader.readexactly(length), args.timeout)
                key = status
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                key = type(exc).__name__
                if writer is not None:
                    writer.close()
                reader = writer = None
            latencies.append(loop.time() - due)
            statuses[key] = statuses.get(key, 0) + 1
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(args.connections)]
    t0 = loop.time() + 0.1
    for i in range(total):
        due = t0 + i / args.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    sent_seconds = loop.time() - t0
    for _ in workers:
        queue.put_nowait(None)
    _done, pending = await asyncio.wait(workers, timeout=args.timeout + 5)
    for task in pending:
        task.cancel()
    elapsed = loop.time() - t0
    latencies.sort()
    lags.sort()
    ms = 1000.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "generator": "bench/openloop.py (asyncio streams, keep-alive, fixed timetable)",
        "rate": args.rate,
        "scheduled": total,
        "completed": len(latencies),
        "ok": statuses.get("200", 0),
        "statuses": statuses,
        "unfinished": total - len(latencies),
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
