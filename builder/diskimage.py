"""Reading the appliance disk offline: its partition table, and its root file system mounted by offset.

Loop devices do not always get partition devices (containers, some CI machines), so partitions are
reached through a loop device that starts at the partition's offset instead of through partscan. The
same code serves image inspection in tests and file injection into a VM disk by the deploy command.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import die
from builder.run import run

SECTOR = 512
ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"


@dataclass(frozen=True)
class Partition:
    number: int
    type: str
    start: int  # bytes
    size: int  # bytes
    name: str
    uuid: str

    @property
    def end(self) -> int:
        return self.start + self.size


def partitions(disk: Path) -> list[Partition]:
    result = run(["sfdisk", "--json", str(disk)], capture=True, check=False)
    if result.returncode != 0:
        die(f"{disk} has no readable partition table", hint="is it an appliance disk image?")
    table = json.loads(result.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", SECTOR))
    found = []
    for index, entry in enumerate(table.get("partitions", []), start=1):
        found.append(Partition(
            number=index,
            type=entry["type"].upper(),
            start=int(entry["start"]) * sector,
            size=int(entry["size"]) * sector,
            name=entry.get("name", ""),
            uuid=entry.get("uuid", "").upper(),
        ))
    return found


def find(disk: Path, type_uuid: str) -> Partition:
    for partition in partitions(disk):
        if partition.type == type_uuid:
            return partition
    die(f"{disk} has no partition of type {type_uuid}", hint="is it an appliance disk image?")


@contextmanager
def mounted(disk: Path, partition: Partition, *, writable: bool = False) -> Iterator[Path]:
    """Mount one partition of a disk image or block device; unmounted and detached on the way out."""
    mode = [] if writable else ["--read-only"]
    loop = run(
        ["losetup", "--find", "--show", *mode, "--offset", str(partition.start), "--sizelimit", str(partition.size),
         str(disk)],
        capture=True, hint="loop devices are needed to read the image; are you root?",
    ).stdout.strip()
    try:
        with tempfile.TemporaryDirectory(prefix="linstor-appliance-mnt-") as target:
            # A read-only look must not replay the ext4 journal: that would write to the image.
            options = "rw" if writable else "ro,noload"
            run(["mount", "-o", options, loop, target])
            try:
                yield Path(target)
            finally:
                run(["umount", target])
    finally:
        run(["losetup", "--detach", loop], check=False)


@contextmanager
def root_filesystem(disk: Path, *, writable: bool = False) -> Iterator[Path]:
    with mounted(disk, find(disk, ROOT_X86_64), writable=writable) as root:
        yield root


def read_esp_file(disk: Path, path: str) -> str:
    """Read a file from the ESP with mtools, which needs neither a loop device nor the vfat module."""
    esp = find(disk, ESP)
    return run(["mtype", "-i", f"{disk}@@{esp.start}", f"::{path}"], capture=True).stdout


def list_esp(disk: Path, path: str = "/") -> list[str]:
    esp = find(disk, ESP)
    out = run(["mdir", "-b", "-/", "-i", f"{disk}@@{esp.start}", f"::{path}"], capture=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]
