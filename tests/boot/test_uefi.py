"""The DHCP appliance again, under OVMF: the UEFI boot path, and a second first boot of the same image.

test_dhcp_seabios booted the same image before; both boots start from the unchanged image, so both
are first boots and must each make their own machine-id and SSH host keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import BuiltImage

from builder.qemu import Firmware

from .checks import Identity, before_login, boot_loader_errors, failed_units, interactive_prompts, read_identity
from .machine import Booter, Machine

pytestmark = pytest.mark.boot

REFERENCE = "dhcp-seabios"


@pytest.fixture(scope="module")
def vm(boot: Booter, appliance_image: BuiltImage) -> Iterator[Machine]:
    with boot("dhcp-ovmf", appliance_image.raw, Firmware.uefi) as machine:
        yield machine


@pytest.fixture(scope="module")
def reference_identity(boot: Booter, appliance_image: BuiltImage,
                       identities: dict[str, Identity]) -> Identity:
    """The identity of the SeaBIOS boot of the same image; booted here only when that module did not run."""
    if REFERENCE not in identities:
        with boot(f"{REFERENCE}-again", appliance_image.raw, Firmware.bios) as machine:
            identities[REFERENCE] = read_identity(machine.shell)
    return identities[REFERENCE]


# -- 1. console ------------------------------------------------------------------------------------------------


def test_boots_to_a_serial_login_prompt_without_stopping(vm: Machine) -> None:
    assert vm.record.login_prompt_s is not None
    assert interactive_prompts(before_login(vm.shell.transcript())) == []


def test_booted_through_uefi(vm: Machine) -> None:
    assert vm.shell.run("test -d /sys/firmware/efi")[0] == 0, "the kernel did not start under UEFI"
    assert "BdsDxe: starting" in before_login(vm.shell.transcript())


def test_no_failed_units(vm: Machine) -> None:
    assert failed_units(vm.shell) == []


def test_boot_log_has_no_boot_loader_errors(vm: Machine) -> None:
    assert boot_loader_errors(before_login(vm.shell.transcript())) == []


# -- 5. identity -----------------------------------------------------------------------------------------------


def test_two_boots_of_one_image_are_two_machines(vm: Machine, reference_identity: Identity) -> None:
    mine = read_identity(vm.shell)
    for identity in (mine, reference_identity):
        assert len(identity.machine_id) == 32 and identity.machine_id != "uninitialized"
        assert identity.host_keys, "no SSH host keys"
    assert mine.machine_id != reference_identity.machine_id
    assert mine.host_keys.isdisjoint(reference_identity.host_keys)
