"""Hardware identity: real readings on this machine, and the other OSes' parsers on captured output."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from licensor.client import hardware
from licensor.client.hardware import Binding, BindingUnavailable

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux readings")


# --------------------------------------------------------------------------- this machine


def test_hardware_id_is_a_stable_sha256_of_the_chosen_binding() -> None:
    first = hardware.hardware_id()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert hardware.hardware_id() == first
    chosen = hardware.recommended_binding()
    assert hardware.hardware_id(chosen) == first
    assert hardware.read_binding(chosen) not in first  # never the raw serial


def test_different_bindings_give_different_ids() -> None:
    by_name = hardware.hardware_id(Binding.COMPUTER_NAME)
    by_user = hardware.hardware_id(Binding.USER)
    combined = hardware.hardware_id([Binding.COMPUTER_NAME, Binding.USER])
    assert len({by_name, by_user, combined}) == 3
    assert hardware.hardware_id(Binding.USER_DEFINED, user_defined="seat-7") != (
        hardware.hardware_id(Binding.USER_DEFINED, user_defined="seat-8")
    )


def test_computer_name_and_user_are_read() -> None:
    assert hardware.read_binding(Binding.COMPUTER_NAME) == socket.gethostname().strip()
    assert hardware.read_binding("user")


def test_user_defined_without_a_value_names_the_binding() -> None:
    with pytest.raises(BindingUnavailable) as missing:
        hardware.hardware_id(Binding.USER_DEFINED)
    assert missing.value.binding == "user_defined"
    assert "user_defined" in str(missing.value)


@linux_only
def test_machine_id_matches_the_os_file() -> None:
    path = Path("/etc/machine-id")
    if not path.exists():
        path = Path("/var/lib/dbus/machine-id")
    if path.exists() and path.read_text().strip():
        assert hardware.read_binding(Binding.MACHINE_ID) == path.read_text().strip()
    else:
        with pytest.raises(BindingUnavailable, match="machine_id"):
            hardware.read_binding(Binding.MACHINE_ID)


@linux_only
@pytest.mark.parametrize(
    ("binding", "path"),
    [
        (Binding.SMBIOS_UUID, "/sys/class/dmi/id/product_uuid"),
        (Binding.MOTHERBOARD_SERIAL, "/sys/class/dmi/id/board_serial"),
    ],
)
def test_dmi_bindings_read_the_file_or_degrade_naming_the_binding(
    binding: Binding, path: str
) -> None:
    try:
        expected = Path(path).read_text().strip()
    except OSError:
        expected = None
    if expected and expected.lower() not in hardware._PLACEHOLDERS:
        assert hardware.read_binding(binding).lower() == expected.lower()
    else:
        with pytest.raises(BindingUnavailable) as unavailable:
            hardware.read_binding(binding)
        assert unavailable.value.binding == binding.value
        assert unavailable.value.reason


@linux_only
def test_mac_address_is_a_real_adapter_address() -> None:
    addresses = {
        (p / "address").read_text().strip().lower()
        for p in Path("/sys/class/net").iterdir()
        if (p / "address").exists()
    }
    try:
        mac = hardware.read_binding(Binding.MAC_ADDRESS)
    except BindingUnavailable:
        assert addresses <= {"00:00:00:00:00:00", ""}
        return
    assert mac in addresses and mac != "00:00:00:00:00:00"
    assert hardware.mac_address() == mac


@linux_only
def test_volume_serial_is_a_uuid_or_unavailable() -> None:
    try:
        value = hardware.read_binding(Binding.VOLUME_SERIAL)
    except BindingUnavailable as exc:
        unavailable = exc
    else:
        assert re.fullmatch(r"[0-9A-Fa-f-]{8,36}", value)
        return
    assert unavailable.binding == "volume_serial"


@linux_only
def test_vm_detection_agrees_with_systemd_detect_virt() -> None:
    tool = shutil.which("systemd-detect-virt")
    if tool is None:
        pytest.skip("systemd-detect-virt is not installed to compare with")
    result = subprocess.run([tool, "--vm"], capture_output=True, text=True, check=False)
    assert hardware.is_vm() == (result.returncode == 0)
    if result.returncode == 0:
        assert hardware.vm_info()


@linux_only
def test_container_detection_agrees_with_the_markers() -> None:
    markers = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    if markers:
        assert hardware.is_container()
    tool = shutil.which("systemd-detect-virt")
    if tool is not None:
        result = subprocess.run([tool, "--container"], capture_output=True, check=False)
        if result.returncode == 0:
            assert hardware.is_container()


def test_recommended_chain_follows_the_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Binding] = []

    def fake_read(binding: Binding | str, *, user_defined: str | None = None) -> str:
        binding = Binding(binding)
        calls.append(binding)
        if binding in (Binding.SMBIOS_UUID, Binding.MOTHERBOARD_SERIAL):
            raise BindingUnavailable(binding, "needs administrator rights")
        return "value"

    monkeypatch.setattr(hardware, "read_binding", fake_read)
    monkeypatch.setattr(hardware, "_container_kind_from_files", lambda: None)
    monkeypatch.setattr(hardware, "_vm_vendor_from_files", lambda: "KVM")
    assert hardware.recommended_binding() is Binding.MACHINE_ID
    assert calls == [Binding.SMBIOS_UUID, Binding.MOTHERBOARD_SERIAL, Binding.MACHINE_ID]

    calls.clear()
    monkeypatch.setattr(hardware, "_container_kind_from_files", lambda: "docker")
    assert hardware.recommended_binding() is Binding.COMPUTER_NAME

    def nothing(binding: Binding | str, *, user_defined: str | None = None) -> str:
        raise BindingUnavailable(binding, "no")

    monkeypatch.setattr(hardware, "read_binding", nothing)
    with pytest.raises(BindingUnavailable) as unavailable:
        hardware.recommended_binding()
    assert unavailable.value.binding == "recommended"


def test_device_facts() -> None:
    facts = hardware.device_facts()
    assert facts["hostname"] == socket.gethostname()
    assert facts["os_ver"]
    assert isinstance(facts["is_vm"], bool)
    assert facts["is_vm"] == bool(facts["vm_info"])
    if "mac_address" in facts:
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", facts["mac_address"])


# --------------------------------------------------------------------------- degraded readings


def test_placeholder_serials_are_not_identities(tmp_path: Path) -> None:
    for placeholder in ("To be filled by O.E.M.", "Default string", "0", "   "):
        path = tmp_path / "board_serial"
        path.write_text(placeholder + "\n")
        with pytest.raises(BindingUnavailable, match="no unique value"):
            hardware._read_file(Binding.MOTHERBOARD_SERIAL, path)
    path.write_text("PF2ABCDE\n")
    assert hardware._read_file(Binding.MOTHERBOARD_SERIAL, path) == "PF2ABCDE"


def test_unreadable_file_needs_rights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "product_uuid"
    path.write_text("x")

    def denied(path: object) -> str:
        raise PermissionError(13, "Permission denied")  # what a non-root user gets for DMI files

    monkeypatch.setattr(hardware, "_text", denied)
    with pytest.raises(BindingUnavailable, match="administrator") as unavailable:
        hardware._read_file(Binding.SMBIOS_UUID, path)
    assert unavailable.value.binding == "smbios_uuid"


def test_system_tool_timeout_and_absence_are_named() -> None:
    with pytest.raises(BindingUnavailable, match="did not answer") as slow:
        hardware._run(
            Binding.SMBIOS_UUID, [sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3
        )
    assert slow.value.binding == "smbios_uuid"
    with pytest.raises(BindingUnavailable, match="not installed"):
        hardware._run(Binding.MAC_ADDRESS, ["licensor-no-such-tool-xyz"])
    with pytest.raises(BindingUnavailable, match="exited with 3"):
        hardware._run(Binding.MAC_ADDRESS, [sys.executable, "-c", "raise SystemExit(3)"])


def test_windows_falls_back_from_powershell_to_wmic(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(binding: object, args: Sequence[str], timeout: float = 5.0) -> str:
        if args[0] == "powershell":
            raise BindingUnavailable(Binding.SMBIOS_UUID, "powershell is not installed")
        return WMIC_CSPRODUCT

    monkeypatch.setattr(hardware, "_run", fake_run)
    value = hardware._windows_cim(
        Binding.SMBIOS_UUID, "Win32_ComputerSystemProduct", "UUID", ["csproduct", "get", "uuid"]
    )
    assert value == "4C4C4544-0037-3910-8052-B4C04F4B4E32"


def test_windows_placeholder_uuid_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        hardware,
        "_run",
        lambda binding, args, timeout=5.0: "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\r\n",
    )
    with pytest.raises(BindingUnavailable, match="smbios_uuid"):
        hardware._windows_cim(Binding.SMBIOS_UUID, "Win32_ComputerSystemProduct", "UUID", ["x"])


# --------------------------------------------------------------------------- captured outputs

IOREG = """+-o MacBookPro18,3  <class IOPlatformExpertDevice, id 0x100000242, registered, matched, active, busy 0 (31 ms), retain 42>
    {
      "IOPolledInterface" = "AppleARMWatchdogTimerHibernateHandler is not serializable"
      "IOPlatformUUID" = "9B1E2A6C-3D4F-5A6B-8C9D-0E1F2A3B4C5D"
      "model" = <"MacBookPro18,3">
      "IOPlatformSerialNumber" = "C02XG2JHJGH5"
      "manufacturer" = <"Apple Inc.">
      "board-id" = <"Mac-1E7E29AD0135F9BC">
    }
