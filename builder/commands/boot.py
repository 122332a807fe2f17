"""linstor-appliance boot: run an image in QEMU with the serial console as the terminal.

The VM looks like a Proxmox VE guest (VirtIO SCSI or VirtIO Block disk, VirtIO NIC, a serial port,
the QEMU guest agent channel). QEMU replaces this process, so leaving QEMU (Ctrl-A X) ends the command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from pathlib import Path

from builder import log
from builder.errors import die
from builder.qemu import (
    ACCEL_ENV,
    OVMF_VARS,
    PROBE_DEADLINE,
    QEMU,
    Accel,
    DiskBus,
    Firmware,
    QemuOptions,
    check_ovmf,
    choose_accel,
    copy_ovmf_vars,
    forwards_for_appliance,
    image_format,
    qemu_argv,
)
from builder.run import require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="the disk image to boot (.raw as built, or qcow2)")
    parser.add_argument("--uefi", action="store_true", help="boot with OVMF (UEFI) instead of SeaBIOS")
    parser.add_argument("--persist", action="store_true",
                        help="write changes to the image (default: they are discarded when QEMU exits)")
    parser.add_argument("--accel", type=Accel, choices=list(Accel), default=Accel.auto,
                        help="kvm, tcg (emulation), or auto: KVM if a short test guest runs well under it, "
                             f"else TCG (default: auto; ${ACCEL_ENV} overrides auto)")
    parser.add_argument("--disk", type=DiskBus, choices=list(DiskBus), default=DiskBus.scsi,
                        help="disk controller: VirtIO SCSI (Proxmox's default) or VirtIO Block (default: scsi)")
    parser.add_argument("--memory", type=int, default=2048, metavar="MIB", help="memory in MiB (default: 2048)")
    parser.add_argument("--cpus", type=int, default=2, help="virtual CPUs (default: 2)")


def run(args: argparse.Namespace) -> int:
    image: Path = args.image
    fmt = image_format(image)
    if args.persist and not os.access(image, os.W_OK):
        die(f"--persist needs write access to {image}", hint="run as a user who may write it, or drop --persist")
    if args.memory < 512 or args.cpus < 1:
        die("the appliance needs at least 512 MiB of memory and one CPU", hint="use --memory 2048 --cpus 2")
    qemu = require(QEMU)
    firmware = Firmware.uefi if args.uefi else Firmware.bios
    vars_path = None
    if firmware is Firmware.uefi:
        vars_path = private_ovmf_vars()
    if args.accel is Accel.auto and not os.environ.get(ACCEL_ENV):
        with log.step(f"Checking whether KVM works here (at most {PROBE_DEADLINE:.0f}s)"):
            accel = choose_accel(args.accel)
    else:
        accel = choose_accel(args.accel)
    ssh, api = forwards_for_appliance()
    options = QemuOptions(
        image=image.resolve(), accel=accel, firmware=firmware, disk_bus=args.disk, image_format=fmt,
        memory_mib=args.memory, cpus=args.cpus, snapshot=not args.persist, forwards=(ssh, api),
        ovmf_vars=vars_path, guest_agent_socket=guest_agent_path(),
    )
    argv = qemu_argv(options)
    changes = "written to the image" if args.persist else "discarded when QEMU exits"
    log.info(f"Booting {image} with {firmware.label}, {accel_label(accel)}; changes are {changes}")
    log.info(f"  SSH:          ssh -p {ssh.host} linbit@127.0.0.1")
    log.info(f"  LINSTOR API:  http://127.0.0.1:{api.host}  (linstor --controllers 127.0.0.1:{api.host} node list)")
    log.info(f"  Guest agent:  {options.guest_agent_socket}")
    log.info("  The serial console follows; Ctrl-A X leaves QEMU, Ctrl-A C its monitor.")
    log.debug(f"+ {shlex.join(argv)}")
    os.execv(qemu, argv)
    return 0  # not reached


def accel_label(accel: Accel) -> str:
    return "KVM acceleration" if accel is Accel.kvm else "TCG emulation (slow: a minute or more to the login prompt)"


def private_ovmf_vars() -> Path:
    """A writable copy of the OVMF variables that disappears with QEMU.

    QEMU replaces this process, so nobody is left to delete a temporary file afterwards: the copy is
    unlinked at once and QEMU opens it through the inherited descriptor.
    """
    check_ovmf(OVMF_VARS)  # before creating a file that a failure would leave behind
    with tempfile.NamedTemporaryFile(prefix="linstor-appliance-", suffix=".vars.fd", delete=False) as handle:
        path = copy_ovmf_vars(Path(handle.name))
    descriptor = os.open(path, os.O_RDWR)
    path.unlink()
    os.set_inheritable(descriptor, True)
    return Path(f"/dev/fd/{descriptor}")


def guest_agent_path() -> Path:
    """The guest agent's socket; QEMU removes it when it exits."""
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return runtime / f"linstor-appliance-{os.getpid()}.qga"
