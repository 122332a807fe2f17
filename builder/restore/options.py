"""What `linstor-appliance restore` was asked to do (declared once, as the deploy's options are)."""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass
from pathlib import Path

from builder.deploy.options import STATE_DIR, STORAGE_ID_RE, parse_image, parse_vmid
from builder.errors import die
from builder.optiontable import Need, OnResume, Option, OptionTable, Switch, whole_number

LATEST = "latest"


class Mode(enum.StrEnum):
    restore = "restore"
    resume = "resume"


def _backup(value: str) -> str:
    if value == LATEST:
        return value
    path = Path(value).expanduser().absolute()
    return str(path)


def _storage(value: str) -> str:
    if not STORAGE_ID_RE.match(value):
        die(f"invalid storage ID '{value}'", hint="name the storage the backups were kept on")
    return value


@dataclass(frozen=True)
class Options:
    vmid: int
    backup: str
    image: Path | None
    storage: str | None
    to_host: bool
    wait_timeout: float
    ssh_options: tuple[str, ...]
    mode: Mode
    root: Path = Path("/")

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def to_json(self) -> dict[str, object]:
        return OPTIONS.to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, object], root: Path) -> Options:
        return OPTIONS.build(OPTIONS.from_json(data), root=root)


OPTIONS: OptionTable[Options] = OptionTable(Options, "linstor-appliance restore", outside=("root",), options=(
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID", need=Need.ALWAYS,
           missing_hint="give the VMID of the controller VM, e.g. --vmid 100", on_resume=OnResume.RECORDED),
    Option("backup", "--backup", _backup, LATEST, "the backup file (with its .sha256 beside it), or 'latest'",
           "FILE|latest"),
    Option("image", "--image", parse_image, None, "the appliance image to write onto the VM disk again (.raw or "
           ".raw.zst, with manifest.json and SHA256SUMS beside it)", "FILE",
           default_help="only when the disk holds no appliance"),
    Option("storage", "--storage", _storage, None, "look for 'latest' on this storage instead of this node",
           "ID"),
    Option("to_host", None, None, False, switches=(
        Switch("--to-host", True, "run the controller on this node again from the backup; the VM stays "
               "stopped and leaves HA"),)),
    Option("wait_timeout", "--wait-timeout", lambda v: float(whole_number(1)(v)), 300.0, "how long to wait for a "
           "controller, in seconds", "SECONDS", on_resume=OnResume.GIVEN),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True, on_resume=OnResume.GIVEN),
    Option("mode", None, None, Mode.restore, on_resume=OnResume.GIVEN, switches=(
        Switch("--resume", Mode.resume, "continue an interrupted restore of this VMID"),)),
))  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> Options:
    return OPTIONS.build(OPTIONS.parse(args), root=root)
