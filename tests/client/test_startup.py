"""Starting an application that validates offline stays cheap. The cost itself is a benchmark
(``python tests/client/bench_startup.py`` prints the ratio to a bare ``python -c pass``); this
test guards, deterministically, what makes it cheap: an offline ``validate()`` loads neither the
network stack, nor the key-serialization code, nor the wizard, nor what starts programs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_startup import APP, SRC, prepare

HEAVY = (
    "httpx",
    "ssl",
    "asyncio",
    "cryptography.hazmat.primitives.serialization",
    # the wizard, and the hardware probes that start programs (beyond the stored binding)
    "tkinter",
    "licensor.client.wizard",
    "subprocess",
)

PROBE = (
    APP
    + """
heavy = [name for name in sys.argv[3].split(",") if name in sys.modules]
assert not heavy, f"offline validation loaded {heavy}"
print("ok")
"""
)


def test_offline_validate_loads_no_network_or_serialization_code() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as temp:
        pem = prepare(Path(temp))
        result = subprocess.run(
            [sys.executable, "-c", PROBE, pem, temp, ",".join(HEAVY)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
