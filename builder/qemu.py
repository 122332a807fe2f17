"""QEMU as a Proxmox VE host would run the appliance: argv, acceleration, ports and firmware files.

The command line is built by a pure function from a frozen QemuOptions, so it can be tested without
QEMU. Choosing the accelerator is the only part with a side effect worth explaining: see choose_accel.
"""

from __future__ import annotations

import enum
import functools
import http.client
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from builder import log
from builder.errors import ApplianceError, die
from builder.run import run

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
KVM_DEVICE = Path("/dev/kvm")
# Overrides --accel auto without probing, e.g. for test runs on machines where KVM is known to be broken.
ACCEL_ENV = "LINSTOR_APPLIANCE_ACCEL"
GUEST_AGENT_PORT = "org.qemu.guest_agent.0"
SSH_PORT = 22
API_PORT = 3370
# The appliance's serial console: systemd's serial getty asks the terminal for its cursor position (to
# learn its size) before the login prompt and waits for the answer, which a program driving the console
# must give as a real terminal would.
LOGIN_PROMPT = r"\S+ login: $"
CURSOR_QUERY = "\x1b[6n"
CURSOR_ANSWER = "\x1b[24;80R"
# A guest kernel that panics stops there and never shows the login prompt, so whoever waits for the prompt
# watches for this line too and gives up at once instead of waiting out the timeout. Under TCG with several
# vCPUs the kernel now and then panics early in boot for a reason of the emulator, not of the image (an int3
# left by the kernel's live code patching, seen by another emulated CPU); a boot that panicked may be tried
# again. The pattern takes the whole line, which names the cause.
KERNEL_PANIC = r"Kernel panic - not syncing[^\r\n]*[\r\n]"


class Firmware(enum.StrEnum):
    bios = "bios"
    uefi = "uefi"

    @property
    def label(self) -> str:
        return "SeaBIOS" if self is Firmware.bios else "OVMF (UEFI)"


class Accel(enum.StrEnum):
    auto = "auto"
    kvm = "kvm"
    tcg = "tcg"


class DiskBus(enum.StrEnum):
    scsi = "scsi"  # Proxmox's default controller: VirtIO SCSI
    virtio = "virtio"  # virtio-blk, Proxmox's "VirtIO Block"


@dataclass(frozen=True)
class Forward:
    """A TCP port on the host's loopback address that reaches a port of the guest."""

    host: int
    guest: int


@dataclass(frozen=True)
class QemuOptions:
    image: Path
    accel: Accel  # kvm or tcg; auto is resolved by choose_accel before argv is built
    firmware: Firmware = Firmware.bios
    disk_bus: DiskBus = DiskBus.scsi
    image_format: str = "raw"
    memory_mib: int = 2048
    cpus: int = 2
    snapshot: bool = True
    forwards: tuple[Forward, ...] = ()
    # A writable copy of OVMF's variable store; the firmware writes boot entries into it.
    ovmf_vars: Path | None = None
    ovmf_code: Path = OVMF_CODE
    guest_agent_socket: Path | None = None
    name: str = "linstor-appliance"
    # Raw disks attached ahead of the image, without a boot index: the firmware still boots the image (boot
    # index 0) although it is not the VM's first disk, as in a VM switched over to a second disk.
    disks_before: tuple[Path, ...] = ()


def qemu_argv(options: QemuOptions) -> list[str]:
    """The full QEMU command line; the serial port (with QEMU's monitor, Ctrl-A C) is on stdio."""
    if options.accel is Accel.auto:
        raise ValueError("resolve Accel.auto with choose_accel() before building the command line")
    argv = [QEMU, "-name", options.name, "-nodefaults", "-nographic"]
    if options.firmware is Firmware.uefi:
        if options.ovmf_vars is None:
            raise ValueError("UEFI boots need a writable copy of the OVMF variables")
        # Proxmox pairs OVMF with q35; its pflash pair is the firmware code and the VM's own variables.
        argv += [
            "-machine", "q35",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={options.ovmf_code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={options.ovmf_vars}",
        ]
    else:
        argv += ["-machine", "pc"]
    argv += accel_args(options.accel)
    argv += ["-m", str(options.memory_mib), "-smp", str(options.cpus)]
    if options.disk_bus is DiskBus.scsi:
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    # Devices are numbered in command-line order, so the disks before the image come first in the guest too.
    for index, extra in enumerate(options.disks_before, start=1):
        argv += ["-drive", f"file={extra},format=raw,if=none,id=extra{index}"]
        if options.disk_bus is DiskBus.scsi:
            argv += ["-device", f"scsi-hd,drive=extra{index},bus=scsi0.0"]
        else:
            argv += ["-device", f"virtio-blk-pci,drive=extra{index}"]
    argv += ["-drive", f"file={options.image},format={options.image_format},if=none,id=disk0"]
    if options.disk_bus is DiskBus.scsi:
        argv += ["-device", "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=0"]
    else:
        argv += ["-device", "virtio-blk-pci,drive=disk0,bootindex=0"]
    if options.snapshot:
        argv.append("-snapshot")
    netdev = "user,id=net0" + "".join(f",hostfwd=tcp:127.0.0.1:{f.host}-:{f.guest}" for f in options.forwards)
    argv += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]
    if options.guest_agent_socket is not None:
        argv += [
            "-chardev", f"socket,path={options.guest_agent_socket},server=on,wait=off,id=qga0",
            "-device", "virtio-serial",
            "-device", f"virtserialport,chardev=qga0,name={GUEST_AGENT_PORT}",
        ]
    argv += ["-serial", "mon:stdio"]
    return argv


