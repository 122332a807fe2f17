"""The options of `linstor-appliance status`, declared once as the deploy's are (builder/optiontable.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from builder.deploy.options import parse_vmid
from builder.optiontable import Option, OptionTable, Switch, whole_number


@dataclass(frozen=True)
class StatusOptions:
    vmid: int | None
    redundancy: int | None
    json: bool
    timeout: float
    ssh_options: tuple[str, ...]
    root: Path = Path("/")


def _seconds(value: str) -> float:
    return float(whole_number(1, 600)(value))


OPTIONS: OptionTable[StatusOptions] = OptionTable(StatusOptions, "linstor-appliance status", outside=("root",),
                                                  options=(
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID",
           default_help="the only deploy recorded on this node"),
    Option("redundancy", "--redundancy", whole_number(1), None, "diskful replicas the VM disk should have", "N",
           default_help="the deploy's --redundancy"),
    Option("json", None, None, False, switches=(Switch("--json", True, "print JSON for scripts"),)),
    Option("timeout", "--timeout", _seconds, 10.0, "how long to wait for each node, the VM and the controller, in "
           "seconds", "SECONDS"),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True),
))  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> StatusOptions:
    return OPTIONS.build(OPTIONS.parse(args), root=root)
