"""Writing files into the VM disk's root file system while the VM is offline.

The root partition is mounted by its offset (builder.diskimage) through this node's DRBD device, so
every replica gets the change. A deploy killed while the disk was mounted leaves a loop device behind;
it is cleaned up before the next attempt mounts again.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from builder import diskimage, testpoint
from builder.errors import die
from builder.run import run


@dataclass(frozen=True)
class File:
    path: str  # absolute path inside the VM
    data: bytes
    mode: int = 0o644


def stale_loops(device: Path) -> list[str]:
    """Loop devices still attached to `device` (from an interrupted earlier attempt)."""
    result = run(["losetup", "--associated", str(device)], capture=True, check=False)
    return [line.split(":", 1)[0] for line in result.stdout.splitlines() if line.startswith("/dev/loop")]


def mounts_of(source: str) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) >= 2 and after[1] == source:
            found.append(_unescape(fields[4]))
    return found


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def release_stale(device: Path) -> list[str]:
    released = []
    for loop in stale_loops(device):
        for mountpoint in mounts_of(loop):
            run(["umount", mountpoint], check=False)
        run(["losetup", "--detach", loop], check=False)
        released.append(loop)
    return released


def write(device: Path, files: list[File]) -> None:
    release_stale(device)
    with diskimage.root_filesystem(device, writable=True) as root:
        for item in files:
            target = root / item.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.linstor-appliance")
            tmp.write_bytes(item.data)
            os.chown(tmp, 0, 0)
            tmp.chmod(item.mode)
            os.replace(tmp, target)
            testpoint.reached("mid-inject")
        os.sync()


def read(device: Path, paths: list[str]) -> dict[str, bytes | None]:
    """Files from the VM disk (read-only mount), for checking what a step wrote."""
    release_stale(device)
    found: dict[str, bytes | None] = {}
    with diskimage.root_filesystem(device) as root:
        for path in paths:
            target = root / path.lstrip("/")
            found[path] = target.read_bytes() if target.is_file() else None
    return found


def write_checked(device: Path, files: list[File], where: str, hint: str) -> dict[str, str]:
    """Write the files, read them back, and die unless each reads as written; returns each file's SHA-256."""
    write(device, files)
    back = read(device, [item.path for item in files])
    for item in files:
        if back[item.path] != item.data:
            die(f"{item.path} in {where} does not read back as written", hint=hint)
    return {item.path: hashlib.sha256(item.data).hexdigest() for item in files}
