"""Reading /etc/pve/storage.cfg the way PVE's SectionConfig does, to find the drbd entries.

Read-only on purpose: every change goes through `pvesm set`, which takes the cluster lock and
rewrites the file canonically (proxmox.md sections 2 and 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import die

HEADER = re.compile(r"^(\S+):\s*(\S+)\s*$")
PROPERTY = re.compile(r"^\s+(\S+)(\s+(.*\S))?\s*$")


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
    """Sections in file order. As in SectionConfig, an empty line ends a section, '#' lines do not,
    and a header right after property lines (no blank line) is not a header."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            current = None
            continue
        if re.match(r"^\s*#", line):
            continue
        if current is None:
            match = HEADER.match(line)
            if match and not line[0].isspace():
                current = Entry(type=match.group(1).lower(), id=match.group(2))
                entries.setdefault(current.id, current)
            continue
        prop = PROPERTY.match(line)
        if prop:
            current.options.setdefault(prop.group(1), prop.group(3) if prop.group(3) is not None else "1")
    return entries


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