"""

IOREG_VM = IOREG.replace('"model" = <"MacBookPro18,3">', '"model" = <"VirtualMac2,1">')

DISKUTIL = """   Device Identifier:         disk3s1s1
   Device Node:               /dev/disk3s1s1
   Volume Name:               Macintosh HD
   Mounted:                   Yes
   File System Personality:   APFS
   Volume UUID:               5B1A0F6E-0D4E-4C7A-9B3C-2E5D8F1A6B7C
   Disk / Partition UUID:     5B1A0F6E-0D4E-4C7A-9B3C-2E5D8F1A6B7C
"""

IFCONFIG = """en0: flags=8863<UP,BROADCAST,SMART,RUNNING,SIMPLEX,MULTICAST> mtu 1500
\toptions=6463<RXCSUM,TXCSUM,TSO4,TSO6,CHANNEL_IO,PARTIAL_CSUM,ZEROINVERT_CSUM>
\tether 3c:22:fb:9a:1b:2c
\tinet 192.168.1.23 netmask 0xffffff00 broadcast 192.168.1.255
\tstatus: active
"""

WMIC_CSPRODUCT = (
    "UUID                                  \r\r\n4C4C4544-0037-3910-8052-B4C04F4B4E32  \r\r\n\r\r\n"
)
WMIC_BASEBOARD = "SerialNumber      \r\r\n/7XQ9R12/CN1296351F0123/  \r\r\n\r\r\n"
POWERSHELL_UUID = "4C4C4544-0037-3910-8052-B4C04F4B4E32\r\n"
POWERSHELL_LIST = (
    "\r\nManufacturer : Microsoft Corporation\r\nModel        : Virtual Machine\r\n\r\n"
)
REG_QUERY = (
    "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n"
    "    MachineGuid    REG_SZ    6f1c1b8e-4b63-4d8a-9a4e-2f0c3d5e7a91\r\n\r\n"
)
VOL_EN = " Volume in drive C is Windows\r\n Volume Serial Number is 8A3C-1F27\r\n"
VOL_DE = " Datenträger in Laufwerk C: ist Windows\r\n Volumeseriennummer: 8A3C-1F27\r\n"
GETMAC = (
    '"N/A","Media disconnected"\r\n'
    '"00-15-5D-01-23-45","\\Device\\Tcpip_{1A2B3C4D-0000-1111-2222-333344445555}"\r\n'
)
MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
)
CGROUP_DOCKER = (
    "12:memory:/docker/0f5c3e5b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b\n"
)


def test_macos_parsers() -> None:
    platform = hardware.parse_ioreg_platform(IOREG)
    assert platform["IOPlatformUUID"] == "9B1E2A6C-3D4F-5A6B-8C9D-0E1F2A3B4C5D"
    assert platform["IOPlatformSerialNumber"] == "C02XG2JHJGH5"
    assert platform["model"] == "MacBookPro18,3"
    assert hardware.dmi_vm_vendor([platform["model"]]) is None
    vm_model = hardware.parse_ioreg_platform(IOREG_VM)["model"]
    assert hardware.dmi_vm_vendor([vm_model]) == "Apple Virtualization"
    assert hardware.parse_diskutil_volume_uuid(DISKUTIL) == "5B1A0F6E-0D4E-4C7A-9B3C-2E5D8F1A6B7C"
    assert hardware.parse_ifconfig_ether(IFCONFIG) == "3c:22:fb:9a:1b:2c"
    assert hardware.parse_ifconfig_ether("lo0: flags=8049<UP,LOOPBACK>\n") is None


def test_windows_parsers() -> None:
    assert hardware.parse_wmic_value(WMIC_CSPRODUCT) == "4C4C4544-0037-3910-8052-B4C04F4B4E32"
    assert hardware.parse_wmic_value(WMIC_BASEBOARD) == "/7XQ9R12/CN1296351F0123/"
    assert hardware.parse_wmic_value("UUID\r\n\r\n") is None
    assert (
        hardware.parse_powershell_value(POWERSHELL_UUID) == "4C4C4544-0037-3910-8052-B4C04F4B4E32"
    )
    listing = hardware.parse_powershell_list(POWERSHELL_LIST)
    assert hardware.dmi_vm_vendor(listing.values()) == "Hyper-V"
    assert hardware.parse_reg_machine_guid(REG_QUERY) == "6f1c1b8e-4b63-4d8a-9a4e-2f0c3d5e7a91"
    assert hardware.parse_vol_serial(VOL_EN) == "8A3C-1F27"
    assert hardware.parse_vol_serial(VOL_DE) == "8A3C-1F27"
    assert hardware.parse_getmac_csv(GETMAC) == "00:15:5d:01:23:45"


def test_linux_parsers() -> None:
    assert hardware.parse_mountinfo_root(MOUNTINFO) == (259, 2, "/dev/nvme0n1p2")
    assert hardware.parse_container_id(CGROUP_DOCKER) == (
        "0f5c3e5b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
    )
    assert hardware.parse_container_id("0::/\n") is None
    assert hardware.dmi_vm_vendor(["QEMU", "Standard PC (Q35 + ICH9, 2009)"]) == "QEMU"
    assert hardware.dmi_vm_vendor(["innotek GmbH", "VirtualBox"]) == "VirtualBox"
    assert hardware.dmi_vm_vendor(["Dell Inc.", "Precision 5570"]) is None


def test_ext_superblock_uuid(tmp_path: Path) -> None:
    image = bytearray(4096)
    image[1024 + 0x38 : 1024 + 0x3A] = b"\x53\xef"
    image[1024 + 0x68 : 1024 + 0x78] = bytes.fromhex("1b4e28ba2fa111d2883f0016d3cca427")
    device = tmp_path / "disk.img"
    device.write_bytes(bytes(image))
    assert hardware._ext_superblock_uuid(str(device)) == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    device.write_bytes(bytes(4096))
    with pytest.raises(BindingUnavailable, match="not an ext file system"):
        hardware._ext_superblock_uuid(str(device))
