"""A copy of the controller's files, taken while it is stopped, with a SHA-256 manifest.

The folder is `<root>/var/lib/linstor-appliance/backup-<vmid>-<UTC time>/` holding `var/lib/linstor/...`
and `etc/linstor/...` as they are on the node, plus `SHA256SUMS` (written last: a folder without it is
an interrupted copy). The originals are only read. Files that are no longer on the node as they were
(storage.cfg before the deploy changed it) are given as bytes and kept the same way. `keep()` writes
any set of files in this layout, e.g. the database taken out of the VM disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from builder.errors import die
from builder.manifest import read_sums, sha256

SOURCES = ("var/lib/linstor", "etc/linstor")
SUMS = "SHA256SUMS"


def create(root: Path, state_dir: Path, vmid: int, extra: dict[str, bytes] | None = None) -> Path:
    """A new backup of the controller's files, plus `extra` ({path relative to root: bytes})."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = state_dir / f"backup-{vmid}-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = state_dir / f"backup-{vmid}-{stamp}-{suffix}"
    target.mkdir(parents=True, mode=0o700)
    lines = []
    for source in SOURCES:
        origin = root / source
        if not origin.is_dir():
            continue
        for path in sorted(origin.rglob("*")):
            relative = path.relative_to(root)
            destination = target / relative
            if path.is_symlink() or not path.is_file():
                if path.is_dir() and not path.is_symlink():
                    destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            digest = sha256(destination)
            if digest != sha256(path):
                die(f"{path} changed while it was copied", hint="make sure the LINSTOR controller is stopped")
            lines.append(f"{digest}  {relative}\n")
    for name, data in sorted((extra or {}).items()):
        lines.append(f"{_write(target, name, data)}  {name}\n")
    _write_sums(target, lines)
    return target


def keep(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    """`files` ({path relative to root: bytes}) in `folder` with SHA256SUMS, read back and verified.

    A complete folder holding exactly these files is kept as it is (a repeated run); an interrupted
    one is written again.
    """
    expected = {relative: hashlib.sha256(data).hexdigest() for relative, data in files.items()}
    if complete(folder):
        if verify(folder) != expected:
            die(f"{folder} already exists and holds other files", hint="move it away and run the command again")
        return expected
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    lines = [f"{_write(folder, relative, data)}  {relative}\n" for relative, data in sorted(files.items())]
    _write_sums(folder, lines)
    if verify(folder) != expected:
        die(f"the files written to {folder} do not read back as taken", hint="check the disk holding it")
    return expected


def _write(folder: Path, relative: str, data: bytes) -> str:
    destination = folder / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    with open(destination, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return sha256(destination)


def _write_sums(folder: Path, lines: list[str]) -> None:
    sums = folder / SUMS
    tmp = sums.with_name(SUMS + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, sums)


def complete(folder: Path) -> bool:
    return (folder / SUMS).is_file()


def verify(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of a backup, after checking every file against its manifest."""
    sums = read_sums(folder / SUMS)
    for relative, digest in sums.items():
        if sha256(folder / relative) != digest:
            die(f"the backup file {folder / relative} does not match its SHA256SUMS",
                hint="the backup was changed after it was written; do not use it")
    return sums
