"""The appliance's firewall allowlist in the running VM: read it and replace it through the QEMU guest agent.

The deploy writes /etc/nftables.conf into the VM disk while the VM is off. Later changes (nodes joining
or leaving) reach the running VM through Proxmox's guest agent (`qm guest exec`, proxmox.md section 10),
which needs neither a network path nor a key in the VM: the new ruleset goes in on stdin, is checked
with `nft -c` first, replaces the file and is loaded at once. A ruleset nft rejects leaves the old one
loaded and in place. Every call goes through guestagent.run(), which reports an unreachable VM instead of
raising: status and sync go on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from builder import guestagent
from builder.deploy import controller
from builder.deploy.context import Context
from builder.deploy.options import Options
from builder.deploy.pve import Pve
from builder.deploy.steps.inject import firewall
from builder.guestagent import GuestResult

GUEST_PATH = "/etc/nftables.conf"
# Checked before it replaces the file; the file is what nftables.service loads at the next boot.
APPLY_SCRIPT = (
    f"umask 022 && cat > {GUEST_PATH}.new && nft -c -f {GUEST_PATH}.new && chmod 755 {GUEST_PATH}.new && "
    f"mv -f {GUEST_PATH}.new {GUEST_PATH} && nft -f {GUEST_PATH}"
)
APPLY_ARGV = ("sh", "-c", APPLY_SCRIPT)
READ_ARGV = ("cat", GUEST_PATH)
TIMEOUT = 30


@dataclass(frozen=True)
class _FirewallFacts:
    node_ips: list[str]
    firewall_ports: tuple[int, ...]


@dataclass(frozen=True)
class _FirewallInputs:
    options: Options
    f: _FirewallFacts


def ports(options: Options) -> tuple[int, ...]:
    """SSH and the controller's HTTP and HTTPS ports, as the deploy's preflight chose them from linstor.toml."""
    path = options.root / "etc/linstor/linstor.toml"
    _, http, https = controller.http_settings(path.read_text() if path.exists() else "")
    return tuple(sorted({22, http, https or 3371}))


def expected(options: Options, node_ips: Sequence[str]) -> str:
    """The ruleset the deploy would write for these nodes: rendered by the deploy's own firewall(ctx), which
    reads only the options and the facts' node addresses and ports."""
    inputs = _FirewallInputs(options, _FirewallFacts(list(node_ips), ports(options)))
    return firewall(cast(Context, inputs))


def guest_exec(pve: Pve, vmid: int, argv: tuple[str, ...], stdin: str | None = None) -> GuestResult:
    """One program in the VM, on the node that has its config (qm guest is node-local, section 10.5)."""
    entry = pve.vm(vmid)
    if entry is None:
        return GuestResult(None, error=f"VM {vmid} does not exist")
    node = pve.node(str(entry["node"]))
    return guestagent.run(pve.transport, node, vmid, argv, timeout=TIMEOUT, grace=15, stdin=stdin)


def read(pve: Pve, vmid: int) -> GuestResult:
    return guest_exec(pve, vmid, READ_ARGV)


def apply(pve: Pve, vmid: int, ruleset: str) -> GuestResult:
    return guest_exec(pve, vmid, APPLY_ARGV, stdin=ruleset)
