"""What `linstor-appliance backup` was asked to do (declared once, as the deploy's options are)."""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass
from pathlib import Path

from builder.deploy.options import STATE_DIR, STORAGE_ID_RE, parse_vmid
from builder.errors import die
from builder.optiontable import Need, Option, OptionTable, Switch, whole_number

DEFAULT_KEEP = 14


class Mode(enum.StrEnum):
    now = "now"
    # Run by the node timer: only on the node where the VM runs, only when the database changed or the
    # newest backup is older than a day.
    timer = "timer"
    list = "list"


@dataclass(frozen=True)
class Options:
    vmid: int
    storage: str | None
    keep: int
    max_age: int
    mode: Mode
    ssh_options: tuple[str, ...]
    root: Path = Path("/")

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


def _storage(value: str) -> str:
    if not STORAGE_ID_RE.match(value):
        die(f"invalid storage ID '{value}'", hint="name a dir, NFS or CIFS storage of the cluster")
    return value


OPTIONS: OptionTable[Options] = OptionTable(Options, "linstor-appliance backup", outside=("root",), options=(
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID", need=Need.ALWAYS,
           missing_hint="give the VMID of the controller VM, e.g. --vmid 100"),
    Option("storage", "--storage", _storage, None, "keep the backups on this dir, NFS or CIFS storage instead of "
           "on every node", "ID", default_help="every node's /var/lib/linstor-appliance/backups/<vmid>"),
    Option("keep", "--keep", whole_number(1, 10000), DEFAULT_KEEP, "how many backups to keep in each place", "N"),
    Option("max_age", "--max-age", whole_number(1, 24 * 366), 24, "with --timer: hours after which a backup is taken "
           "even of an unchanged database", "HOURS"),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True),
    Option("mode", None, None, Mode.now, switches=(
        Switch("--timer", Mode.timer, "as the node timer runs it: only where the VM runs, and only when the "
               "database changed since the newest backup (or that is older than --max-age)"),
        Switch("--list", Mode.list, "list the stored backups, newest last"))),
))  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> Options:
    return OPTIONS.build(OPTIONS.parse(args), root=root)
