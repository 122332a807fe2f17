"""The default flavour, Ubuntu 24.04, booted once under each firmware: SeaBIOS (Proxmox's default) and OVMF.

The image is the one tests/image/test_ubuntu.py inspects (the ubuntu_image fixture): built only when
Ubuntu's archive answers; otherwise these tests are deselected with the rest of the Ubuntu tests. Both
boots start from the unchanged image; the firmware parameter makes pytest finish one boot before the
next starts, so only one VM runs at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import ImageOutputs

from builder.qemu import Firmware

from .checks import before_login, boot_loader_errors, failed_units, interactive_prompts
from .machine import USER, Booter, Machine

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module", params=[Firmware.bios, Firmware.uefi], ids=["seabios", "ovmf"])
def vm(request: pytest.FixtureRequest, boot: Booter, ubuntu_image: ImageOutputs) -> Iterator[Machine]:
    firmware: Firmware = request.param
    name = "ubuntu-seabios" if firmware is Firmware.bios else "ubuntu-ovmf"
    with boot(name, ubuntu_image.raw, firmware) as machine:
        yield machine


def test_boots_to_a_serial_login_prompt_without_stopping(vm: Machine) -> None:
    assert vm.record.login_prompt_s is not None
    console = before_login(vm.shell.transcript())
    assert interactive_prompts(console) == []
    assert "ttyS0" in vm.shell.check(f"ps -o tty= -u {USER}").split()


def test_booted_through_the_firmware_it_was_given(vm: Machine) -> None:
    console = before_login(vm.shell.transcript())
    uefi = vm.shell.run("test -d /sys/firmware/efi")[0] == 0
    if vm.firmware is Firmware.uefi:
        assert uefi, "the kernel did not start under UEFI"
        assert "BdsDxe: starting" in console
    else:
        assert not uefi
        assert "SeaBIOS" in console
        # Ubuntu's GRUB prints nothing on the way; the kernel command line shows it was GRUB that loaded it.
        assert "BOOT_IMAGE=" in vm.shell.check("cat /proc/cmdline"), "SeaBIOS did not boot through GRUB"


def test_first_login_forces_a_new_password(vm: Machine) -> None:
    assert vm.login_record is not None and vm.login_record.password_change_forced


def test_no_failed_units(vm: Machine) -> None:
    assert failed_units(vm.shell) == []


def test_boot_log_has_no_boot_loader_errors(vm: Machine) -> None:
    assert boot_loader_errors(before_login(vm.shell.transcript())) == []


def test_controller_answers_through_the_forward(vm: Machine) -> None:
    vm.wait_for_api()
    assert vm.shell.check("systemctl is-active linstor-controller.service").strip() == "active"
