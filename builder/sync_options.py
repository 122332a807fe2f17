"""The options of `linstor-appliance sync`, declared once as the deploy's are (builder/optiontable.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.deploy.options import parse_vmid
from builder.optiontable import Option, OptionTable


@dataclass(frozen=True)
class SyncOptions:
    vmid: int | None
    ssh_options: tuple[str, ...]
    root: Path = Path("/")


OPTIONS: OptionTable[SyncOptions] = OptionTable(SyncOptions, "linstor-appliance sync", outside=("root",), options=(
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID",
           default_help="the only deploy recorded on this node"),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True),
))  # fmt: skip
