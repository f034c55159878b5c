"""`pip install licensor` is enough: the client pulls in no server package, and no network code
until a call goes online."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CLIENT = SRC / "licensor" / "client"
SERVER_PACKAGES = {
    "fastapi", "sqlalchemy", "pydantic", "pydantic_settings", "starlette", "orjson", "argon2",
    "alembic", "uvicorn", "typer", "rich", "jwt", "psycopg", "packaging",
}  # fmt: skip
BASE_DEPENDENCIES = {"cryptography", "httpx", "platformdirs"}
LICENSOR_ALLOWED = ("licensor.client", "licensor.protocol")


def modules_after(code: str) -> set[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import licensor.client",
        "import licensor.client.hardware",
        "import licensor.client.wizard",
        "from licensor.client import *",
    ],
)
def test_importing_the_client_pulls_in_no_server_package(code: str) -> None:
    loaded = modules_after(code)
    top_level = {name.split(".")[0] for name in loaded}
    assert top_level & SERVER_PACKAGES == set()
    licensor_modules = {n for n in loaded if n.startswith("licensor.")}
    assert all(n.startswith(LICENSOR_ALLOWED) for n in licensor_modules), licensor_modules
    assert "tkinter" not in top_level


def test_no_network_code_until_a_call_goes_online() -> None:
    loaded = modules_after("import licensor.client")
    assert {"httpx", "httpcore", "h11", "ssl", "asyncio"} & loaded == set()


def test_every_import_in_the_client_is_stdlib_or_a_base_dependency() -> None:
    """Also the lazy ones inside functions: a static check over the source."""
    allowed_extra = {"_wizard_tk.py": {"tkinter"}, "wizard.py": {"rich"}}
    problems = []
    for path in sorted(CLIENT.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "licensor":
                    if name != "licensor" and not name.startswith(LICENSOR_ALLOWED):
                        problems.append(f"{path.name}: {name}")
                elif (
                    top not in sys.stdlib_module_names
                    and top not in BASE_DEPENDENCIES
                    and top not in allowed_extra.get(path.name, set())
                ):
                    problems.append(f"{path.name}: {name}")
    assert problems == []


def test_public_names() -> None:
    import licensor.client as client

    assert sorted(client.__all__) == sorted(set(client.__all__))
    for name in client.__all__:
        assert hasattr(client, name), name
    private = [p.name for p in CLIENT.glob("*.py") if p.name not in ("__init__.py",)]
    assert set(private) - {"hardware.py", "wizard.py"} == {p for p in private if p.startswith("_")}
    assert (SRC / "licensor" / "py.typed").exists()


def test_wizard_console_script_is_declared() -> None:
    import tomllib

    from licensor.client import wizard

    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["licensor-wizard"] == "licensor.client.wizard:main"
    assert callable(wizard.main)
    assert set(pyproject["project"]["dependencies"]) >= {"cryptography>=42", "httpx>=0.27"}


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "licensor-wizard"
    if not script.exists():
        pytest.skip("the package is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "Exit codes" in result.stdout
