"""Guest agents of simulated VMs: which running VM has an agent answering, and the guest's file system.

VMs do not boot in the simulation. A test that plays the appliance (tests/deploy/harness.py Guest) registers
the folder holding the guest's files; `qm guest exec` then runs the program with that folder's `etc` over
`/etc`, in its own mount and network namespace, so `nft` inside loads a ruleset into a network namespace of
its own, as a guest's kernel would, and never into the host's.
"""

from __future__ import annotations

import json
from pathlib import Path

from .state import SimState


def _path(state: SimState) -> Path:
    return state.dir / "sim" / "guests.json"


def registered(state: SimState) -> dict[str, str]:
    path = _path(state)
    return dict(json.loads(path.read_text())) if path.exists() else {}


def register(state: SimState, vmid: int, root: Path | None) -> None:
    with state.locked():
        guests = registered(state)
        if root is None:
            guests.pop(str(vmid), None)
        else:
            guests[str(vmid)] = str(root)
        _path(state).write_text(json.dumps(guests, indent=2, sort_keys=True))


def root(state: SimState, vmid: int) -> Path | None:
    found = registered(state).get(str(vmid))
    return Path(found) if found else None
