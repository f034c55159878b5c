"""How much does licensing add to an application's start? Run: ``python tests/client/bench_startup.py``.

It compares, as fresh processes, a bare ``python -c pass`` with ``import licensor.client`` plus an
offline ``validate()`` of a stored license (recommended binding, Ed25519 signatures, the store in a
temporary directory), and prints the medians and their ratio. The issue's budget is 5x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

APP = """
import sys
from licensor.client import HmacCredentials, LicenseClient
client = LicenseClient("https://licensing.invalid", "bench", [sys.argv[1]],
                       HmacCredentials("k", "s"), storage_dir=sys.argv[2])
license = client.validate(online=False)
assert license.status == "active", license
assert "httpx" not in sys.modules, "offline validation must not load the network stack"
"""


def prepare(directory: Path) -> str:
    """Store a license signed by a fresh Ed25519 key for this computer; return the public PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from licensor.client._store import LicenseStore, SignedAnswer, StoredLicense, clock_key
    from licensor.client._verify import BodySignature
    from licensor.client.hardware import hardware_id
    from licensor.protocol.auth import http_date
    from licensor.protocol.signing import compact_json, key_id, license_signing_string, sign_bytes

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    computer = hardware_id()
    body = {
        "license_key": "BENCH-0000",
        "license_type": "perpetual",
        "is_trial": False,
        "validity_period": None,
        "is_expired": False,
        "hardware_id": computer,
        "date": http_date(datetime.now(UTC)),
    }
    body["license_signature"] = sign_bytes(
        key, license_signing_string(computer, "BENCH-0000", None).encode()
    )
    content = compact_json(body)
    signature = BodySignature("ed25519", key_id(key.public_key()), sign_bytes(key, content))
    store = LicenseStore(directory, "bench")
    store.save(
        StoredLicense("bench", computer, "BENCH-0000", None, SignedAnswer(content, signature), None)
    )
    store.clock.save(datetime.now(UTC), clock_key(computer, "bench"))
    return pem.decode()


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run (CPU is steadier on a busy machine)."""
    cpu = _children_cpu() if sys.platform != "win32" else 0.0
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    return wall, (_children_cpu() - cpu) if sys.platform != "win32" else wall


def measure(runs: int = 9) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as temp:
        # As an installed application runs: from bytecode (kept out of the source tree here).
        env["PYTHONPYCACHEPREFIX"] = str(Path(temp) / "pycache")
        pem = prepare(Path(temp))
        app = [sys.executable, "-c", APP, pem, temp]
        bare = [sys.executable, "-c", "pass"]
        timed(app, env)  # warm the file cache and write the bytecode caches
        timed(bare, env)
        bare_times, app_times = [], []
        for _ in range(runs):  # interleaved, so a noisy moment hits both
            bare_times.append(timed(bare, env))
            app_times.append(timed(app, env))
    result: dict[str, float] = {"runs": runs}
    for index, kind in enumerate(("wall", "cpu")):
        bare_median = statistics.median(t[index] for t in bare_times)
        app_median = statistics.median(t[index] for t in app_times)
        result[f"python_pass_{kind}_s"] = round(bare_median, 4)
        result[f"import_and_validate_{kind}_s"] = round(app_median, 4)
        result[f"ratio_{kind}"] = round(app_median / bare_median, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--budget", type=float, default=5.0, help="maximum allowed ratio")
    args = parser.parse_args()
    result = measure(args.runs)
    print(json.dumps(result, indent=2))
    return 0 if min(result["ratio_wall"], result["ratio_cpu"]) <= args.budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
