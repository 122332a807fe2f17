"""The deployed appliance as its deploy journal records it, for the commands that look after it later."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.deploy import journal as journals
from builder.deploy.journal import Journal
from builder.deploy.options import STATE_DIR, Options
from builder.errors import die


@dataclass(frozen=True)
class Deployment:
    options: Options
    journal: Journal


def journals_in(root: Path) -> list[Path]:
    return sorted((root / STATE_DIR).glob("deploy-[0-9]*.json"))


def load(root: Path, vmid: int | None) -> Deployment:
    """The deploy of `vmid`, or the only one recorded on this node when no VMID is given."""
    if vmid is None:
        found = [p for p in journals_in(root) if p.stem.removeprefix("deploy-").isdigit()]
        if not found:
            die(f"no deploy is recorded in /{STATE_DIR}", hint="run this on the node the deploy ran on, or "
                "give --vmid")  # fmt: skip
        if len(found) > 1:
            ids = ", ".join(p.stem.removeprefix("deploy-") for p in found)
            die(f"several deploys are recorded ({ids})", hint="choose one with --vmid")
        vmid = int(found[0].stem.removeprefix("deploy-"))
    path = journals.path_for(root / STATE_DIR, vmid)
    journal = Journal.load(path)
    if journal is None:
        die(f"no deploy of VM {vmid} is recorded in {path}", hint="run this on the node the deploy ran on")
    return Deployment(Options.from_json(journal.options, root), journal)
