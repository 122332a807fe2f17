"""Finding the controller VM: the one guest whose disk is a DRBD device attached by path."""

from __future__ import annotations

from dataclasses import dataclass

from builder.coldstart import pveconf
from builder.errors import die


@dataclass(frozen=True)
class ControllerVm:
    vmid: int
    node: str
    resource: str
    ha_managed: bool


def find(guests: dict[int, pveconf.Guest], ha: dict[int, dict[str, str]], vmid: int | None) -> ControllerVm:
    """The controller VM given by `vmid`, or the only guest with a /dev/drbd/by-res/<res>/0 disk."""
    if vmid is not None:
        guest = guests.get(vmid)
        if guest is None:
            die(f"VM {vmid} does not exist in this cluster", hint="pass the controller VM's id with --controller-vmid")
        candidates = [guest]
    else:
        candidates = [g for g in guests.values() if g.drbd_paths()]
        if not candidates:
            die("no VM has its disk attached by DRBD device path (/dev/drbd/by-res/<resource>/0)",
                hint="deploy the controller VM first (linstor-appliance deploy), or pass --controller-vmid")
        if len(candidates) > 1:
            ids = ", ".join(str(g.vmid) for g in candidates)
            die(f"several VMs have DRBD disks attached by path ({ids})", hint="pass --controller-vmid")
    guest = candidates[0]
    paths = guest.drbd_paths()
    if not paths:
        die(f"VM {guest.vmid} has no disk attached by DRBD device path",
            hint="the controller VM's disk must be /dev/drbd/by-res/<resource>/0 so it starts without a controller")
    return ControllerVm(guest.vmid, guest.node, paths[0], guest.vmid in ha)
