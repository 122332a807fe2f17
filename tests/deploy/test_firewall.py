"""The VM's firewall: every valid allowlist loads in a real nft, and the appliance fails closed when none does.

Each rendered ruleset is loaded with the host's own nft in a network namespace of its own (`unshare -n`),
so nothing here touches the host's firewall. nft is a host dependency (tools/install-host-deps); the
tests only skip where it is missing.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from builder import render
from builder.deploy import firewall
from builder.deploy.context import Context
from builder.deploy.steps import inject
from builder.errors import ApplianceError
from deploy.nftcheck import in_namespace, nft_binary, nft_loads

PROJECT = Path(__file__).resolve().parents[2]
FIREWALL_CHECK = PROJECT / "image/mkosi.extra/usr/lib/linstor-appliance/firewall-check"
PORTS = (22, 3370, 3371)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def deploy_ruleset(node_ips: list[str], allow_from: list[Network], ports: tuple[int, ...] = PORTS) -> str:
    """What the inject step writes to /etc/nftables.conf for these nodes and --allow-from networks."""
    ctx = SimpleNamespace(options=SimpleNamespace(vmid=100, allow_from=tuple(allow_from)),
                          f=SimpleNamespace(node_ips=node_ips, firewall_ports=ports))  # fmt: skip
    return inject.firewall(cast(Context, ctx))


def elements(text: str, name: str) -> list[Network]:
    found = re.search(rf"set {name} {{[^}}]*elements = {{ ([^}}]*) }}", text)
    return [ipaddress.ip_network(e.strip()) for e in found.group(1).split(",")] if found else []


def span(networks: list[Network]) -> int:
    """How many addresses the networks cover together, counted by merging their intervals."""
    total, end = 0, -1
    for first, last in sorted((int(n.network_address), int(n.broadcast_address)) for n in networks):
        if last > end:
            total += last - max(first, end + 1) + 1
            end = last
    return total


def random_case(rng: random.Random) -> tuple[list[str], list[Network]]:
    """Node addresses and --allow-from networks with the overlaps people write: nodes inside networks,
    networks inside networks, duplicates, single hosts, neighbours, IPv4 and IPv6 mixed."""
    v4_base = ipaddress.ip_network(f"10.{rng.randrange(4)}.0.0/16")
    v6_base = ipaddress.ip_network(f"fd00:{rng.randrange(4)}::/48")
    nodes: list[str] = []
    for _ in range(rng.randint(1, 5)):
        base = v4_base if rng.random() < 0.7 else v6_base
        nodes.append(str(base.network_address + rng.randrange(1, 64)))
    if rng.random() < 0.3:
        nodes.append(rng.choice(nodes))  # the same node address twice (two rings)
    networks: list[Network] = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.3 and nodes:  # a network around a node
            address = ipaddress.ip_address(rng.choice(nodes))
            prefix = rng.randint(address.max_prefixlen - 10, address.max_prefixlen)
            networks.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        elif kind < 0.5 and networks:  # inside, around or equal to one given already
            other = rng.choice(networks)
            prefix = max(0, min(other.max_prefixlen, other.prefixlen + rng.randint(-4, 4)))
            address = other.network_address + (rng.randrange(other.num_addresses) if other.num_addresses > 1 else 0)
            networks.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
        elif kind < 0.6 and networks:  # the neighbour of one given already
            other = rng.choice(networks)
            if int(other.broadcast_address) + 1 < 2**other.max_prefixlen:
                networks.append(ipaddress.ip_network(f"{other.broadcast_address + 1}/{other.prefixlen}",
                                                     strict=False))  # fmt: skip
        else:
            base = v4_base if rng.random() < 0.6 else v6_base
            prefix = rng.randint(base.prefixlen, base.max_prefixlen)
            address = base.network_address + rng.randrange(base.num_addresses)
            networks.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    rng.shuffle(networks)
    return nodes, networks


FIXED_CASES: list[tuple[list[str], list[str]]] = [
    (["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.0/24"]),  # the nodes' own network
    (["10.0.0.1"], ["10.0.0.0/8", "10.1.0.0/16"]),  # a network inside another
    (["10.0.0.1", "10.0.0.1"], ["192.168.7.0/24", "192.168.7.0/24", "192.168.7.5/32"]),  # duplicates
    (["10.0.0.1", "fd00::1"], ["fd00::/64", "10.0.0.0/30", "fd00::1/128", "0.0.0.0/0"]),  # mixed, everything
    (["10.0.0.1"], ["10.0.0.0/25", "10.0.0.128/25"]),  # neighbours that make one block
    (["fe80::1%vmbr0", "fe80::2"], ["fe80::/64"]),  # a link-local node address with its zone
]


@pytest.mark.parametrize(("nodes", "networks"), FIXED_CASES)
def test_overlapping_allowlists_load(nodes: list[str], networks: list[str]) -> None:
    text = deploy_ruleset(nodes, [ipaddress.ip_network(n, strict=False) for n in networks])
    loaded = nft_loads(text)
    assert loaded.returncode == 0, loaded.stderr + text
    assert "table inet linstor_appliance" in loaded.stdout


def test_every_combination_of_nodes_and_networks_loads_and_allows_exactly_them() -> None:
    """Property: for random node addresses and --allow-from networks the ruleset loads, and its sets hold
    exactly the addresses given: every node and network inside, nothing else, no two elements overlapping."""
    rng = random.Random(20260101)
    for case in range(120):
        nodes, networks = random_case(rng)
        text = deploy_ruleset(nodes, networks)
        loaded = nft_loads(text)
        assert loaded.returncode == 0, f"case {case}: {nodes} {networks}\n{loaded.stderr}"
        for version, name in ((4, "allowed_v4"), (6, "allowed_v6")):
            given = [ipaddress.ip_network(a) for a in nodes] + networks
            given = [n for n in given if n.version == version]
            allowed = elements(text, name)
            assert span(allowed) == sum(n.num_addresses for n in allowed), f"case {case}: {name} overlaps"
            assert span(allowed) == span(given), f"case {case}: {name} {allowed} is not {given}"
            for network in given:
                assert any(network.subnet_of(a) for a in allowed), f"case {case}: {network} not allowed"  # type: ignore[arg-type]


def test_ruleset_drops_what_the_appliance_does_not_serve() -> None:
    text = firewall.ruleset([22, 3370, 3371], firewall.allowlist(["10.0.0.1"], [ipaddress.ip_network("fd00::/64")]),
                            vmid=100)  # fmt: skip
    assert "type filter hook input priority filter; policy drop;" in text
    for needed in ('iif "lo" accept', "ct state established,related accept",
                   "meta l4proto { icmp, ipv6-icmp } accept", "udp sport 67 udp dport 68 accept",
                   "udp sport 547 udp dport 546 accept"):  # fmt: skip
        assert needed in text
    # The image as built: the served ports answer everybody, all else is dropped just the same.
    built = firewall.ruleset(render.SERVED_PORTS, None)
    assert "policy drop;" in built and "tcp dport { 22, 3370, 3371 } accept" in built and "@allowed" not in built
    for ruleset in (text, built):
        loaded = nft_loads(ruleset)
        assert loaded.returncode == 0, loaded.stderr


def test_the_deploy_checks_the_ruleset_with_nft(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    nft_binary()
    if os.geteuid() != 0:
        pytest.skip("nft -c needs CAP_NET_ADMIN; the deploy runs as root")
    firewall.check(firewall.ruleset(PORTS, firewall.allowlist(["10.0.0.1"], [])))
    broken = "table inet linstor_appliance {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n" \
             "\t\telements = { 10.0.0.0/24, 10.0.0.1 }\n\t}\n}\n"
    with pytest.raises(ApplianceError, match="nft rejects the firewall for the VM .*conflicting intervals"):
        firewall.check(broken)
    # Where the node has no nft, the log says so and the appliance's own check is what remains.
    monkeypatch.setattr(firewall, "which", lambda tool: None)
    firewall.check(broken)
    assert "nft is not installed on this node" in capsys.readouterr().err


def test_appliance_firewall_check_keeps_the_controller_stopped(tmp_path: Path) -> None:
    """The boot-time check in the image, with the real nft in an empty network namespace."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    config = root / "etc/nftables.conf"
    issue = root / "run/issue.d/40-linstor-firewall.issue"
    good = firewall.ruleset(PORTS, firewall.allowlist(["10.0.0.1"], []), vmid=100)
    overlapping = good.replace("elements = { 10.0.0.1 }", "elements = { 10.0.0.0/24, 10.0.0.1 }")
    assert overlapping != good

    config.write_text(overlapping)
    result = in_namespace('nft -f "$1"; "$2" --root "$3"', str(config), str(FIREWALL_CHECK), str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "linstor-controller stays stopped: the appliance's firewall is not loaded" in result.stdout
    assert "nft refuses /etc/nftables.conf:" in result.stdout and "conflicting intervals" in result.stdout
    assert "conflicting intervals" in issue.read_text()

    # A file that loads but is not the appliance's (Debian's accept-all default) does not count either.
    config.write_text("flush ruleset\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority "
                      "filter; policy accept;\n\t}\n}\n")  # fmt: skip
    result = in_namespace('nft -f "$1" && "$2" --root "$3"', str(config), str(FIREWALL_CHECK), str(root))
    assert result.returncode == 1 and "does not define the appliance's table inet linstor_appliance" in result.stdout

    config.write_text(good)
    result = in_namespace('nft -f "$1" && "$2" --root "$3"', str(config), str(FIREWALL_CHECK), str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not issue.exists(), "a fixed firewall clears the message at the login prompt"


LISTEN = """
import socket, sys, time
servers = []
for port in map(int, sys.argv[1:]):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    servers.append(s)
print("listening", flush=True)
time.sleep(120)
"""
CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(3)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    print("open")
except TimeoutError:
    print("dropped")
except ConnectionRefusedError:
    print("refused")
"""


def test_ruleset_lets_in_only_allowed_sources_and_served_ports() -> None:
    """Two network namespaces of this test's own joined by a veth pair. The appliance's side loads the deploy's
    ruleset and listens on a served port (3370) and one it does not serve (8080); of two client addresses
    only the allowed one reaches 3370, and neither reaches 8080."""
    nft_binary()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("joining network namespaces needs root and iproute2")
    token = secrets.token_hex(3)
    appliance, client = f"la-fw-vm-{token}", f"la-fw-cl-{token}"
    text = firewall.ruleset(PORTS, firewall.allowlist(["192.0.2.10"], []), vmid=100)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    listener = None
    try:
        ip("netns", "add", appliance)
        ip("netns", "add", client)
        ip("-n", appliance, "link", "add", "vm0", "type", "veth", "peer", "name", "cl0", "netns", client)
        ip("-n", appliance, "addr", "add", "192.0.2.1/24", "dev", "vm0")
        ip("-n", client, "addr", "add", "192.0.2.10/24", "dev", "cl0")
        ip("-n", client, "addr", "add", "192.0.2.20/24", "dev", "cl0")
        for ns, dev in ((appliance, "vm0"), (client, "cl0"), (appliance, "lo"), (client, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        load = subprocess.run(["ip", "netns", "exec", appliance, nft_binary(), "-f", "-"], input=text,
                              capture_output=True, text=True)  # fmt: skip
        assert load.returncode == 0, load.stderr
        listener = subprocess.Popen(["ip", "netns", "exec", appliance, sys.executable, "-c", LISTEN, "3370", "8080"],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"

        def connect(source: str, port: int) -> str:
            result = subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", CONNECT, source,
                                     "192.0.2.1", str(port)], capture_output=True, text=True, timeout=60)  # fmt: skip
            return result.stdout.strip() or result.stderr.strip()

        assert connect("192.0.2.10", 3370) == "open"
        assert connect("192.0.2.10", 8080) == "dropped"
        assert connect("192.0.2.20", 3370) == "dropped"
        assert connect("192.0.2.20", 8080) == "dropped"
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for ns in (appliance, client):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
