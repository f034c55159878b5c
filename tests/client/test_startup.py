"""Starting an application that validates offline stays cheap (the issue's budget: 5x a bare
``python -c pass``). The exact numbers come from ``python tests/client/bench_startup.py``; this test
guards against regressions such as loading the network stack or ``serialization`` at start."""

from __future__ import annotations

import sys

import pytest
from bench_startup import measure

pytestmark = pytest.mark.slow


@pytest.mark.skipif(sys.platform == "win32", reason="CPU accounting of child processes is POSIX")
def test_import_and_offline_validate_cost_few_bare_starts() -> None:
    result = measure(runs=7)
    # 5x is the budget on a quiet machine; shared CI machines add noise, hence the margin here.
    assert min(result["ratio_cpu"], result["ratio_wall"]) <= 6.0, result
