"""Where backups are kept: the same folder on every node, or one folder on a storage the admin names.

Each backup is `<UTC time>-<first 12 hex of its SHA-256>.<json|zip|mv.db>` with a `.sha256` file beside it
in `sha256sum` format, so `sha256sum -c` checks it anywhere. Names sort by time. The `.sha256` file is
written last: a backup without it is an interrupted copy and is ignored (and pruned with the old ones).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from builder.deploy import storagecfg
from builder.deploy.remote import Node, Transport
from builder.errors import die

NODE_FOLDER = "/var/lib/linstor-appliance/backups"
STORAGE_SUBFOLDER = "linstor-appliance/backups"
NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<sha>[0-9a-f]{12})\.(?P<ext>json|zip|mv\.db)$")
# Storage types whose content is a plain folder on the node (pvesm path of a backup is below it).
PATH_TYPES = ("dir", "nfs", "cifs", "cephfs", "glusterfs")
DEFAULT_MOUNT = "/mnt/pve"

WRITE = ('mkdir -p "$1" && chmod 700 "$1" && base64 -d > "$1/.$2.tmp" && chmod 600 "$1/.$2.tmp" && '
         'mv -f "$1/.$2.tmp" "$1/$2"')  # fmt: skip


def file_name(data: bytes, extension: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stamp}-{hashlib.sha256(data).hexdigest()[:12]}.{extension}"


def sums_line(name: str, data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


@dataclass(frozen=True)
class Place:
    """One folder that holds backups, on one node (a shared storage is reached through this node)."""

    node: Node
    folder: str

    def __str__(self) -> str:
        return f"{self.node.name}:{self.folder}"


def node_places(nodes: list[Node], vmid: int) -> list[Place]:
    return [Place(node, f"{NODE_FOLDER}/{vmid}") for node in nodes]


def storage_place(root: Path, local: Node, storage: str, vmid: int) -> Place:
    entry = storagecfg.read(root).get(storage)
    if entry is None:
        die(f"there is no storage '{storage}' in /etc/pve/storage.cfg", hint="name a dir, NFS or CIFS storage")
    if entry.type not in PATH_TYPES:
        die(f"storage '{storage}' is of type {entry.type}, which has no folder for files",
            hint=f"name a storage of type {', '.join(PATH_TYPES)}")
    path = entry.options.get("path") or f"{DEFAULT_MOUNT}/{storage}"
    return Place(local, f"{path.rstrip('/')}/{STORAGE_SUBFOLDER}/{vmid}")


class Store:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _local(self, place: Place) -> Path:
        return self.transport.root / place.folder.lstrip("/")

    def names(self, place: Place) -> list[str]:
        """Complete backups in `place`, oldest first."""
        if place.node.local:
            folder = self._local(place)
            listing = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        else:
            result = self.transport.script(place.node, 'ls -1a "$1" 2>/dev/null || true', place.folder)
            listing = result.stdout.split("\n")
        present = set(listing)
        return sorted(n for n in listing if NAME.match(n) and f"{n}.sha256" in present)

    def read(self, place: Place, name: str) -> bytes:
        """A stored backup, checked against its .sha256 file."""
        if place.node.local:
            folder = self._local(place)
            try:
                data = (folder / name).read_bytes()
                sums = (folder / f"{name}.sha256").read_text()
            except FileNotFoundError:
                die(f"there is no backup {name} in {place}", hint="list them with 'linstor-appliance backup --list'")
        else:
            result = self.transport.script(place.node, 'base64 -w 0 "$1/$2" && echo && cat "$1/$2.sha256"',
                                           place.folder, name)  # fmt: skip
            encoded, _, sums = result.stdout.partition("\n")
            data = base64.b64decode(encoded)
        expected = sums.split()[0] if sums.split() else ""
        if hashlib.sha256(data).hexdigest() != expected:
            die(f"the backup {place}/{name} does not match its .sha256 file",
                hint="it was damaged or changed; choose another backup")
        return data

    def write(self, place: Place, name: str, data: bytes) -> None:
        if place.node.local:
            folder = self._local(place)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            sums = sums_line(name, data).encode()
            for target, content in ((folder / name, data), (folder / f"{name}.sha256", sums)):
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_bytes(content)
                tmp.chmod(0o600)
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            return
        self.transport.run(place.node, ["sh", "-c", WRITE, "sh", place.folder, name],
                           input=base64.b64encode(data).decode())  # fmt: skip
        self.transport.run(place.node, ["sh", "-c", WRITE, "sh", place.folder, f"{name}.sha256"],
                           input=base64.b64encode(sums_line(name, data).encode()).decode())  # fmt: skip

    def prune(self, place: Place, keep: int) -> list[str]:
        """Delete all but the newest `keep` backups (and interrupted copies older than the oldest kept)."""
        names = self.names(place)
        old = names[: max(0, len(names) - keep)]
        if not old:
            return []
        doomed = [f for n in old for f in (n, f"{n}.sha256")]
        if place.node.local:
            for item in doomed:
                (self._local(place) / item).unlink(missing_ok=True)
        else:
            self.transport.run(place.node, ["sh", "-c", 'cd "$1" && shift && rm -f -- "$@"', "sh", place.folder,
                                            *doomed])  # fmt: skip
        return old


def age_seconds(name: str, now: float | None = None) -> float:
    match = NAME.match(name)
    if not match:
        return float("inf")
    made = calendar.timegm(time.strptime(match.group("stamp"), "%Y%m%dT%H%M%SZ"))
    return (now or time.time()) - made


def extension_of(name: str) -> str:
    match = NAME.match(name)
    if not match:
        die(f"'{name}' is not the name of a linstor-appliance backup", hint="use a file <time>-<sha>.json|zip|mv.db")
    return match.group("ext")
