"""What `linstor-appliance upgrade` was asked to do (declared once, as the deploy's options are)."""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass
from pathlib import Path

from builder.deploy.options import STATE_DIR, parse_image, parse_vmid
from builder.optiontable import Need, OnResume, Option, OptionTable, Switch, whole_number


class Mode(enum.StrEnum):
    upgrade = "upgrade"
    dry_run = "dry-run"
    resume = "resume"
    rollback = "rollback"
    commit = "commit"
    # Only the second disk, made while the controller and the satellites still run one release (it cannot be
    # made once they differ: the controller then refuses the satellites).
    prepare = "prepare"


@dataclass(frozen=True)
class Options:
    vmid: int
    image: Path | None
    satellites: bool
    timeout: float
    ssh_options: tuple[str, ...]
    mode: Mode
    root: Path = Path("/")

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def manifest(self) -> Path | None:
        return self.image.parent / "manifest.json" if self.image else None

    @property
    def sums(self) -> Path | None:
        return self.image.parent / "SHA256SUMS" if self.image else None

    def to_json(self) -> dict[str, object]:
        return OPTIONS.to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, object], root: Path) -> Options:
        return OPTIONS.build(OPTIONS.from_json(data), root=root)


def _seconds(value: str) -> float:
    return float(whole_number(1)(value))


OPTIONS: OptionTable[Options] = OptionTable(Options, "linstor-appliance upgrade", outside=("root",), options=(
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID", need=Need.ALWAYS,
           missing_hint="give the VMID of the controller VM, e.g. --vmid 100", on_resume=OnResume.RECORDED),
    Option("image", "--image", parse_image, None, "the appliance image built for the target LINSTOR version "
           "(.raw or .raw.zst, with manifest.json and SHA256SUMS beside it)", "FILE", need=Need.FRESH),
    Option("satellites", None, None, False, switches=(
        Switch("--satellites", True, "also upgrade linstor-satellite (and what must move with it) on every node "
               "with apt, pinned to the target version, one node at a time"),)),
    Option("timeout", "--timeout", _seconds, 300.0, "how long the new controller may take to answer before the VM "
           "is switched back to the old disk, in seconds", "SECONDS", on_resume=OnResume.GIVEN),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True, on_resume=OnResume.GIVEN),
    Option("mode", None, None, Mode.upgrade, on_resume=OnResume.GIVEN, switches=(
        Switch("--dry-run", Mode.dry_run, "check and print the plan, change nothing"),
        Switch("--prepare", Mode.prepare, "only make the second disk, before the satellites are upgraded (the "
               "controller cannot create it once they run another release)"),
        Switch("--resume", Mode.resume, "continue an interrupted upgrade of this VMID"),
        Switch("--rollback", Mode.rollback, "boot the VM from the old disk again (until --commit)"),
        Switch("--commit", Mode.commit, "keep the upgrade: free the old disk once a verified backup of the new "
               "controller's database exists"))),
))  # fmt: skip

FRESH_MODES = (Mode.upgrade, Mode.dry_run, Mode.prepare)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> Options:
    mode: Mode = OPTIONS.read(args, "mode")
    return OPTIONS.build(OPTIONS.parse(args, fresh=mode in FRESH_MODES), root=root)
