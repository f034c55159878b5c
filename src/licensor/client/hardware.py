"""Hardware identity (the ComputerID): bindings, the recommended chain, VM and container detection.

``hardware_id()`` is the SHA-256 hex digest of the chosen binding names and values — raw serials
never leave the computer. A binding that cannot be read raises ``BindingUnavailable`` naming it,
never an empty identifier. The bindings that feed ``hardware_id`` read files (or, on macOS and
Windows, run a system tool with a timeout) and never depend on the network.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any

from licensor.client._errors import BindingUnavailable

__all__ = [
    "Binding",
    "BindingUnavailable",
    "container_info",
    "device_facts",
    "hardware_id",
    "hostname",
    "ip_local",
    "is_container",
    "is_vm",
    "mac_address",
    "os_ver",
    "read_binding",
    "recommended_binding",
    "vm_info",
]

HARDWARE_ID_PREFIX = "licensor-hardware-id-v1"
SUBPROCESS_TIMEOUT = 5.0


class Binding(StrEnum):
    """What the ComputerID is computed from (DECISIONS §6)."""

    COMPUTER_NAME = "computer_name"
    MAC_ADDRESS = "mac_address"
    VOLUME_SERIAL = "volume_serial"
    MOTHERBOARD_SERIAL = "motherboard_serial"
    SMBIOS_UUID = "smbios_uuid"
    MACHINE_ID = "machine_id"
    USER = "user"
    CONTAINER = "container"
    USER_DEFINED = "user_defined"
    RECOMMENDED = "recommended"


# Values firmware vendors leave in place of a real serial: not unique, so not an identity.
_PLACEHOLDERS = {
    "",
    "0",
    "none",
    "null",
    "n/a",
    "na",
    "unknown",
    "default string",
    "to be filled by o.e.m.",
    "to be filled by oem",
    "system serial number",
    "base board serial number",
    "not specified",
    "not applicable",
    "not available",
    "chassis serial number",
    "serial",
    "123456789",
    "0123456789",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
}

_VM_VENDORS = (
    ("vmware", "VMware"),
    ("virtualbox", "VirtualBox"),
    ("innotek", "VirtualBox"),
    ("qemu", "QEMU"),
    ("kvm", "KVM"),
    ("bochs", "Bochs"),
    ("xen", "Xen"),
    ("parallels", "Parallels"),
    ("virtual machine", "Hyper-V"),
    ("hyper-v", "Hyper-V"),
    ("amazon ec2", "Amazon EC2"),
    ("google compute engine", "Google Compute Engine"),
    ("openstack", "OpenStack"),
    ("bhyve", "bhyve"),
    ("virtualmac", "Apple Virtualization"),
    ("firecracker", "Firecracker"),
    ("cloud hypervisor", "Cloud Hypervisor"),
)

_VIRTUAL_INTERFACES = re.compile(
    r"^(lo|docker|veth|br-|virbr|vmnet|vboxnet|ifb|tun|tap|wg|zt|dummy|bond|team|cni|flannel|"
    r"cali|vxlan|kube|utun|awdl|llw|bridge|gif|stf|anpi|ap\d)"
)
_MAC = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$", re.IGNORECASE)


# --------------------------------------------------------------------------- small readers


def _clean(binding: Binding, value: str | None, source: str) -> str:
    text = (value or "").strip().strip("\x00").strip()
    if text.lower() in _PLACEHOLDERS:
        raise BindingUnavailable(binding, f"{source} holds no unique value")
    return text


def _text(path: str | os.PathLike[str]) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _read_file(binding: Binding, path: str | os.PathLike[str]) -> str:
    try:
        return _clean(binding, _text(path), os.fspath(path))
    except PermissionError as exc:
        raise BindingUnavailable(binding, f"{path} needs administrator rights") from exc
    except OSError as exc:
        raise BindingUnavailable(binding, f"{path} cannot be read ({exc.strerror})") from exc


def _run(binding: Binding | str, args: Sequence[str], timeout: float = SUBPROCESS_TIMEOUT) -> str:
    import subprocess

    try:
        completed = subprocess.run(  # noqa: S603 - fixed argument lists, no shell
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise BindingUnavailable(binding, f"{args[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise BindingUnavailable(binding, f"{args[0]} did not answer in {timeout:g} s") from exc
    except OSError as exc:
        raise BindingUnavailable(binding, f"{args[0]} could not run ({exc})") from exc
    if completed.returncode != 0:
        raise BindingUnavailable(binding, f"{args[0]} exited with {completed.returncode}")
    return completed.stdout


def _first(binding: Binding, readers: Iterable[Callable[[], str]]) -> str:
    reasons: list[str] = []
    for reader in readers:
        try:
            return reader()
        except BindingUnavailable as exc:
            reasons.append(exc.reason)
    raise BindingUnavailable(binding, "; ".join(reasons) or "not supported on this system")


# --------------------------------------------------------------------------- output parsers
# Pure functions over the text a system tool prints; tested on captured samples of each OS.


def parse_ioreg_platform(output: str) -> dict[str, str]:
    """``ioreg -rd1 -c IOPlatformExpertDevice``: ``"Key" = "value"`` (or ``<"value">``) lines."""
    found: dict[str, str] = {}
    for match in re.finditer(r'^\s*"([^"]+)"\s*=\s*<?"([^"]*)">?\s*$', output, re.MULTILINE):
        found.setdefault(match.group(1), match.group(2))
    return found


def parse_diskutil_volume_uuid(output: str) -> str | None:
    """``diskutil info /``: the ``Volume UUID:`` line."""
    match = re.search(r"^\s*Volume UUID:\s*([0-9A-Fa-f-]{36})\s*$", output, re.MULTILINE)
    return match.group(1) if match else None


def parse_ifconfig_ether(output: str) -> str | None:
    """``ifconfig en0``: the ``ether xx:xx:..`` line."""
    match = re.search(r"^\s*ether\s+([0-9a-fA-F:]{17})\b", output, re.MULTILINE)
    return match.group(1).lower() if match else None


def parse_wmic_value(output: str) -> str | None:
    """``wmic <class> get <property>``: a header line, then the value (blank lines around)."""
    lines = [line.strip() for line in output.replace("\r", "").splitlines() if line.strip()]
    return lines[1] if len(lines) >= 2 else None


def parse_powershell_value(output: str) -> str | None:
    """``powershell -Command (Get-CimInstance ...).Property``: the first non-empty line."""
    for line in output.replace("\r", "").splitlines():
        if line.strip():
            return line.strip()
    return None


def parse_powershell_list(output: str) -> dict[str, str]:
    """``... | Format-List``: ``Name : value`` lines."""
    found: dict[str, str] = {}
    for line in output.replace("\r", "").splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            found.setdefault(name.strip(), value.strip())
    return found


def parse_reg_machine_guid(output: str) -> str | None:
    """``reg query HKLM\\SOFTWARE\\Microsoft\\Cryptography /v MachineGuid``."""
    match = re.search(r"MachineGuid\s+REG_SZ\s+([0-9A-Fa-f-]{36})", output)
    return match.group(1) if match else None


def parse_vol_serial(output: str) -> str | None:
    """``vol C:``: the ``XXXX-XXXX`` serial, whatever the display language."""
    match = re.search(r"\b([0-9A-F]{4}-[0-9A-F]{4})\s*$", output.strip(), re.MULTILINE)
    return match.group(1) if match else None


def parse_getmac_csv(output: str) -> str | None:
    """``getmac /fo csv /nh``: the first adapter with a MAC and a transport."""
    for line in output.replace("\r", "").splitlines():
        cells = [cell.strip().strip('"') for cell in line.split('","')]
        if len(cells) >= 2 and _MAC.match(cells[0]) and "disconnected" not in cells[1].lower():
            return cells[0].replace("-", ":").lower()
    return None


def parse_mountinfo_root(output: str) -> tuple[int, int, str] | None:
    """``/proc/self/mountinfo``: (major, minor, source device) of the ``/`` mount."""
    for line in output.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or fields[4] != "/":
            continue
        major, _, minor = fields[2].partition(":")
        source = right.split()[1] if len(right.split()) > 1 else ""
        return int(major), int(minor), source
    return None


def dmi_vm_vendor(strings: Iterable[str]) -> str | None:
    """Name the hypervisor whose vendor or product string appears (DMI, WMI or ioreg)."""
    for text in strings:
        lowered = text.lower()
        for needle, name in _VM_VENDORS:
            if needle in lowered:
                return name
    return None


def parse_container_id(text: str) -> str | None:
    """A 64-hex container id from ``/proc/self/cgroup`` or ``/proc/self/mountinfo``."""
    match = re.search(
        r"(?:docker|containers|crio|containerd|libpod|cri-containerd)[-/:]([0-9a-f]{64})", text
    )
    return match.group(1) if match else None


# --------------------------------------------------------------------------- bindings per OS


def _linux_machine_id() -> str:
    return _first(
        Binding.MACHINE_ID,
        [
            lambda: _read_file(Binding.MACHINE_ID, "/etc/machine-id"),
            lambda: _read_file(Binding.MACHINE_ID, "/var/lib/dbus/machine-id"),
        ],
    )


def _linux_volume_serial() -> str:
    binding = Binding.VOLUME_SERIAL
    try:
        root = parse_mountinfo_root(_text("/proc/self/mountinfo"))
    except OSError as exc:
        raise BindingUnavailable(binding, "/proc/self/mountinfo cannot be read") from exc
    if root is None:
        raise BindingUnavailable(binding, "the root file system is not in /proc/self/mountinfo")
    major, minor, source = root
    by_uuid = "/dev/disk/by-uuid"
    if os.path.isdir(by_uuid):
        for name in sorted(os.listdir(by_uuid)):
            link = os.path.join(by_uuid, name)
            try:
                st_rdev = os.stat(link).st_rdev
            except OSError:
                continue
            if os.major(st_rdev) == major and os.minor(st_rdev) == minor:
                return _clean(binding, name, link)
    if source.startswith("/dev/"):
        return _ext_superblock_uuid(source)
    raise BindingUnavailable(binding, f"no file system UUID for the root device {source or '?'}")


def _ext_superblock_uuid(device: str) -> str:
    """Read the UUID of an ext2/3/4 file system from its superblock (needs read access)."""
    binding = Binding.VOLUME_SERIAL
    try:
        with open(device, "rb") as handle:
            handle.seek(1024)
            block = handle.read(136)
    except PermissionError as exc:
        raise BindingUnavailable(binding, f"{device} needs administrator rights") from exc
    except OSError as exc:
        raise BindingUnavailable(binding, f"{device} cannot be read ({exc.strerror})") from exc
    if len(block) < 136 or block[0x38:0x3A] != b"\x53\xef":
        raise BindingUnavailable(binding, f"{device} is not an ext file system")
    raw = block[0x68:0x78].hex()
    return _clean(binding, f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}", device)


def _linux_mac() -> str:
    binding = Binding.MAC_ADDRESS
    net = "/sys/class/net"
    candidates: list[tuple[int, str, str]] = []
    try:
        interfaces = sorted(os.listdir(net))
    except OSError as exc:
        raise BindingUnavailable(binding, "/sys/class/net cannot be read") from exc
    for interface in interfaces:
        if _VIRTUAL_INTERFACES.match(interface):
            continue
        try:
            address = _text(os.path.join(net, interface, "address")).strip().lower()
        except OSError:
            continue
        if not _MAC.match(address) or address == "00:00:00:00:00:00":
            continue
        physical = 0 if os.path.exists(os.path.join(net, interface, "device")) else 1
        candidates.append((physical, interface, address))
    if not candidates:
        raise BindingUnavailable(binding, "no network adapter with a hardware address")
    return min(candidates)[2]


def _mac_ioreg() -> dict[str, str]:
    return parse_ioreg_platform(
        _run(Binding.SMBIOS_UUID, ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"])
    )


def _mac_platform_value(binding: Binding, key: str) -> str:
    value = _mac_ioreg().get(key)
    if value is None:
        raise BindingUnavailable(binding, f"ioreg does not report {key}")
    return _clean(binding, value, "ioreg")


def _mac_volume_serial() -> str:
    value = parse_diskutil_volume_uuid(_run(Binding.VOLUME_SERIAL, ["diskutil", "info", "/"]))
    if value is None:
        raise BindingUnavailable(Binding.VOLUME_SERIAL, "diskutil reports no Volume UUID")
    return value


def _mac_mac() -> str:
    value = parse_ifconfig_ether(_run(Binding.MAC_ADDRESS, ["ifconfig", "en0"]))
    if value is None:
        raise BindingUnavailable(Binding.MAC_ADDRESS, "en0 has no hardware address")
    return value


def _powershell(binding: Binding | str, expression: str) -> str:
    return _run(
        binding,
        ["powershell", "-NoProfile", "-NonInteractive", "-Command", expression],
    )


def _windows_cim(binding: Binding, cim_class: str, prop: str, wmic: Sequence[str]) -> str:
    def via_powershell() -> str:
        output = _powershell(binding, f"(Get-CimInstance -ClassName {cim_class}).{prop}")
        return _clean(binding, parse_powershell_value(output), cim_class)

    def via_wmic() -> str:
        return _clean(binding, parse_wmic_value(_run(binding, ["wmic", *wmic])), "wmic")

    return _first(binding, [via_powershell, via_wmic])


def _windows_machine_guid() -> str:
    binding = Binding.MACHINE_ID

    def via_winreg() -> str:
        try:
            import winreg
        except ImportError as exc:
            raise BindingUnavailable(binding, "winreg is not available") from exc
        try:
            key = winreg.OpenKey(  # type: ignore[attr-defined,unused-ignore]
                winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined,unused-ignore]
                r"SOFTWARE\Microsoft\Cryptography",
                0,
                winreg.KEY_READ | winreg.KEY_WOW64_64KEY,  # type: ignore[attr-defined,unused-ignore]
            )
            with key:
                value = winreg.QueryValueEx(key, "MachineGuid")[0]  # type: ignore[attr-defined,unused-ignore]
        except OSError as exc:
            raise BindingUnavailable(binding, f"MachineGuid cannot be read ({exc})") from exc
        return _clean(binding, str(value), "MachineGuid")

    def via_reg() -> str:
        output = _run(
            binding, ["reg", "query", r"HKLM\SOFTWARE\Microsoft\Cryptography", "/v", "MachineGuid"]
        )
        return _clean(binding, parse_reg_machine_guid(output), "reg query")

    return _first(binding, [via_winreg, via_reg])


def _windows_volume_serial() -> str:
    binding = Binding.VOLUME_SERIAL
    drive = os.environ.get("SystemDrive", "C:")  # noqa: SIM112 - Windows spells it so

    def via_ctypes() -> str:
        import ctypes

        serial = ctypes.c_uint32()
        ok = ctypes.windll.kernel32.GetVolumeInformationW(  # type: ignore[attr-defined,unused-ignore]
            ctypes.c_wchar_p(drive + "\\"), None, 0, ctypes.byref(serial), None, None, None, 0
        )
        if not ok:
            raise BindingUnavailable(binding, f"GetVolumeInformationW failed for {drive}")
        return f"{serial.value >> 16:04X}-{serial.value & 0xFFFF:04X}"

    def via_vol() -> str:
        return _clean(binding, parse_vol_serial(_run(binding, ["cmd", "/c", "vol", drive])), "vol")

    return _first(binding, [via_ctypes, via_vol])


def _windows_mac() -> str:
    value = parse_getmac_csv(_run(Binding.MAC_ADDRESS, ["getmac", "/fo", "csv", "/nh"]))
    if value is None:
        raise BindingUnavailable(Binding.MAC_ADDRESS, "getmac reports no adapter")
    return value


def _computer_name() -> str:
    if hasattr(os, "uname"):  # the same name as socket.gethostname(), without importing socket
        return _clean(Binding.COMPUTER_NAME, os.uname().nodename, "the host name")
    import socket

    return _clean(Binding.COMPUTER_NAME, socket.gethostname(), "the host name")


def _user() -> str:
    import getpass

    try:
        return _clean(Binding.USER, getpass.getuser(), "the user name")
    except (OSError, KeyError) as exc:
        raise BindingUnavailable(Binding.USER, "the logged-in user is unknown") from exc


def _container() -> str:
    kind = container_info()
    if kind is None:
        raise BindingUnavailable(Binding.CONTAINER, "not running in a container")
    for source in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        try:
            found = parse_container_id(_text(source))
        except OSError:
            continue
        if found:
            return found
    return _computer_name()


def _system_readers() -> dict[Binding, Callable[[], str]]:
    if sys.platform.startswith("linux"):
        return {
            Binding.MACHINE_ID: _linux_machine_id,
            Binding.SMBIOS_UUID: lambda: _read_file(
                Binding.SMBIOS_UUID, "/sys/class/dmi/id/product_uuid"
            ).lower(),
            Binding.MOTHERBOARD_SERIAL: lambda: _read_file(
                Binding.MOTHERBOARD_SERIAL, "/sys/class/dmi/id/board_serial"
            ),
            Binding.VOLUME_SERIAL: _linux_volume_serial,
            Binding.MAC_ADDRESS: _linux_mac,
        }
    if sys.platform == "darwin":
        return {
            Binding.MACHINE_ID: lambda: _mac_platform_value(Binding.MACHINE_ID, "IOPlatformUUID"),
            Binding.SMBIOS_UUID: lambda: _mac_platform_value(
                Binding.SMBIOS_UUID, "IOPlatformUUID"
            ).lower(),
            Binding.MOTHERBOARD_SERIAL: lambda: _mac_platform_value(
                Binding.MOTHERBOARD_SERIAL, "IOPlatformSerialNumber"
            ),
            Binding.VOLUME_SERIAL: _mac_volume_serial,
            Binding.MAC_ADDRESS: _mac_mac,
        }
    if sys.platform == "win32":
        return {
            Binding.MACHINE_ID: _windows_machine_guid,
            Binding.SMBIOS_UUID: lambda: _windows_cim(
                Binding.SMBIOS_UUID,
                "Win32_ComputerSystemProduct",
                "UUID",
                ["csproduct", "get", "uuid"],
            ).lower(),
            Binding.MOTHERBOARD_SERIAL: lambda: _windows_cim(
                Binding.MOTHERBOARD_SERIAL,
                "Win32_BaseBoard",
                "SerialNumber",
                ["baseboard", "get", "serialnumber"],
            ),
            Binding.VOLUME_SERIAL: _windows_volume_serial,
            Binding.MAC_ADDRESS: _windows_mac,
        }
    return {}


# --------------------------------------------------------------------------- public API


def read_binding(binding: Binding | str, *, user_defined: str | None = None) -> str:
    """The raw value of one binding on this computer (``RECOMMENDED`` resolves the chain)."""
    binding = Binding(binding)
    if binding is Binding.RECOMMENDED:
        return read_binding(recommended_binding(), user_defined=user_defined)
    if binding is Binding.USER_DEFINED:
        if user_defined is None or not user_defined.strip():
            raise BindingUnavailable(binding, "no user-defined value was given")
        return user_defined.strip()
    if binding is Binding.COMPUTER_NAME:
        return _computer_name()
    if binding is Binding.USER:
        return _user()
    if binding is Binding.CONTAINER:
        return _container()
    reader = _system_readers().get(binding)
    if reader is None:
        raise BindingUnavailable(binding, f"not supported on {sys.platform}")
    return reader()


def recommended_binding() -> Binding:
    """The binding the recommended chain picks here.

    Container → computer name (the container's own); VM → SMBIOS UUID (clones differ there);
    otherwise the first readable of motherboard serial, machine id, volume serial, MAC, name.
    Detection uses files only, so the choice is stable from one start to the next.
    """
    if _container_kind_from_files() is not None:
        chain = [Binding.COMPUTER_NAME]
    else:
        chain = []
        if _vm_vendor_from_files() is not None:
            chain.append(Binding.SMBIOS_UUID)
        chain += [
            Binding.MOTHERBOARD_SERIAL,
            Binding.MACHINE_ID,
            Binding.VOLUME_SERIAL,
            Binding.MAC_ADDRESS,
            Binding.COMPUTER_NAME,
        ]
    reasons: list[str] = []
    for binding in chain:
        try:
            read_binding(binding)
        except BindingUnavailable as exc:
            reasons.append(str(exc))
            continue
        return binding
    raise BindingUnavailable(Binding.RECOMMENDED, "; ".join(reasons))


def resolve_bindings(bindings: Binding | str | Sequence[Binding | str]) -> list[Binding]:
    """Normalise a binding or a list of them; ``RECOMMENDED`` becomes the binding it picks."""
    items = [bindings] if isinstance(bindings, Binding | str) else list(bindings)
    if not items:
        raise ValueError("at least one binding is needed")
    resolved = [Binding(item) for item in items]
    return [recommended_binding() if b is Binding.RECOMMENDED else b for b in resolved]


def hardware_id(
    bindings: Binding | str | Sequence[Binding | str] = Binding.RECOMMENDED,
    *,
    user_defined: str | None = None,
) -> str:
    """SHA-256 hex of the chosen bindings' names and values; raises ``BindingUnavailable``."""
    parts = [HARDWARE_ID_PREFIX]
    for binding in resolve_bindings(bindings):
        value = read_binding(binding, user_defined=user_defined)
        parts.append(f"{binding.value}={value}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --------------------------------------------------------------------------- VM and containers


def _dmi_strings() -> list[str]:
    found = []
    for name in ("sys_vendor", "product_name", "board_vendor", "bios_vendor", "product_version"):
        try:
            found.append(_text(os.path.join("/sys/class/dmi/id", name)).strip())
        except OSError:
            continue
    return found


def _cpuinfo_hypervisor() -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "hypervisor" in line.split()
    except OSError:
        return False
    return False


def _vm_vendor_from_files() -> str | None:
    if not sys.platform.startswith("linux"):
        return _vm_vendor_from_tools() if sys.platform in ("darwin", "win32") else None
    vendor = dmi_vm_vendor(_dmi_strings())
    if vendor is not None:
        return vendor
    return "hypervisor" if _cpuinfo_hypervisor() else None


def _vm_vendor_from_tools() -> str | None:
    try:
        if sys.platform == "darwin":
            platform_info = _mac_ioreg()
            vendor = dmi_vm_vendor(
                [platform_info.get("model", ""), platform_info.get("manufacturer", "")]
            )
            if vendor:
                return vendor
            flag = _run("vm", ["sysctl", "-n", "kern.hv_vmm_present"]).strip()
            return "hypervisor" if flag == "1" else None
        if sys.platform == "win32":
            output = _powershell(
                "vm", "Get-CimInstance Win32_ComputerSystem | Format-List Manufacturer,Model"
            )
            return dmi_vm_vendor(parse_powershell_list(output).values())
    except BindingUnavailable:
        return None
    return None


def vm_info() -> str | None:
    """The hypervisor this computer runs under (``"KVM"``, ``"VMware"``, ...) or ``None``."""
    vendor = _vm_vendor_from_files()
    if sys.platform.startswith("linux"):
        try:
            output = _run("vm", ["systemd-detect-virt", "--vm"], timeout=2.0).strip()
        except BindingUnavailable:
            output = ""
        if output and output != "none":
            return output if vendor in (None, "hypervisor") else vendor
    return vendor


def is_vm() -> bool:
    return vm_info() is not None


def _container_kind_from_files() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    marker = os.environ.get("container")  # noqa: SIM112 - systemd sets it lower-case
    if marker:
        return marker
    try:
        cgroup = _text("/proc/1/cgroup")
    except OSError:
        cgroup = ""
    for needle in ("kubepods", "docker", "containerd", "libpod", "lxc"):
        if needle in cgroup:
            return "kubernetes" if needle == "kubepods" else needle
    return None


def container_info() -> str | None:
    """The container runtime this process runs in (``"docker"``, ``"podman"``, ...) or ``None``."""
    return _container_kind_from_files()


def is_container() -> bool:
    return container_info() is not None


# --------------------------------------------------------------------------- device facts


def hostname() -> str:
    import socket

    return socket.gethostname()


def os_ver() -> str:
    import platform

    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    if sys.platform == "win32":
        return f"Windows {platform.release()} ({platform.version()})"
    pretty = ""
    try:
        for line in _text("/etc/os-release").splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def ip_local() -> str | None:
    """The local address of the default route (a UDP "connect" sends no packet)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            return None
    return str(address)


def mac_address() -> str | None:
    try:
        return read_binding(Binding.MAC_ADDRESS)
    except BindingUnavailable:
        return None


def device_facts() -> dict[str, Any]:
    """The device facts the License API accepts with activations and checks."""
    vm = vm_info()
    facts: dict[str, Any] = {"is_vm": vm is not None, "vm_info": vm or ""}
    facts["os_ver"] = os_ver()
    facts["hostname"] = hostname()
    ip = ip_local()
    if ip:
        facts["ip_local"] = ip
    mac = mac_address()
    if mac:
        facts["mac_address"] = mac
    return facts
