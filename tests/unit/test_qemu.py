"""builder/qemu.py and 'linstor-appliance boot' without booting anything: argv, accelerator choice, files.

QEMU itself is a fake on PATH here, except in the one test that runs the KVM probe's boot sector
under real QEMU (emulated, a fraction of a second) to prove the hand-assembled code works.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from unit.fakebin import FakeBin

from builder import qemu
from builder.errors import ApplianceError
from builder.qemu import Accel, DiskBus, Firmware, Forward, QemuOptions, qemu_argv

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pairs(argv: list[str], flag: str) -> list[str]:
    """Every value given to a repeated option, e.g. all '-device' values."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def options(**overrides: object) -> QemuOptions:
    base: dict[str, object] = {
        "image": Path("/images/appliance.raw"), "accel": Accel.tcg,
        "forwards": (Forward(40022, 22), Forward(43370, 3370)), "guest_agent_socket": Path("/run/t/qga.sock"),
    }
    return QemuOptions(**{**base, **overrides})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    qemu.kvm_works.cache_clear()
    monkeypatch.delenv(qemu.ACCEL_ENV, raising=False)


# -- argv ------------------------------------------------------------------------------------------------------


def test_default_argv_is_a_proxmox_like_seabios_vm_with_a_throwaway_disk() -> None:
    argv = qemu_argv(options())
    assert argv[0] == "qemu-system-x86_64"
    assert pairs(argv, "-machine") == ["pc"]
    assert pairs(argv, "-accel") == ["tcg"] and "-cpu" not in argv
    assert "-snapshot" in argv
    assert not [d for d in pairs(argv, "-drive") if "pflash" in d]
    assert pairs(argv, "-drive") == ["file=/images/appliance.raw,format=raw,if=none,id=disk0"]
    devices = pairs(argv, "-device")
    assert "virtio-scsi-pci,id=scsi0" in devices
    assert "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=0" in devices
    assert "virtio-net-pci,netdev=net0" in devices
    assert pairs(argv, "-netdev") == [
        "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:43370-:3370"
    ]
    assert pairs(argv, "-serial") == ["mon:stdio"]
    assert "-nographic" in argv and "-nodefaults" in argv


def test_guest_agent_channel_is_a_unix_socket_on_virtio_serial() -> None:
    argv = qemu_argv(options())
    assert pairs(argv, "-chardev") == ["socket,path=/run/t/qga.sock,server=on,wait=off,id=qga0"]
    devices = pairs(argv, "-device")
    assert "virtio-serial" in devices
    assert "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0" in devices
    assert "-chardev" not in qemu_argv(options(guest_agent_socket=None))


def test_uefi_uses_q35_and_pflash_with_a_private_vars_copy() -> None:
    argv = qemu_argv(options(firmware=Firmware.uefi, ovmf_vars=Path("/tmp/x/vars.fd")))
    assert pairs(argv, "-machine") == ["q35"]
    flash = [d for d in pairs(argv, "-drive") if d.startswith("if=pflash")]
    assert flash == [
        f"if=pflash,format=raw,unit=0,readonly=on,file={qemu.OVMF_CODE}",
        "if=pflash,format=raw,unit=1,file=/tmp/x/vars.fd",
    ]
    with pytest.raises(ValueError, match="OVMF variables"):
        qemu_argv(options(firmware=Firmware.uefi))


def test_persist_virtio_blk_qcow2_memory_and_cpus() -> None:
    argv = qemu_argv(options(snapshot=False, disk_bus=DiskBus.virtio, image_format="qcow2", memory_mib=1024, cpus=4))
    assert "-snapshot" not in argv
    assert "virtio-blk-pci,drive=disk0,bootindex=0" in pairs(argv, "-device")
    assert not [d for d in pairs(argv, "-device") if d.startswith("virtio-scsi")]
    assert "format=qcow2" in pairs(argv, "-drive")[0]
    assert pairs(argv, "-m") == ["1024"] and pairs(argv, "-smp") == ["4"]


