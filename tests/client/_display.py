"""A private virtual X server (Xvfb) for the Tk wizard, and screenshots kept as test artefacts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from licensor.client import LicenseClient


def start_display() -> Iterator[str]:
    if shutil.which("Xvfb") is None:
        pytest.fail(
            "Xvfb is needed for the Tk wizard tests: scripts/ensure-system-deps.sh installs it "
            "(make test runs it)"
        )
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    try:
        yield f":{number}"
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        xvfb.terminate()
        xvfb.wait(10)


def artefacts_dir() -> Path:
    base = os.environ.get("LICENSOR_TEST_ARTEFACTS") or "/tmp/licensor-test-artefacts"
    path = Path(base) / "wizard"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(display: str, name: str) -> Path | None:
    if not (shutil.which("xwd") and shutil.which("xwdtopnm") and shutil.which("pnmtopng")):
        return None
    target = artefacts_dir() / f"{name}.png"
    xwd = subprocess.run(
        ["xwd", "-root", "-silent", "-display", display], capture_output=True, check=True
    )
    pnm = subprocess.run(["xwdtopnm"], input=xwd.stdout, capture_output=True, check=True)
    png = subprocess.run(["pnmtopng"], input=pnm.stdout, capture_output=True, check=True)
    target.write_bytes(png.stdout)
    return target


def settle(root: Any, window: Any, seconds: float = 30.0) -> None:
    """Let the window run until its call to the server is done (it runs in a thread)."""
    deadline = time.monotonic() + seconds
    while True:
        root.update()
        if not window.busy:
            return
        assert time.monotonic() < deadline, "the wizard is still waiting for the server"
        time.sleep(0.01)


def drive_tk_wizard(client: LicenseClient, display: str, prefix: str, key: str) -> None:
    """Use every page of the Tk wizard as a person would, keeping a screenshot of each."""
    tk = pytest.importorskip("tkinter")
    from licensor.client._wizard_tk import WizardWindow

    root = tk.Tk()
    answers: list[str] = []

    def confirm(text: str) -> bool:
        answers.append(text)
        return True

    window = WizardWindow(root, client, confirm=confirm)
    window.use_user_login(client.product_details().user_based)
    shots: list[Path | None] = []

    def show(index: int, name: str) -> None:
        window.pages.select(index)
        for _ in range(5):
            root.update()
        settle(root, window)  # (the status page asks the client when it is shown)
        shots.append(screenshot(display, f"{prefix}-{name}"))

    def press(button: Any) -> None:
        button.invoke()
        settle(root, window)

    try:
        window.key_entry.insert(0, "NO-SUCH-KEY")
        press(window.activate_button)
        assert "No license matches" in str(window.activate_message.cget("text"))
        assert window.last_exit == 3
        show(0, "0-activate-refused")
        window.key_entry.delete(0, "end")
        window.key_entry.insert(0, key)
        press(window.activate_button)
        assert "This computer is activated" in str(window.activate_message.cget("text"))
        assert window.last_exit == 0
        show(0, "1-activate")

        show(1, "2-status")
        status = window.status_text.get("1.0", "end")
        assert "Active" in status and key in status

        show(2, "3-deactivate-before")
        press(window.deactivate_button)
        assert answers == [f"Deactivate {key} on this computer?"]
        assert "is deactivated" in str(window.deactivate_message.cget("text"))
        show(2, "4-deactivated")
        press(window.refresh_button)
        assert "no activated license" in window.status_text.get("1.0", "end")
        show(1, "5-status-after")
    finally:
        root.destroy()
    for shot in shots:
        if shot is not None:
            assert shot.stat().st_size > 1000  # a real picture of the page
