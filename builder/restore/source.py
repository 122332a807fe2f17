"""The backup a restore starts from: named, or the newest in this node's (or a storage's) backup folder,
always checked against its .sha256 file before anything uses it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from builder.backup import store
from builder.deploy import storagecfg
from builder.errors import die
from builder.restore.options import LATEST, Options


@dataclass(frozen=True)
class Chosen:
    path: Path  # on this node, under the root prefix
    extension: str
    sha256: str


def folder(options: Options) -> Path:
    if options.storage:
        entry = storagecfg.read(options.root).get(options.storage)
        if entry is None or entry.type not in store.PATH_TYPES:
            die(f"storage '{options.storage}' holds no folder of backups", hint="name the storage the backups "
                "were kept on (linstor-appliance backup --storage)")  # fmt: skip
        base = entry.options.get("path") or f"{store.DEFAULT_MOUNT}/{options.storage}"
        return options.root / base.lstrip("/") / store.STORAGE_SUBFOLDER / str(options.vmid)
    return options.root / store.NODE_FOLDER.lstrip("/") / str(options.vmid)


def choose(options: Options) -> Chosen:
    if options.backup == LATEST:
        where = folder(options)
        names = sorted(p.name for p in where.glob("*") if store.NAME.match(p.name)
                       and (where / f"{p.name}.sha256").is_file()) if where.is_dir() else []  # fmt: skip
        if not names:
            die(f"there is no backup of VM {options.vmid} in {where}",
                hint="name one with --backup FILE, or --storage ID where they are kept")
        path = where / names[-1]
    else:
        path = Path(options.backup)
        if not path.is_absolute() or not path.is_file():
            path = options.root / options.backup.lstrip("/")
        if not path.is_file():
            die(f"the backup {options.backup} does not exist", hint="list them with 'linstor-appliance backup --list'")
    return verified(path)


def verified(path: Path) -> Chosen:
    extension = store.extension_of(path.name)
    sums = path.with_name(f"{path.name}.sha256")
    if not sums.is_file():
        die(f"{sums.name} is missing beside the backup", hint="copy it with the backup; without it the backup "
            "cannot be checked")  # fmt: skip
    fields = sums.read_text().split()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not fields or fields[0] != digest:
        die(f"the backup {path.name} does not match its .sha256 file", hint="it was damaged; choose another")
    return Chosen(path, extension, digest)
