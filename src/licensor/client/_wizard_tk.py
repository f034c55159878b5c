"""The License Wizard's Tk window: Activate, Status and Deactivate pages (tkinter ships with Python)."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import messagebox, ttk

from licensor.client._client import LicenseClient
from licensor.client._errors import LicenseRefused, LicensorError
from licensor.client.wizard import (
    EXIT_OK,
    describe,
    exit_code,
    explain,
)


class WizardWindow:
    """One window, three pages; each action sets ``last_exit`` like the terminal wizard."""

    def __init__(
        self,
        root: tk.Tk,
        client: LicenseClient,
        *,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = root
        self.client = client
        self.confirm = confirm or (lambda text: messagebox.askyesno("Deactivate", text))
        self.last_exit = EXIT_OK
        root.title(f"License Wizard — {client.product}")
        root.minsize(520, 320)
        self.pages = ttk.Notebook(root)
        self.pages.pack(fill="both", expand=True, padx=8, pady=8)
        self.user_based = False

        self.activate_page = ttk.Frame(self.pages)
        self.pages.add(self.activate_page, text="Activate online")
        ttk.Label(
            self.activate_page,
            text="Enter the license key you received, then press Activate.",
        ).grid(row=0, column=0, columnspan=2, sticky="w", padx=12, pady=6)
        self.key_label = ttk.Label(self.activate_page, text="License key")
        self.key_label.grid(row=1, column=0, sticky="w", padx=12, pady=6)
        self.key_entry = ttk.Entry(self.activate_page, width=40)
        self.key_entry.grid(row=1, column=1, sticky="we", padx=12, pady=6)
        self.password_label = ttk.Label(self.activate_page, text="Password")
        self.password_entry = ttk.Entry(self.activate_page, width=40, show="•")
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

        self.pages.bind("<<NotebookTabChanged>>", self._tab_changed)

    def use_user_login(self, user_based: bool) -> None:
        """User-based products ask for a username and password instead of a key."""
        self.user_based = user_based
        if user_based:
            self.key_label.configure(text="Username (e-mail)")
            self.password_label.grid(row=2, column=0, sticky="w", padx=12, pady=6)
            self.password_entry.grid(row=2, column=1, sticky="we", padx=12, pady=6)
        else:
            self.key_label.configure(text="License key")
            self.password_label.grid_remove()
            self.password_entry.grid_remove()

    def _busy(self, busy: bool) -> None:
        self.root.configure(cursor="watch" if busy else "")
        self.root.update_idletasks()

    def _tab_changed(self, _event: object) -> None:
        if self.pages.index(self.pages.select()) == 1:  # type: ignore[no-untyped-call]
            self.refresh()

    def activate(self) -> None:
        value = self.key_entry.get().strip()
        if not value:
            self.activate_message.configure(text="Please enter your license key.")
            return
        self._busy(True)
        try:
            if self.user_based:
                license_ = self.client.activate(username=value, password=self.password_entry.get())
            else:
                license_ = self.client.activate(license_key=value)
        except LicensorError as exc:
            self.last_exit = exit_code(exc)
            code = f" (server code: {exc.code})" if isinstance(exc, LicenseRefused) else ""
            self.activate_message.configure(text=explain(exc) + code, foreground="#b00020")
            return
        finally:
            self._busy(False)
        self.last_exit = EXIT_OK
        lines = ["This computer is activated."]
        lines += [f"{name}: {text}" for name, text in describe(license_)[:4]]
        self.activate_message.configure(text="\n".join(lines), foreground="#1b5e20")

    def refresh(self) -> None:
        self._busy(True)
        try:
            license_ = self.client.validate()
        except LicensorError as exc:
            self.last_exit = exit_code(exc)
            text = explain(exc)
        else:
            self.last_exit = EXIT_OK
            text = "\n".join(f"{name:<18} {value}" for name, value in describe(license_))
        finally:
            self._busy(False)
        self.status_text.configure(state="normal")
        self.status_text.delete("1.0", "end")
        self.status_text.insert("1.0", text)
        self.status_text.configure(state="disabled")

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
        self._busy(True)
        try:
            self.client.deactivate()
        except LicensorError as exc:
            self.last_exit = exit_code(exc)
            self.deactivate_message.configure(text=explain(exc), foreground="#b00020")
            return
        finally:
            self._busy(False)
        self.last_exit = EXIT_OK
        self.deactivate_message.configure(
            text="This computer is deactivated. You can now activate the license on another "
            "computer.",
            foreground="#1b5e20",
        )


def run_window(client: LicenseClient) -> int:
    root = tk.Tk()
    window = WizardWindow(root, client)
    try:
        window.use_user_login(client.product_details(timeout=5).user_based)
    except LicensorError:
        window.use_user_login(False)
    root.mainloop()
    return window.last_exit
