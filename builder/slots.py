"""The controller VM's two disk slots: `a` is the deploy's disk resource, `b` the one beside it.

An upgrade writes the new image into the slot the VM does not boot from and switches the VM's boot disk
(scsi0) to it; the other slot keeps the previous appliance until `upgrade --commit` frees it. Which slot
runs is read from the VM's configuration, never assumed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SLOTS = ("a", "b")
BOOT_DISK = "scsi0"
DEVICE = re.compile(r"^/dev/drbd/by-res/(?P<resource>[^/,]+)/0(?:,|$)")


def resource(vmid: int, slot: str) -> str:
    """Slot a is the deploy's resource name; b adds a suffix outside every plugin name pattern too."""
    return f"linstor-appliance-{vmid}" if slot == "a" else f"linstor-appliance-{vmid}-{slot}"


def device(name: str) -> str:
    return f"/dev/drbd/by-res/{name}/0"


def res_file(name: str) -> str:
    """The satellite's DRBD configuration of a disk resource, which brings it up without a controller."""
    return f"/var/lib/linstor.d/{name}.res"


def disk_value(name: str) -> str:
    """The VM's drive for a disk resource, as the deploy writes it (device path, on every node)."""
    return f"{device(name)},shared=1"


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def slot_of(vmid: int, name: str) -> str | None:
    return next((slot for slot in SLOTS if resource(vmid, slot) == name), None)


def booted(config: dict[str, Any] | None) -> str | None:
    """The disk resource the VM boots from (its scsi0 device path), or None."""
    match = DEVICE.match(str((config or {}).get(BOOT_DISK, "")))
    return match.group("resource") if match else None


def journal_path(state_dir: Path, vmid: int) -> Path:
    """The journal of the newest upgrade of VM `vmid` (builder.upgrade.runner)."""
    return state_dir / f"upgrade-{vmid}.json"
