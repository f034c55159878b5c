"""The License Wizard's Tk window: Activate, Status, Deactivate and Without internet pages
(tkinter ships with Python).

Every call to the server runs in a thread of its own, so the window keeps redrawing and answering
while it waits (a slow network would otherwise freeze it: "Not responding"); the action buttons
are disabled meanwhile, and the outcome is shown from Tk's own thread.
"""

from __future__ import annotations

import threading
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import filedialog, messagebox, ttk
from typing import Any, TypeVar

from licensor.client._client import LicenseClient
from licensor.client._errors import LicenseRefused, LicensorError
from licensor.client._license import License, UserLicense
from licensor.client._wizard_text import (
    EXIT_OK,
    EXIT_USAGE,
    RELEASE_FILE,
    REQUEST_FILE,
    describe,
    exit_code,
    explain,
    license_choice,
)

T = TypeVar("T")

_POLL_MS = 30  # how often Tk's thread looks whether the server's answer is in


class WizardWindow:
    """One window, three pages; each action sets ``last_exit`` like the terminal wizard."""

    def __init__(
        self,
        root: tk.Tk,
        client: LicenseClient,
        *,
        confirm: Callable[[str], bool] | None = None,
        save_as: Callable[[str], str] | None = None,
        open_file: Callable[[], str] | None = None,
    ) -> None:
        self.root = root
        self.client = client
        self.confirm = confirm or (lambda text: messagebox.askyesno("Deactivate", text))
        # the file dialogs ("" when the person cancels); tests give their own
        self.save_as = save_as or (
            lambda name: filedialog.asksaveasfilename(initialfile=name, parent=root)
        )
        self.open_file = open_file or (
            lambda: filedialog.askopenfilename(
                parent=root, filetypes=[("License files", "*.lic"), ("All files", "*")]
            )
        )
        self.last_exit = EXIT_OK
        self.busy = False
        root.title(f"License Wizard — {client.product}")
        root.minsize(520, 320)
        self.pages = ttk.Notebook(root)
        self.pages.pack(fill="both", expand=True, padx=8, pady=8)
        self.user_based = False

        self.activate_page = ttk.Frame(self.pages)
        self.pages.add(self.activate_page, text="Activate online")
        self.intro = ttk.Label(
            self.activate_page,
            text="Enter the license key you received, then press Activate.",
        )
        self.intro.grid(row=0, column=0, columnspan=2, sticky="w", padx=12, pady=6)
        self.key_label = ttk.Label(self.activate_page, text="License key")
        self.key_label.grid(row=1, column=0, sticky="w", padx=12, pady=6)
        self.key_entry = ttk.Entry(self.activate_page, width=40)
        self.key_entry.grid(row=1, column=1, sticky="we", padx=12, pady=6)
        self.password_label = ttk.Label(self.activate_page, text="Password")
        self.password_entry = ttk.Entry(self.activate_page, width=40, show="•")
        # a user of several licenses picks one (shown once the server listed them)
        self.choice_label = ttk.Label(self.activate_page, text="License")
        self.choice_box = ttk.Combobox(self.activate_page, width=56, state="readonly")
        self.held: list[UserLicense] = []
        self.activate_button = ttk.Button(
            self.activate_page, text="Activate", command=self.activate
        )
        self.activate_button.grid(row=3, column=1, sticky="e", padx=12, pady=6)
        self.activate_message = ttk.Label(self.activate_page, text="", wraplength=460)
        self.activate_message.grid(row=4, column=0, columnspan=2, sticky="w", padx=12, pady=6)

        self.status_page = ttk.Frame(self.pages)
        self.pages.add(self.status_page, text="License status")
        self.status_text = tk.Text(self.status_page, height=10, width=60, relief="flat")
        self.status_text.pack(fill="both", expand=True, padx=12, pady=6)
        self.refresh_button = ttk.Button(self.status_page, text="Refresh", command=self.refresh)
        self.refresh_button.pack(anchor="e", padx=12, pady=6)

        self.deactivate_page = ttk.Frame(self.pages)
        self.pages.add(self.deactivate_page, text="Deactivate")
        ttk.Label(
            self.deactivate_page,
            text="Deactivate this computer to move the license to another one.",
            wraplength=460,
        ).pack(anchor="w", padx=12, pady=6)
        self.deactivate_button = ttk.Button(
            self.deactivate_page, text="Deactivate this computer", command=self.deactivate
        )
        self.deactivate_button.pack(anchor="w", padx=12, pady=6)
        self.deactivate_message = ttk.Label(self.deactivate_page, text="", wraplength=460)
        self.deactivate_message.pack(anchor="w", padx=12, pady=6)

        self.offline_page = ttk.Frame(self.pages)
        self.pages.add(self.offline_page, text="Without internet")
        upload = client.server.rstrip("/") + "/offline"
        ttk.Label(
            self.offline_page,
            text="For a computer without internet: save a request file, upload it at "
            f"{upload} from a computer that has internet (or send it to the vendor), then "
            "open the license file you get back.",
            wraplength=480,
        ).grid(row=0, column=0, columnspan=2, sticky="w", padx=12, pady=6)
        ttk.Label(self.offline_page, text="License key").grid(
            row=1, column=0, sticky="w", padx=12, pady=6
        )
        self.offline_key_entry = ttk.Entry(self.offline_page, width=40)
        self.offline_key_entry.grid(row=1, column=1, sticky="we", padx=12, pady=6)
        self.request_button = ttk.Button(
            self.offline_page, text="Save request file…", command=self.save_request
        )
        self.request_button.grid(row=2, column=1, sticky="e", padx=12, pady=4)
        self.license_file_button = ttk.Button(
            self.offline_page, text="Open license file…", command=self.open_license_file
        )
        self.license_file_button.grid(row=3, column=1, sticky="e", padx=12, pady=4)
        self.offline_deactivate_button = ttk.Button(
            self.offline_page,
            text="Deactivate without internet…",
            command=self.deactivate_offline,
        )
        self.offline_deactivate_button.grid(row=4, column=1, sticky="e", padx=12, pady=4)
        self.offline_message = ttk.Label(self.offline_page, text="", wraplength=480)
        self.offline_message.grid(row=5, column=0, columnspan=2, sticky="w", padx=12, pady=6)

        self.pages.bind("<<NotebookTabChanged>>", self._tab_changed)

    def use_user_login(self, user_based: bool) -> None:
        """User-based products ask for a username and password instead of a key."""
        self.user_based = user_based
        if user_based:
            self.intro.configure(
                text="Sign in with your username and password, then press Activate."
            )
            self.key_label.configure(text="Username (e-mail)")
            self.password_label.grid(row=2, column=0, sticky="w", padx=12, pady=6)
            self.password_entry.grid(row=2, column=1, sticky="we", padx=12, pady=6)
        else:
            self.intro.configure(text="Enter the license key you received, then press Activate.")
            self.key_label.configure(text="License key")
            self.password_label.grid_remove()
            self.password_entry.grid_remove()

    def show_choices(self, held: list[UserLicense]) -> None:
        """List the user's licenses to pick from (the first one selected)."""
        self.held = held
        self.choice_box.configure(values=[license_choice(found) for found in held])
        self.choice_box.current(0)
        self.choice_label.grid(row=3, column=0, sticky="w", padx=12, pady=6)
        self.choice_box.grid(row=3, column=1, sticky="we", padx=12, pady=6)
        self.activate_button.grid(row=5, column=1, sticky="e", padx=12, pady=6)
        self.activate_message.grid(row=6, column=0, columnspan=2, sticky="w", padx=12, pady=6)
        self.activate_message.configure(
            text=f"You hold {len(held)} licenses of this product: pick the one this "
            "computer should use, then press Activate.",
            foreground="",
        )

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        state = "disabled" if busy else "normal"
        for button in (
            self.activate_button,
            self.refresh_button,
            self.deactivate_button,
            self.request_button,
            self.license_file_button,
            self.offline_deactivate_button,
        ):
            button.configure(state=state)
        self.root.configure(cursor="watch" if busy else "")

    def _in_background(
        self,
        work: Callable[[], T],
        done: Callable[[T | None, LicensorError | None], None],
    ) -> None:
        """``work`` (a call to the server) in a thread; then ``done(result, error)`` on Tk's
        thread. One at a time: the buttons stay disabled until it is done."""
        self._set_busy(True)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = work()
            except LicensorError as exc:
                outcome["error"] = exc
            except Exception as exc:  # shown, not lost in a thread
                outcome["crash"] = exc

        thread = threading.Thread(target=run, name="license-wizard", daemon=True)
        thread.start()

        def collect() -> None:
            if thread.is_alive():
                self.root.after(_POLL_MS, collect)
                return
            self._set_busy(False)
            crash = outcome.get("crash")
            if crash is not None:
                self.last_exit = exit_code(crash)
                messagebox.showerror("License Wizard", f"Unexpected error: {crash}")
                return
            done(outcome.get("result"), outcome.get("error"))

        self.root.after(_POLL_MS, collect)

    def _tab_changed(self, _event: object) -> None:
        if self.pages.index(self.pages.select()) == 1 and not self.busy:  # type: ignore[no-untyped-call]
            self.refresh()

    def activate(self) -> None:
        value = self.key_entry.get().strip()
        if not value:
            self.activate_message.configure(text="Please enter your license key.")
            return
        password = self.password_entry.get()
        self.activate_message.configure(text="Activating...", foreground="")

        # (the thread gets the client, not the window: Tk objects must die on Tk's thread)
        client, user_based = self.client, self.user_based
        chosen = self.held[self.choice_box.current()].id if self.held else None

        def work() -> License | list[UserLicense]:
            if not user_based:
                return client.activate(license_key=value)
            if chosen is None:
                held = _held_licenses(client, value, password)
                if len(held) > 1:
                    return held  # (the person picks one, then presses Activate again)
            return client.activate(username=value, password=password, license_id=chosen)

        def done(license_: License | list[UserLicense] | None, error: LicensorError | None) -> None:
            if isinstance(license_, list):
                self.show_choices(license_)
                return
            if error is not None:
                self.last_exit = exit_code(error)
                code = f" (server code: {error.code})" if isinstance(error, LicenseRefused) else ""
                self.activate_message.configure(text=explain(error) + code, foreground="#b00020")
                return
            assert license_ is not None
            self.last_exit = EXIT_OK
            lines = ["This computer is activated."]
            lines += [f"{name}: {text}" for name, text in describe(license_)[:4]]
            self.activate_message.configure(text="\n".join(lines), foreground="#1b5e20")

        self._in_background(work, done)

    def refresh(self) -> None:
        def done(license_: License | None, error: LicensorError | None) -> None:
            if error is not None:
                self.last_exit = exit_code(error)
                text = explain(error)
            else:
                assert license_ is not None
                self.last_exit = EXIT_OK
                text = "\n".join(f"{name:<18} {value}" for name, value in describe(license_))
            self.status_text.configure(state="normal")
            self.status_text.delete("1.0", "end")
            self.status_text.insert("1.0", text)
            self.status_text.configure(state="disabled")

        self._in_background(self.client.validate, done)

    def deactivate(self) -> None:
        try:
            stored = self.client.stored_license()
        except LicensorError as exc:
            self.deactivate_message.configure(text=explain(exc))
            stored = None
        if stored is None:
            self.deactivate_message.configure(text="This computer has no activated license.")
            return
        name = stored.license_key or stored.username
        if not self.confirm(f"Deactivate {name} on this computer?"):
            self.deactivate_message.configure(text="Nothing was changed.")
            return
        self.deactivate_message.configure(text="Deactivating...", foreground="")

        def done(_result: None, error: LicensorError | None) -> None:
            if error is not None:
                self.last_exit = exit_code(error)
                self.deactivate_message.configure(text=explain(error), foreground="#b00020")
                return
            self.last_exit = EXIT_OK
            self.deactivate_message.configure(
                text="This computer is deactivated. You can now activate the license on another "
                "computer.",
                foreground="#1b5e20",
            )

        self._in_background(self.client.deactivate, done)

    # -- without internet (files on this computer: nothing waits for a server) ---------------

    def _offline_says(self, text: str, *, ok: bool) -> None:
        self.offline_message.configure(text=text, foreground="#1b5e20" if ok else "#b00020")

    def _offline_failed(self, error: Exception) -> None:
        if isinstance(error, OSError):
            self.last_exit = EXIT_USAGE
            self._offline_says(f"The file cannot be used: {error.strerror or error}.", ok=False)
        else:
            self.last_exit = exit_code(error)
            self._offline_says(explain(error), ok=False)

    def save_request(self) -> None:
        key = self.offline_key_entry.get().strip()
        if not key:
            self._offline_says("Please enter your license key.", ok=False)
            return
        path = self.save_as(REQUEST_FILE)
        if not path:
            return
        try:
            written = self.client.offline_activation_request(path, key)
        except (OSError, LicensorError) as exc:
            self._offline_failed(exc)
            return
        self.last_exit = EXIT_OK
        self._offline_says(
            f"Saved {Path(written).name}. Upload it from a computer with internet, then open "
            "the license file you get back.",
            ok=True,
        )

    def open_license_file(self) -> None:
        path = self.open_file()
        if not path:
            return
        try:
            license_ = self.client.activate_offline(path)
        except (OSError, LicensorError) as exc:
            self._offline_failed(exc)
            return
        self.last_exit = EXIT_OK
        lines = ["This computer is activated."]
        lines += [f"{name}: {text}" for name, text in describe(license_)[:4]]
        self._offline_says("\n".join(lines), ok=True)

    def deactivate_offline(self) -> None:
        try:
            stored = self.client.stored_license()
        except LicensorError as exc:
            self._offline_failed(exc)
            return
        if stored is None:
            self._offline_says("This computer has no activated license.", ok=False)
            return
        name = stored.license_key or stored.username
        if not self.confirm(
            f"Remove {name} from this computer and save the file that frees its seat?"
        ):
            self._offline_says("Nothing was changed.", ok=True)
            return
        path = self.save_as(RELEASE_FILE)
        if not path:
            self._offline_says("Nothing was changed.", ok=True)
            return
        try:
            written = self.client.offline_deactivation_request(path)
        except (OSError, LicensorError) as exc:
            self._offline_failed(exc)
            return
        self.last_exit = EXIT_OK
        self._offline_says(
            f"The license is removed from this computer. Upload {Path(written).name} from a "
            "computer with internet to free its seat.",
            ok=True,
        )


def _held_licenses(client: LicenseClient, username: str, password: str) -> list[UserLicense]:
    """The user's licenses of the product (none when the server cannot list them: then the
    activation picks); a wrong password is the activation's refusal to show."""
    try:
        return client.user_licenses(username, password, timeout=10)
    except LicensorError as exc:
        if isinstance(exc, LicenseRefused) and exc.code == "invalid_credentials":
            raise
        return []


def run_window(client: LicenseClient) -> int:
    root = tk.Tk()
    window = WizardWindow(root, client)
    window.use_user_login(False)

    def asked(details: Any, error: LicensorError | None) -> None:
        # (the page asks for a key until the server says the product is user-based)
        window.use_user_login(error is None and bool(details.user_based))

    window._in_background(lambda: client.product_details(timeout=5), asked)
    root.mainloop()
    return window.last_exit