def accel_args(accel: Accel) -> list[str]:
    if accel is Accel.kvm:
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg"]


# -- acceleration ----------------------------------------------------------------------------------------------
#
# /dev/kvm existing is not proof that KVM works: under nested virtualization a guest can run so slowly
# that it looks hung (observed: the appliance still at "GRUB loading" after minutes), or QEMU aborts on
# "-cpu host". So "auto" first boots a tiny guest with the same KVM arguments as the real boot and
# takes KVM only if it finishes in time. The guest is SeaBIOS plus a boot sector that enters protected
# mode, writes 128 MiB of memory and exits through QEMU's isa-debug-exit port: well under a second
# with working KVM (and under TCG), about 7 s on the broken nested setup. The deadline bounds the
# probe, so "auto" never hangs; the result is kept for the rest of the process.

PROBE_DEADLINE = 4.0
PROBE_EXIT_CODE = (0x2A << 1) | 1  # isa-debug-exit turns the value written into (value << 1) | 1
PROBE_MEMORY_MIB = 192

# The boot sector (GNU as syntax), assembled by hand so no assembler is needed at run time:
#   .code16                      cli; xor %ax,%ax; mov %ax,%ds; lgdt gdtr
#                                mov %cr0,%eax; or $1,%eax; mov %eax,%cr0; ljmpl $8,$pm
#   .code32  pm:                 mov $0x10,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
#                                mov $0x100000,%edi; mov $(128 MiB / 4),%ecx; xor %eax,%eax; cld; rep stosl
#                                mov $0x2a,%al; out %al,$0xf4; 1: hlt; jmp 1b
#   gdt:                         null, 4 GiB code (0x08), 4 GiB data (0x10); gdtr: limit 23, base 0x7c40
_PROBE_REAL_MODE = bytes.fromhex(
    "fa31c08ed80f0116587c"  # cli; xor ax,ax; mov ds,ax; lgdt [0x7c58]
    "0f20c06683c8010f22c0"  # mov eax,cr0; or eax,1; mov cr0,eax
    "66ea1c7c00000800"  # jmp dword 0x08:0x7c1c
)
_PROBE_PM = bytes.fromhex(
    "66b81000"  # mov ax,0x10
    "8ed88ec08ed0"  # mov ds,ax; mov es,ax; mov ss,ax
    "bf00001000"  # mov edi,0x100000
    "b900000002"  # mov ecx,0x2000000 (dwords = 128 MiB)
    "31c0fcf3ab"  # xor eax,eax; cld; rep stosd
    "b02ae6f4"  # mov al,0x2a; out 0xf4,al
    "f4ebfd"  # hlt; jmp $-1
)
_PROBE_GDT = bytes.fromhex(
    "0000000000000000"  # null descriptor
    "ffff0000009acf00"  # 0x08: code, base 0, limit 4 GiB
    "ffff00000092cf00"  # 0x10: data, base 0, limit 4 GiB
    "1700407c0000"  # gdtr: limit 23, base 0x00007c40
)


