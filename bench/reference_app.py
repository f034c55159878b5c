"""The reference endpoint: a bare Starlette app on the same uvicorn, no database, no signing.

``GET /<anything>`` answers with a JSON body of the same size as a ``check_license`` answer: the
benchmark saves a real check answer to the file named by ``BENCH_REFERENCE_BODY`` and this app
serialises that dict on every request (``JSONResponse``, compact UTF-8 JSON, as Licensor sends).
It is the ceiling a Python ASGI server reaches on this machine for an answer of that size.

Run: ``python bench/reference_app.py --workers N --port P``: served as ``licensor serve`` serves
Licensor (``licensor.cli.workers.serve``: uvicorn, with a listening socket per worker on Linux).
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _load_body() -> Any:
    path = os.environ.get("BENCH_REFERENCE_BODY")
    if not path:
        return {"status": "ok", "padding": "x" * 1800}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


BODY = _load_body()


class CompactJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def answer(_request: Request) -> Response:
    return CompactJSON(BODY)


app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


def main() -> None:
    import argparse

    from licensor.cli import workers

    parser = argparse.ArgumentParser(description="the benchmark's reference endpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    workers.serve(
        "reference_app:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