def test_disks_before_the_image_come_first_and_the_image_keeps_the_boot_index() -> None:
    argv = qemu_argv(options(disks_before=(Path("/t/blank.raw"),)))
    assert pairs(argv, "-drive") == [
        "file=/t/blank.raw,format=raw,if=none,id=extra1",
        "file=/images/appliance.raw,format=raw,if=none,id=disk0",
    ]
    disks = [d for d in pairs(argv, "-device") if d.startswith(("scsi-hd", "virtio-blk"))]
    assert disks == ["scsi-hd,drive=extra1,bus=scsi0.0", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=0"]
    argv = qemu_argv(options(disks_before=(Path("/t/blank.raw"),), disk_bus=DiskBus.virtio))
    disks = [d for d in pairs(argv, "-device") if d.startswith(("scsi-hd", "virtio-blk"))]
    assert disks == ["virtio-blk-pci,drive=extra1", "virtio-blk-pci,drive=disk0,bootindex=0"]


def test_kvm_argv_and_unresolved_auto() -> None:
    argv = qemu_argv(options(accel=Accel.kvm))
    assert pairs(argv, "-accel") == ["kvm"] and pairs(argv, "-cpu") == ["host"]
    with pytest.raises(ValueError, match="choose_accel"):
        qemu_argv(options(accel=Accel.auto))


# -- accelerator choice ----------------------------------------------------------------------------------------


@pytest.fixture
def kvm_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A readable and writable stand-in for /dev/kvm, so the probe does not stop at the access check."""
    device = tmp_path / "kvm"
    device.touch()
    monkeypatch.setattr(qemu, "KVM_DEVICE", device)
    return device


# The probe's fake QEMU: checks it was given a real boot sector, then behaves as FAKE_QEMU_MODE says.
FAKE_QEMU = r"""
import time
drive = next(a for a in argv if a.startswith("file="))
sector = open(drive.split(",")[0].removeprefix("file="), "rb").read()
assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
mode = os.environ.get("FAKE_QEMU_MODE", "ok")
if mode == "hang":
    time.sleep(3600)
if mode == "abort":
    print("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0", file=sys.stderr)
    sys.exit(1)
sys.exit(85)
"""


def test_explicit_choice_and_environment_never_probe(fakebin: FakeBin, kvm_device: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU)
    assert qemu.choose_accel(Accel.tcg) is Accel.tcg
    assert qemu.choose_accel(Accel.kvm) is Accel.kvm
    monkeypatch.setenv(qemu.ACCEL_ENV, "tcg")
    assert qemu.choose_accel(Accel.auto) is Accel.tcg
    monkeypatch.setenv(qemu.ACCEL_ENV, "KVM")
    assert qemu.choose_accel(Accel.auto) is Accel.kvm
    assert fakebin.calls() == []
    monkeypatch.setenv(qemu.ACCEL_ENV, "fast")
    with pytest.raises(ApplianceError, match="not an accelerator"):
        qemu.choose_accel(Accel.auto)


def test_auto_takes_kvm_when_the_probe_guest_finishes(fakebin: FakeBin, kvm_device: Path) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU)
    assert qemu.choose_accel(Accel.auto) is Accel.kvm
    assert qemu.choose_accel(Accel.auto) is Accel.kvm
    (call,) = fakebin.calls("qemu-system-x86_64")  # probed once, then remembered
    assert pairs(call, "-accel") == ["kvm"] and pairs(call, "-cpu") == ["host"]
    assert "isa-debug-exit,iobase=0xf4,iosize=0x04" in pairs(call, "-device")


def test_auto_falls_back_to_tcg_when_the_probe_guest_hangs(fakebin: FakeBin, kvm_device: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU)
    monkeypatch.setenv("FAKE_QEMU_MODE", "hang")
    monkeypatch.setattr(qemu, "PROBE_DEADLINE", 1.0)
    started = time.monotonic()
    assert qemu.choose_accel(Accel.auto) is Accel.tcg
    assert time.monotonic() - started < 10
    assert len(fakebin.calls("qemu-system-x86_64")) == 1


def test_auto_falls_back_to_tcg_when_qemu_fails_under_kvm(fakebin: FakeBin, kvm_device: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU)
    monkeypatch.setenv("FAKE_QEMU_MODE", "abort")
    assert qemu.choose_accel(Accel.auto) is Accel.tcg


def test_auto_without_usable_dev_kvm_does_not_start_qemu(fakebin: FakeBin, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU)
    monkeypatch.setattr(qemu, "KVM_DEVICE", tmp_path / "no-kvm")
    assert qemu.choose_accel(Accel.auto) is Accel.tcg
    assert fakebin.calls() == []


def test_probe_boot_sector_layout() -> None:
    sector = qemu.probe_boot_sector()
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    # lgdt reads its operand at 0x7c58 (offset 0x58): limit 23 (three descriptors), base 0x7c40.
    assert sector[5:10] == bytes.fromhex("0f0116587c")
    assert sector[0x58:0x5E] == bytes.fromhex("1700407c0000")
    assert sector[0x48:0x50] == bytes.fromhex("ffff0000009acf00")


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86")
def test_probe_boot_sector_runs_to_the_debug_exit_under_real_qemu(tmp_path: Path) -> None:
    disk = tmp_path / "probe.img"
    disk.write_bytes(qemu.probe_boot_sector())
    result = subprocess.run(
        ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-no-reboot", "-machine", "pc", "-accel", "tcg",
         "-m", str(qemu.PROBE_MEMORY_MIB), "-drive", f"file={disk},format=raw,if=ide",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
        capture_output=True, timeout=60,
    )
    assert result.returncode == qemu.PROBE_EXIT_CODE, result.stderr


# -- host files ------------------------------------------------------------------------------------------------


def test_image_format_from_magic(tmp_path: Path) -> None:
    raw, qcow, zst = tmp_path / "a.raw", tmp_path / "a.qcow2", tmp_path / "a.raw.zst"
    raw.write_bytes(b"\0" * 1024)
    qcow.write_bytes(b"QFI\xfb" + b"\0" * 100)
    zst.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 100)
    assert qemu.image_format(raw) == "raw"
    assert qemu.image_format(qcow) == "qcow2"
    with pytest.raises(ApplianceError, match="zstd -d"):
        qemu.image_format(zst)
    with pytest.raises(ApplianceError, match="does not exist"):
        qemu.image_format(tmp_path / "missing.raw")


def test_free_ports_are_distinct_and_bindable() -> None:
    ssh, api = qemu.forwards_for_appliance()
    assert (ssh.guest, api.guest) == (22, 3370)
    assert ssh.host != api.host and all(1024 <= f.host < 65536 for f in (ssh, api))


def test_ovmf_vars_copy_and_missing_firmware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    template.write_bytes(b"vars" * 1024)
    monkeypatch.setattr(qemu, "OVMF_CODE", code)
    with pytest.raises(ApplianceError, match="install the package ovmf"):
        qemu.copy_ovmf_vars(tmp_path / "copy.fd", template)
    code.write_bytes(b"code")
    copy = qemu.copy_ovmf_vars(tmp_path / "copy.fd", template)
    assert copy.read_bytes() == template.read_bytes()
    copy.write_bytes(b"changed by the firmware")
    assert template.read_bytes() == b"vars" * 1024


# -- the command -----------------------------------------------------------------------------------------------

# The command's fake QEMU (it replaces the CLI process): reports what it was given, including whether
# the OVMF variables passed as /dev/fd/N are readable and writable, then exits like 'Ctrl-A X'.
FAKE_QEMU_EXEC = r"""
for arg in argv:
    if arg.startswith("if=pflash") and "unit=1" in arg:
        path = arg.split("file=")[1]
        with open(path, "r+b") as vars_file:
            print("vars", path, len(vars_file.read()))
print("pid", os.getpid())
"""


@dataclass
class CliRun:
    pid: int
    returncode: int
    stdout: str
    stderr: str


def boot_cli(fakebin: FakeBin, *args: str) -> CliRun:
    env = {**os.environ, "PATH": fakebin.path_env(), qemu.ACCEL_ENV: "tcg"}
    with subprocess.Popen([sys.executable, "-m", "builder", "boot", *args], cwd=PROJECT_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        stdout, stderr = process.communicate(timeout=60)
    return CliRun(process.pid, process.returncode, stdout, stderr)


def test_boot_command_prints_ports_and_accel_then_becomes_qemu(fakebin: FakeBin, tmp_path: Path) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU_EXEC)
    image = tmp_path / "linstor-controller.raw"
    image.write_bytes(b"\0" * 4096)
    result = boot_cli(fakebin, str(image))
    assert result.returncode == 0, result.stderr
    (argv,) = fakebin.calls("qemu-system-x86_64")
    assert "-snapshot" in argv and pairs(argv, "-accel") == ["tcg"]
    netdev = pairs(argv, "-netdev")[0]
    ssh_port = netdev.split("hostfwd=tcp:127.0.0.1:")[1].split("-:22")[0]
    api_port = netdev.split("hostfwd=tcp:127.0.0.1:")[2].split("-:3370")[0]
    assert f"ssh -p {ssh_port} linbit@127.0.0.1" in result.stderr
    assert f"http://127.0.0.1:{api_port}" in result.stderr
    assert "TCG" in result.stderr and "SeaBIOS" in result.stderr
    assert f"pid {result.pid}" in result.stdout  # QEMU replaced the command: the terminal is QEMU's alone


def test_boot_command_uefi_persist_hands_qemu_a_private_vars_file(fakebin: FakeBin, tmp_path: Path) -> None:
    if not (qemu.OVMF_CODE.is_file() and qemu.OVMF_VARS.is_file()):
        pytest.skip("needs the ovmf package")
    fakebin.add("qemu-system-x86_64", FAKE_QEMU_EXEC)
    image = tmp_path / "linstor-controller.raw"
    image.write_bytes(b"\0" * 4096)
    result = boot_cli(fakebin, "--uefi", "--persist", "--disk", "virtio", str(image))
    assert result.returncode == 0, result.stderr
    (argv,) = fakebin.calls("qemu-system-x86_64")
    assert "-snapshot" not in argv and pairs(argv, "-machine") == ["q35"]
    assert "vars /dev/fd/" in result.stdout
    assert result.stdout.split("vars ")[1].split()[1] == str(qemu.OVMF_VARS.stat().st_size)
    assert "written to the image" in result.stderr
    assert not list(Path("/tmp").glob("linstor-appliance-*.vars.fd"))


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "does not exist"),
    ("zst", "zstd-compressed"),
])
def test_boot_command_errors_are_one_line(fakebin: FakeBin, tmp_path: Path, setup: str, message: str) -> None:
    fakebin.add("qemu-system-x86_64", FAKE_QEMU_EXEC)
    image = tmp_path / "linstor-controller.raw"
    if setup == "zst":
        image = tmp_path / "linstor-controller.raw.zst"
        image.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    result = boot_cli(fakebin, str(image))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert fakebin.calls() == []


# -- timing the controller's first answer (boot tests and benchmarks) ---------------------------------------


class _VersionHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = self.status if self.path == "/v1/controller/version" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serve(port: int, status: int) -> http.server.HTTPServer:
    handler = type("Handler", (_VersionHandler,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_api_watch_times_the_controllers_first_answer() -> None:
    port = qemu.free_port()
    started = time.monotonic()
    watch = qemu.ApiWatch(port, started, interval=0.05).start()
    try:
        # Nothing listens yet (QEMU forwards the port before the guest's controller is up).
        assert watch.wait(0.3) is None
        opened = time.monotonic() - started
        server = _serve(port, 200)
        try:
            answered = watch.wait(30)
        finally:
            server.shutdown()
            server.server_close()
    finally:
        watch.stop()
    assert answered is not None and answered >= opened


def test_api_watch_counts_only_a_successful_answer() -> None:
    port = qemu.free_port()
    server = _serve(port, 500)
    watch = qemu.ApiWatch(port, time.monotonic(), interval=0.05).start()
    try:
        assert qemu.controller_answers(port) is False
        assert watch.wait(0.5) is None
    finally:
        watch.stop()
        server.shutdown()
        server.server_close()
