"""What runs inside a simulated VM, as far as the QEMU guest agent shows it from the host.

VMs do not boot in the simulation; a test that plays the guest (tests/deploy/harness.py `Guest`) registers
the folder that stands for the VM's root file system and says whether its qemu-guest-agent runs
(sim/guests.json: {"<vmid>": {"root": "<folder>", "agent": true}}). `qm guest exec` then runs the program
on the host with that folder's `etc` and `var/lib` overlaid on /etc and /var/lib in a private mount
namespace (as root; otherwise with the working directory at the folder), so `cat /etc/...` or a file the
controller in the VM wrote under /var/lib/linstor is the guest's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .fakes.remote import can_overlay
from .state import SimState

GUESTS_FILE = "guests.json"
OVERLAID = ("etc", "var/lib")


def registered(state: SimState) -> dict[str, dict[str, Any]]:
    return dict(state.read(GUESTS_FILE, {}))


def register(state: SimState, vmid: int, root: Path, agent: bool = True) -> None:
    with state.locked():
        data = registered(state)
        data[str(vmid)] = {"root": str(root), "agent": agent}
        state.write(GUESTS_FILE, data)


def unregister(state: SimState, vmid: int) -> None:
    with state.locked():
        data = registered(state)
        data.pop(str(vmid), None)
        state.write(GUESTS_FILE, data)


def agent_root(state: SimState, vmid: int) -> Path | None:
    """The guest's root folder while its agent answers, else None."""
    entry = registered(state).get(str(vmid))
    if not entry or not entry.get("agent"):
        return None
    return Path(entry["root"])


def root(state: SimState, vmid: int) -> Path | None:
    """The guest's registered root folder, whether or not its agent answers."""
    entry = registered(state).get(str(vmid))
    return Path(entry["root"]) if entry else None


def execute(state: SimState, root: Path, argv: list[str], stdin: bytes | None,
            timeout: float | None) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """Run argv "in the guest"; FileNotFoundError when the program does not exist there."""
    program = argv[0]
    if shutil.which(program) is None:
        raise FileNotFoundError(program)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    if not can_overlay():
        return subprocess.run(argv, input=stdin, capture_output=True, cwd=root, env=env, timeout=timeout,
                              check=False)  # fmt: skip
    work = state.sim / "ovl" / f"guest-{os.getpid()}"
    lines = ["set -e"]
    for index, sub in enumerate(OVERLAID):
        upper = root / sub
        upper.mkdir(parents=True, exist_ok=True)
        scratch = work / str(index)
        scratch.mkdir(parents=True, exist_ok=True)
        lines.append(f"mount -t overlay overlay -o lowerdir=/{sub},upperdir={upper},workdir={scratch} /{sub}")
    lines.append('cd /\nexec "$@"')
    try:
        # A network namespace of its own too: nft in the guest must never load rules into the host.
        return subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "--", "/bin/sh", "-c",
                               "\n".join(lines), "sh", *argv], input=stdin, capture_output=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
