"""qemu-server VM config files (/etc/pve/nodes/<node>/qemu-server/<vmid>.conf)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

LINE = re.compile(r"^([a-z][a-z_\-]*\d*):\s*(.*?)\s*$")
DRIVE_KEYS = re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$")
UNUSED = re.compile(r"^unused\d+$")
BUS_ORDER = ("ide", "sata", "scsi", "virtio")


@dataclass
class VmConfig:
    values: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # [PENDING], [special:cloudinit] and snapshot sections, kept verbatim.
    sections: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"#{line}" for line in self.description.split("\n")] if self.description else []
        out += [f"{key}: {self.values[key]}" for key in sorted(self.values) if key not in ("digest", "description")]
        text = "\n".join(out) + "\n"
        for section in self.sections:
            text += "\n" + section.rstrip("\n") + "\n"
        return text

    def qm_config_lines(self) -> list[str]:
        """`qm config`: sorted key: value, no digest, description escaped."""
        values = dict(self.values)
        if self.description:
            values["description"] = quote(self.description, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
        return [f"{key}: {values[key]}" for key in sorted(values) if key != "digest"]

    def drives(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if DRIVE_KEYS.match(k)}

    def protected(self) -> bool:
        return self.values.get("protection", "0") in ("1", "on", "yes", "true")


def parse(text: str) -> VmConfig:
    conf = VmConfig()
    description: list[str] = []
    blocks = re.split(r"^(?=\[)", text, flags=re.M)
    main = blocks[0]
    conf.sections = [b for b in blocks[1:] if b.strip()]
    for line in main.splitlines():
        if line.startswith("#"):
            description.append(line[1:])
            continue
        match = LINE.match(line)
        if match:
            conf.values[match.group(1)] = match.group(2)
    conf.description = "\n".join(description)
    return conf


def drive_file(value: str) -> str:
    """The volume or path of a drive option ('drbdstorage:pm-x_100,size=2G' -> 'drbdstorage:pm-x_100')."""
    first = value.split(",", 1)[0]
    if first.startswith("file="):
        return first[len("file=") :]
    for part in value.split(","):
        if part.startswith("file="):
            return part[len("file=") :]
    return first


def is_cdrom(value: str) -> bool:
    return "media=cdrom" in value.split(",")


def conf_path(pve: Path, node: str, vmid: int) -> Path:
    return pve / "nodes" / node / "qemu-server" / f"{vmid}.conf"


def find_owner(pve: Path, vmid: int) -> str | None:
    nodes = pve / "nodes"
    if not nodes.is_dir():
        return None
    for node_dir in sorted(nodes.iterdir()):
        if (node_dir / "qemu-server" / f"{vmid}.conf").exists():
            return node_dir.name
    return None


def all_vms(pve: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    nodes = pve / "nodes"
    for conf in sorted(nodes.glob("*/qemu-server/*.conf")) if nodes.is_dir() else []:
        if conf.stem.isdigit():
            found[int(conf.stem)] = conf.parent.parent.name
    return found


def default_boot_order(values: dict[str, str]) -> str:
    """qemu-server get_default_bootdevices: first disk, first cdrom, then every net device."""
    order: list[str] = []

    def first(cdrom: bool) -> str | None:
        for bus in BUS_ORDER:
            keys = sorted((k for k in values if k.startswith(bus) and DRIVE_KEYS.match(k)),
                          key=lambda k: int(re.sub(r"\D", "", k) or 0))  # fmt: skip
            for key in keys:
                if is_cdrom(values[key]) == cdrom:
                    return key
        return None

    for cdrom in (False, True):
        key = first(cdrom)
        if key:
            order.append(key)
    order += sorted(k for k in values if re.fullmatch(r"net\d+", k))
    return "order=" + ";".join(order) if order else ""
