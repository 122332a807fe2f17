"""The VM's nftables allowlist: who may reach SSH and the REST API, and a check that nft loads it.

nft refuses a whole file when the elements of an interval set overlap ("conflicting intervals
specified"): a node address inside an --allow-from network, a network inside another, the same
entry twice. nftables.service then fails and, were it not for the appliance's firewall check, the
controller's unauthenticated REST API would answer anyone. So the sources are collapsed per address
family first (contained and duplicate entries vanish, neighbouring blocks merge), and the rendered
file is checked with `nft -c` on this node before it goes into the VM disk.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from builder import log
from builder.errors import die
from builder.resources import render
from builder.run import run, which

TEMPLATE = "image/templates/deploy/nftables.conf.j2"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allowlist:
    """The sources that may reach the served ports, as non-overlapping nft set elements per family."""

    v4: tuple[str, ...]
    v6: tuple[str, ...]

    @property
    def elements(self) -> tuple[str, ...]:
        return self.v4 + self.v6


def source(text: str) -> Network:
    """A node address or a network; an IPv6 zone (fe80::1%vmbr0) says nothing to nft and is dropped."""
    try:
        return ipaddress.ip_network(text.strip().split("%", 1)[0], strict=False)
    except ValueError:
        die(f"'{text}' is neither an IP address nor a network", hint="the firewall allowlist takes addresses only")


def element(network: Network) -> str:
    # A single address is written as such, the way `nft list ruleset` shows it.
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def allowlist(addresses: Iterable[str], networks: Iterable[Network]) -> Allowlist:
    """Node addresses and --allow-from networks, collapsed so that no two elements overlap."""
    everything = [source(a) for a in addresses] + list(networks)
    v4 = [n for n in everything if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in everything if isinstance(n, ipaddress.IPv6Network)]
    return Allowlist(v4=tuple(element(n) for n in ipaddress.collapse_addresses(v4)),
                     v6=tuple(element(n) for n in ipaddress.collapse_addresses(v6)))  # fmt: skip


def ruleset(ports: Sequence[int], allowed: Allowlist | None, vmid: int | None = None) -> str:
    """/etc/nftables.conf for the appliance; allowed=None opens the served ports to every address."""
    v4, v6 = (list(allowed.v4), list(allowed.v6)) if allowed else ([], [])
    return render(TEMPLATE, vmid=vmid, ports=sorted(set(ports)), allow_any=allowed is None, allowed_v4=v4,
                  allowed_v6=v6)  # fmt: skip


def check(text: str) -> None:
    """Let this node's nft parse and check the ruleset (nothing is loaded); die when it refuses."""
    nft = which("nft")
    if nft is None:
        log.info("nft is not installed on this node, so the VM's firewall is not checked here; the appliance "
                 "checks it at boot and keeps its controller stopped if it does not load")  # fmt: skip
        return
    result = run([nft, "-c", "-f", "-"], input=text, capture=True, check=False, timeout=60)
    if result.returncode != 0:
        errors = [line.strip() for line in result.stderr.splitlines() if "Error:" in line]
        reason = errors[0] if errors else (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        die(f"nft rejects the firewall for the VM ({reason.strip()})",
            hint="nothing was written into the VM disk; check the --allow-from networks and report this as a bug")
    log.debug("nft -c accepts the VM's firewall")
