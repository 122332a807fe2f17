"""The statically configured appliance on a disk of its own: network, guest agent, power-off, growing.

Two boots of one persistent copy of the image, as a Proxmox VM lives: the first checks the static
network and the guest agent, and ends with the agent's shutdown request; then the disk is resized
with qemu-img, and the second boot must use the new space (and still be the same machine).
Tests run in file order; those of the first boot come before the shutdown.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from helpers import STATIC_ADDRESS, STATIC_DNS, STATIC_GATEWAY, BuiltImage

from builder.qemu import Firmware

from .checks import Identity, failed_units, read_identity
from .console import scaled
from .machine import NEW_PASSWORD, Booter, Machine

pytestmark = pytest.mark.boot

GROWN_SIZE = 4 * 2**30
SHUTDOWN_BOUND = 90  # seconds from the agent's request until QEMU exits (scaled)


@pytest.fixture(scope="module")
def disk(static_image: BuiltImage, boot_workdir: Path) -> Iterator[Path]:
    """The VM's own disk: a sparse copy, so the built image stays as it was."""
    copy = boot_workdir / "static-disk.raw"
    subprocess.run(["cp", "--sparse=always", str(static_image.raw), str(copy)], check=True)
    yield copy
    copy.unlink()


@pytest.fixture(scope="module")
def vm(boot: Booter, disk: Path, remember_identity: Callable[[Machine], Identity]) -> Iterator[Machine]:
    with boot("static-seabios", disk, Firmware.bios, persist=True) as machine:
        remember_identity(machine)
        yield machine


@pytest.fixture(scope="module")
def powered_off(vm: Machine) -> float:
    """Seconds from the guest agent's shutdown request until the VM was off (QEMU exited)."""
    agent = vm.agent()
    try:
        agent.request_shutdown()
        return vm.shell.wait_for_exit(scaled(300))
    finally:
        agent.close()


@pytest.fixture(scope="module")
def grown_vm(boot: Booter, disk: Path, powered_off: float) -> Iterator[Machine]:
    subprocess.run(["qemu-img", "resize", "-q", "-f", "raw", str(disk), str(GROWN_SIZE)], check=True)
    # The password was changed at the first boot, and the disk kept it.
    with boot("static-grown", disk, Firmware.bios, persist=True, password=NEW_PASSWORD) as machine:
        yield machine


# -- 3. static network -----------------------------------------------------------------------------------------


def test_static_address_and_route_exactly(vm: Machine) -> None:
    addresses = vm.shell.check("ip -4 -o address show scope global").strip().splitlines()
    assert len(addresses) == 1, addresses
    assert f"inet {STATIC_ADDRESS} " in addresses[0]
    assert "dynamic" not in addresses[0], "the address came from DHCP"
    routes = vm.shell.check("ip -4 route show default").strip().splitlines()
    assert len(routes) == 1, routes
    assert re.match(rf"default via {re.escape(STATIC_GATEWAY)} dev \S+ proto static\b", routes[0]), routes


def test_netplan_config_says_static(vm: Machine) -> None:
    config = yaml.safe_load(vm.shell.check("cat /etc/netplan/config.yaml"))
    (interface,) = config["network"]["ethernets"].values()
    assert interface["dhcp4"] is False
    assert interface["addresses"] == [STATIC_ADDRESS]
    assert interface["routes"] == [{"to": "default", "via": STATIC_GATEWAY}]
    assert interface["nameservers"]["addresses"] == [STATIC_DNS]


def test_hostname_and_resolver_from_the_build(vm: Machine) -> None:
    assert vm.shell.check("hostname").strip() == "ctrl-static"
    resolver = vm.shell.check("resolvectl dns; resolvectl domain")
    assert STATIC_DNS in resolver and "example.test" in resolver


def test_no_failed_units(vm: Machine) -> None:
    assert failed_units(vm.shell) == []


# -- 7. guest agent --------------------------------------------------------------------------------------------


def test_guest_agent_answers_ping_and_lists_the_address(vm: Machine) -> None:
    agent = vm.agent()
    try:
        assert agent.call("guest-ping") == {}
        interfaces = agent.call("guest-network-get-interfaces")
    finally:
        agent.close()
    address = ipaddress.ip_interface(STATIC_ADDRESS)
    found = {(a["ip-address"], a["prefix"]) for i in interfaces for a in i.get("ip-addresses", [])}
    assert (str(address.ip), address.network.prefixlen) in found, interfaces


def test_guest_agent_shutdown_powers_off_in_time(vm: Machine, powered_off: float) -> None:
    assert powered_off < scaled(SHUTDOWN_BOUND)
    assert vm.console is not None and vm.console.child.exitstatus == 0
    assert "reboot: Power down" in vm.console.transcript()


# -- 8. growing ------------------------------------------------------------------------------------------------


def test_root_file_system_uses_the_resized_disk(grown_vm: Machine) -> None:
    shell = grown_vm.shell
    disk_bytes = int(shell.check("lsblk -bdno SIZE $(lsblk -no PKNAME $(findmnt -no SOURCE /) | sed 's|^|/dev/|')"))
    assert disk_bytes == GROWN_SIZE
    partition_bytes = int(shell.check("lsblk -bno SIZE $(findmnt -no SOURCE /)"))
    filesystem_bytes = int(shell.check("df -B1 --output=size / | tail -n 1"))
    # The root partition is the last one: it reaches (almost) the disk's end, and ext4 follows it.
    assert partition_bytes > GROWN_SIZE - 300 * 2**20
    assert filesystem_bytes > partition_bytes * 0.9, (partition_bytes, filesystem_bytes)


def test_the_machine_keeps_its_identity_across_reboots(
    grown_vm: Machine, identities: dict[str, Identity]
) -> None:
    assert read_identity(grown_vm.shell) == identities["static-seabios"]