def probe_boot_sector() -> bytes:
    sector = bytearray(512)
    code = _PROBE_REAL_MODE + _PROBE_PM
    sector[: len(code)] = code
    sector[0x40 : 0x40 + len(_PROBE_GDT)] = _PROBE_GDT
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def choose_accel(requested: Accel) -> Accel:
    """KVM or TCG for this boot: an explicit choice wins, then $LINSTOR_APPLIANCE_ACCEL, then the probe."""
    if requested is not Accel.auto:
        return requested
    override = os.environ.get(ACCEL_ENV, "").strip().lower()
    if override:
        try:
            requested = Accel(override)
        except ValueError:
            die(f"{ACCEL_ENV}={override} is not an accelerator", hint="use auto, kvm or tcg")
        if requested is not Accel.auto:
            return requested
    return Accel.kvm if kvm_works() else Accel.tcg


@functools.cache
def kvm_works() -> bool:
    """Whether a guest runs at KVM speed here; at most PROBE_DEADLINE seconds, once per process."""
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        log.debug(f"KVM: {KVM_DEVICE} is missing or not accessible, using TCG")
        return False
    with tempfile.TemporaryDirectory(prefix="linstor-appliance-kvm-") as scratch:
        disk = Path(scratch) / "probe.img"
        disk.write_bytes(probe_boot_sector())
        argv = [
            QEMU, "-nodefaults", "-display", "none", "-no-reboot", "-machine", "pc", *accel_args(Accel.kvm),
            "-m", str(PROBE_MEMORY_MIB), "-drive", f"file={disk},format=raw,if=ide",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        started = time.monotonic()
        try:
            result = run(argv, check=False, capture=True, timeout=PROBE_DEADLINE)
        except ApplianceError:
            log.debug(f"KVM: the probe guest did not finish within {PROBE_DEADLINE:.0f}s, using TCG")
            return False
    elapsed = time.monotonic() - started
    if result.returncode != PROBE_EXIT_CODE:
        detail = result.stderr.strip().splitlines()[-1:] or ["no message"]
        log.debug(f"KVM: the probe guest failed (exit code {result.returncode}: {detail[0]}), using TCG")
        return False
    log.debug(f"KVM: the probe guest finished in {elapsed:.2f}s, using KVM")
    return True


# -- host resources --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now; QEMU binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def forwards_for_appliance() -> tuple[Forward, Forward]:
    """Host ports for the appliance's SSH and LINSTOR REST API."""
    return Forward(free_port(), SSH_PORT), Forward(free_port(), API_PORT)


# -- the controller answering ---------------------------------------------------------------------------------


def controller_answers(port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> bool:
    """Whether GET /v1/controller/version on host:port (by default a forward to the guest's 3370) returns 200."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/v1/controller/version")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class ApiWatch:
    """Polls a forwarded REST API port from QEMU's start (in a thread) to time when the controller first answers.

    answered_after is in seconds from `started` (a time.monotonic() value: when QEMU was started).
    """

    def __init__(self, port: int, started: float, *, interval: float = 1.0, request_timeout: float = 5.0) -> None:
        self.port = port
        self.started = started
        self.interval = interval
        self.request_timeout = request_timeout
        self.answered_after: float | None = None
        self._stop = threading.Event()
        self._answered = threading.Event()

    def start(self) -> ApiWatch:
        threading.Thread(target=self._poll, name=f"api-watch-{self.port}", daemon=True).start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            if controller_answers(self.port, self.request_timeout):
                self.answered_after = time.monotonic() - self.started
                self._answered.set()
                return
            self._stop.wait(self.interval)

    def wait(self, timeout: float) -> float | None:
        """Seconds from QEMU's start to the first answer, or None if there was none within timeout."""
        self._answered.wait(timeout)
        return self.answered_after

    def stop(self) -> None:
        self._stop.set()


def copy_ovmf_vars(target: Path, template: Path = OVMF_VARS) -> Path:
    """A private copy of OVMF's variable store: the firmware writes to it, the system's copy stays pristine."""
    check_ovmf(template)
    shutil.copyfile(template, target)
    return target


def check_ovmf(*files: Path) -> None:
    for path in (OVMF_CODE, *files):
        if not path.is_file():
            die(f"the UEFI firmware file {path} is missing", hint="install the package ovmf")


def image_format(image: Path) -> str:
    """raw or qcow2, from the file's first bytes; a compressed download is refused with what to do."""
    try:
        with image.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        die(f"the image {image} does not exist", hint="build one with 'make image' or pass the path of one")
    except IsADirectoryError:
        die(f"{image} is a directory, not a disk image", hint="pass the .raw file")
    if magic == b"\x28\xb5\x2f\xfd":
        die(f"{image} is zstd-compressed", hint=f"decompress it first: zstd -d {image}")
    if magic == b"QFI\xfb":
        return "qcow2"
    return "raw"
