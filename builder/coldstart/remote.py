"""`coldstart install` run on a cluster node by another command: sync (a new node) and upgrade --commit (the
nodes that have it, once the VM boots another disk). Install is idempotent and reads the VM's configuration
itself, so running it again is how a node's helper follows the controller VM's disk.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from builder.coldstart.settings import Settings
from builder.deploy.remote import Node, Transport
from builder.errors import ApplianceError

COMMAND = ("linstor-appliance", "coldstart", "install")
# Install waits at most 10 s for the cluster lock; the rest is local files and a few systemctl calls.
TIMEOUT = 300.0
# The install options and the Settings field each one sets (probe_timeout and clear_wait have none).
OPTIONS = (("--snippets-storage", "snippets_storage"), ("--boot-wait", "boot_wait"), ("--hook-wait", "hook_wait"),
           ("--retry-interval", "retry_interval"))  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    node: str
    command: str  # as an admin would type it on that node
    ok: bool
    detail: str = ""  # why it did not work: the exit code and its last line, or why it could not run


def install(transport: Transport, node: Node, options: Sequence[str] = ()) -> Outcome:
    """`linstor-appliance coldstart install [options]` on `node`; never raises for a node that fails."""
    argv = [*COMMAND, *options]
    command = shlex.join(argv)
    try:
        result = transport.run(node, argv, check=False, timeout=TIMEOUT)
    except ApplianceError as error:  # not installed on this node, or it did not finish in time
        return Outcome(node.name, command, False, error.message)
    if result.returncode == 0:
        return Outcome(node.name, command, True)
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return Outcome(node.name, command, False, f"exit code {result.returncode}" + (f": {lines[-1]}" if lines else ""))


def recorded(marker: str) -> dict[str, object]:
    """What a node's install record (its marker file) says it was installed with; {} when it says nothing."""
    try:
        data = json.loads(marker)
    except json.JSONDecodeError:
        return {}
    settings = data.get("settings") if isinstance(data, dict) else None
    return dict(settings) if isinstance(settings, dict) else {}


def recorded_resource(marker: str) -> str | None:
    """The disk resource the node's helper waits for at boot, when its install recorded it."""
    resource = recorded(marker).get("resource")
    return resource if isinstance(resource, str) and resource else None


def recorded_options(marker: str) -> list[str]:
    """The options that install the node's helper again as it was (install's defaults fill in the rest)."""
    saved = recorded(marker)
    settings = Settings.from_json(saved)
    defaults = Settings()
    options = []
    if isinstance(saved.get("controller_vmid"), int):
        options += ["--controller-vmid", str(saved["controller_vmid"])]
    for option, name in OPTIONS:
        value = getattr(settings, name)
        if value != getattr(defaults, name):
            options += [option, str(value)]
    return options
