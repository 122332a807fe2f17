"""The drbd entries of /etc/pve/storage.cfg, as PVE reads them (builder/sectionconfig.py).

Read-only on purpose: every change goes through `pvesm set`, which takes the cluster lock and
rewrites the file canonically (proxmox.md sections 2 and 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builder import sectionconfig
from builder.errors import die


@dataclass
class Entry:
    type: str
    id: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def controllers(self) -> list[str]:
        value = self.options.get("controller", "")
        return [c.strip() for c in value.split(",") if c.strip()]


def parse(text: str) -> dict[str, Entry]:
    """Sections in file order, with the keys PVE keeps."""
    sections = sectionconfig.parse_storage(text).sections
    return {sid: Entry(type=s.type, id=sid, options=dict(s.values)) for sid, s in sections.items()}


def read(root: Path) -> dict[str, Entry]:
    path = root / "etc/pve/storage.cfg"
    try:
        text = path.read_text()
    except FileNotFoundError:
        die("/etc/pve/storage.cfg does not exist", hint="run this on a Proxmox VE node with the cluster file "
            "system mounted")  # fmt: skip
    return parse(text)


def drbd_entries(entries: dict[str, Entry]) -> list[Entry]:
    return [e for e in entries.values() if e.type == "drbd"]
