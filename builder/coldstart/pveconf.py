"""Reading the Proxmox VE configuration cold-start support depends on, straight from /etc/pve.

Only reads: every change goes through PVE's own tools (pvesm, qm, ha-manager), which lock and
rewrite the files the way PVE expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from builder import sectionconfig

VM_LINE = re.compile(r"^([a-z][a-z_\-]*\d*):\s*(.*?)\s*$")
DRIVE = re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$")
DRBD_PATH = re.compile(r"^/dev/drbd/by-res/([^/]+)/0$")
DEFAULT_MAX_WORKERS = 4


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Storage:
    id: str
    type: str
    values: dict[str, str]

    @property
    def content(self) -> list[str]:
        return [c.strip() for c in self.values.get("content", "").split(",") if c.strip()]

    @property
    def controllers(self) -> list[str]:
        return [c.strip() for c in (self.values.get("controller") or "localhost").split(",") if c.strip()]

    @property
    def enabled(self) -> bool:
        return self.values.get("disable", "0") in ("0", "")


def storages(root: Path) -> dict[str, Storage]:
    return storages_in(_read(root / "etc/pve/storage.cfg"))


def storages_in(text: str) -> dict[str, Storage]:
    """The storages of a storage.cfg text."""
    parsed = sectionconfig.parse_storage(text).sections
    found = {sid: Storage(sid, s.type, dict(s.values)) for sid, s in parsed.items()}
    # PVE adds `local` when storage.cfg does not define it.
    found.setdefault("local", Storage("local", "dir", {"path": "/var/lib/vz", "content": "iso,vztmpl,backup"}))
    return found


def drbd_storages(root: Path) -> dict[str, Storage]:
    return drbd_only(storages(root))


def drbd_only(found: dict[str, Storage]) -> dict[str, Storage]:
    """The enabled drbd storages."""
    return {sid: s for sid, s in found.items() if s.type == "drbd" and s.enabled}


@dataclass(frozen=True)
class Guest:
    vmid: int
    node: str
    values: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.values.get("name", f"VM {self.vmid}")

    @property
    def onboot(self) -> bool:
        return self.values.get("onboot", "0") in ("1", "on", "yes", "true")

    @property
    def hookscript(self) -> str | None:
        return self.values.get("hookscript")

    def volumes(self) -> list[str]:
        """Volume ids or paths of the guest's disks (CD-ROMs and empty drives left out)."""
        found = []
        for key, value in self.values.items():
            if not DRIVE.match(key) or "media=cdrom" in value.split(","):
                continue
            first = value.split(",", 1)[0]
            volume = first[len("file=") :] if first.startswith("file=") else first
            if volume and volume != "none":
                found.append(volume)
        return found

    def storage_ids(self) -> set[str]:
        return {v.split(":", 1)[0] for v in self.volumes() if not v.startswith("/") and ":" in v}

    def drbd_paths(self) -> list[str]:
        """DRBD resources attached by device path (the controller VM's way)."""
        return [m.group(1) for v in self.volumes() if (m := DRBD_PATH.match(v))]


def parse_guest(vmid: int, node: str, text: str) -> Guest:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            break  # pending changes and snapshots follow
        match = VM_LINE.match(line)
        if match:
            values[match.group(1)] = match.group(2)
    return Guest(vmid, node, values)


def guests(root: Path, node: str = "*") -> dict[int, Guest]:
    """The guests of the cluster (or of one node), by VMID."""
    found: dict[int, Guest] = {}
    for conf in sorted((root / "etc/pve/nodes").glob(f"{node}/qemu-server/*.conf")):
        if conf.stem.isdigit():
            found[int(conf.stem)] = parse_guest(int(conf.stem), conf.parent.parent.name, _read(conf))
    return dict(sorted(found.items()))


def guest(root: Path, vmid: int) -> Guest | None:
    """One guest's configuration, on whichever node it is."""
    for conf in (root / "etc/pve/nodes").glob(f"*/qemu-server/{vmid}.conf"):
        return parse_guest(vmid, conf.parent.parent.name, _read(conf))
    return None


def ha_resources(root: Path) -> dict[int, dict[str, str]]:
    """vmid -> HA settings, for VMs PVE treats as HA-managed (any state but `ignored`)."""
    parsed = sectionconfig.parse_ha_resources(_read(root / "etc/pve/ha/resources.cfg")).sections
    managed = {}
    for section in parsed.values():
        if section.type == "vm" and section.id.isdigit() and section.values.get("state", "started") != "ignored":
            managed[int(section.id)] = dict(section.values)
    return managed


def cluster_nodes(root: Path) -> list[str]:
    """Node names from corosync.conf's nodelist; a single node without a cluster is just itself."""
    names = re.findall(r"^\s*name:\s*(\S+)\s*$", _read(root / "etc/pve/corosync.conf"), flags=re.M)
    return sorted(set(names)) or [local_node(root)]


def local_node(root: Path) -> str:
    text = _read(root / "etc/hostname").strip()
    if not text:
        import socket

        text = socket.gethostname()
    return text.split(".", 1)[0]


def max_workers(root: Path) -> int:
    """datacenter.cfg `max_workers`: the LRM's parallel resource workers per node."""
    match = re.search(r"^max_workers:\s*(\d+)\s*$", _read(root / "etc/pve/datacenter.cfg"), flags=re.M)
    return int(match.group(1)) if match else DEFAULT_MAX_WORKERS
