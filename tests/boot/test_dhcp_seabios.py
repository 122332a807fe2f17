"""The DHCP appliance under SeaBIOS (Proxmox's default firmware): one boot, checked from every side.

Console, login and sudo, DHCP networking, SSH through the forwarded port, the controller answering
python-linstor from the host, and the database backup timer. The machine's identity is remembered
for test_uefi, which boots the same image again.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path

import linstor
import pytest
from helpers import BuiltImage

from builder import allowlist
from builder.deploy import firewall
from builder.qemu import Firmware

from .checks import Identity, before_login, boot_loader_errors, failed_units, interactive_prompts
from .machine import NEW_PASSWORD, USER, Booter, Machine

pytestmark = pytest.mark.boot

STANDIN_VERSION = "1.34.0"
# An SSH login with the build-time key, tried at the login prompt, before the console login below.
FRESH_SSH: dict[str, subprocess.CompletedProcess[str]] = {}


@pytest.fixture(scope="module")
def vm(boot: Booter, appliance_image: BuiltImage,
       remember_identity: Callable[[Machine], Identity]) -> Iterator[Machine]:
    def ssh_before_console_login(machine: Machine) -> None:
        FRESH_SSH["result"] = machine.ssh(appliance_image.ssh_key, USER, "true", extra=("-o", "BatchMode=yes"))

    with boot("dhcp-seabios", appliance_image.raw, Firmware.bios, before_login=ssh_before_console_login) as machine:
        remember_identity(machine)
        yield machine


# -- 1. console ------------------------------------------------------------------------------------------------


def test_boots_to_a_serial_login_prompt_without_stopping(vm: Machine) -> None:
    assert vm.record.login_prompt_s is not None
    console = before_login(vm.shell.transcript())
    assert "GRUB" in console, "SeaBIOS did not hand over to GRUB on the serial console"
    assert "ttyS0" in console  # the getty's banner names its terminal
    assert interactive_prompts(console) == []
    # linbit's login shell is on the serial port (the root shell itself runs on sudo's own pty).
    assert "ttyS0" in vm.shell.check(f"ps -o tty= -u {USER}").split()


def test_no_failed_units(vm: Machine) -> None:
    assert failed_units(vm.shell) == []


def test_boot_log_has_no_grub_errors(vm: Machine) -> None:
    assert boot_loader_errors(before_login(vm.shell.transcript())) == []


# -- 2. login --------------------------------------------------------------------------------------------------


def test_first_login_forces_a_new_password(vm: Machine) -> None:
    assert vm.login_record is not None
    assert vm.login_record.password_change_forced
    assert vm.login_record.prompts == ("Current password:", "New password:", "Retype new password:")
    # The change stuck: the account no longer has to change its password.
    assert "password must be changed" not in vm.shell.check(f"chage -l {USER}")


def test_sudo_works_for_linbit_after_the_change(vm: Machine) -> None:
    # The fixture's shell is 'sudo -i' of linbit with the new password.
    assert vm.shell.check("echo $SUDO_USER; id -u").split() == [USER, "0"]
    assert vm.shell.run(f"id -nG {USER} | tr ' ' '\\n' | grep -qx sudo")[0] == 0


# -- 3. network ------------------------------------------------------------------------------------------------


def test_dhcp_gives_an_address(vm: Machine) -> None:
    addresses = vm.shell.check("ip -4 -o address show scope global")
    assert re.search(r"inet 10\.0\.2\.15/24 .*dynamic", addresses), addresses
    assert "proto dhcp" in vm.shell.check("ip -4 route show default")
    assert re.search(r"^\s*dhcp4: true\s*$", vm.shell.check("cat /etc/netplan/config.yaml"), re.MULTILINE)


# -- 4. ssh ----------------------------------------------------------------------------------------------------


def test_ssh_key_login(vm: Machine, appliance_image: BuiltImage) -> None:
    result = vm.ssh(appliance_image.ssh_key, USER, "id", "-un", extra=("-o", "BatchMode=yes"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == USER


def test_ssh_key_login_works_before_anyone_logged_in_on_the_console(vm: Machine) -> None:
    # The default password is still expired here; sshd's account check must not ask a batch key login for a
    # new one ("Password change required but no TTY available"). The console still forces the change
    # (test_first_login_forces_a_new_password, in this same boot).
    result = FRESH_SSH["result"]
    assert result.returncode == 0, result.stderr


def test_ssh_password_login_is_refused(vm: Machine, tmp_path: Path) -> None:
    # With the account's valid password: only the server's policy can refuse it.
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{NEW_PASSWORD}'\n")
    askpass.chmod(0o700)
    env = {"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0", "PATH": "/usr/bin:/bin"}
    result = vm.ssh(None, USER, "true", env=env, extra=(
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "NumberOfPasswordPrompts=1",
    ))
    assert result.returncode == 255, f"password login was accepted: {result.stdout}"
    methods = re.search(r"Permission denied \(([^)]*)\)", result.stderr)
    assert methods, result.stderr
    assert methods.group(1).split(",") == ["publickey"]


def test_ssh_root_login_is_refused(vm: Machine, appliance_image: BuiltImage) -> None:
    # Give root the very key that works for linbit, so only PermitRootLogin stands in the way.
    vm.shell.check("install -d -m 700 /root/.ssh && install -m 600 /etc/ssh/authorized_keys.d/linbit "
                   "/root/.ssh/authorized_keys")
    result = vm.ssh(appliance_image.ssh_key, "root", "true", extra=("-o", "BatchMode=yes"))
    assert result.returncode == 255, "root logged in over SSH"
    assert "Permission denied" in result.stderr


# -- 6. controller ---------------------------------------------------------------------------------------------


def test_controller_service_is_active(vm: Machine) -> None:
    vm.wait_for_api()
    assert vm.shell.check("systemctl is-active linstor-controller.service").strip() == "active"


def test_python_linstor_reaches_the_controller_through_the_forward(vm: Machine) -> None:
    vm.wait_for_api()
    with linstor.Linstor(f"linstor://127.0.0.1:{vm.api_port}", timeout=60) as client:
        assert client.controller_version().version == STANDIN_VERSION
        replies = client.node_list()
    assert replies and all(isinstance(reply, linstor.responses.NodeListResponse) for reply in replies)
    assert replies[0].nodes == []


# -- 9. database backups ---------------------------------------------------------------------------------------


def test_backup_timer_is_scheduled_and_produces_a_backup(vm: Machine) -> None:
    vm.wait_for_api()
    shell = vm.shell
    timer = dict(line.split("=", 1) for line in shell.check(
        "systemctl show linstor-db-backup.timer -p ActiveState -p UnitFileState -p NextElapseUSecRealtime "
        "-p Triggers").splitlines() if "=" in line)
    assert timer["ActiveState"] == "active"
    assert timer["UnitFileState"] == "enabled"
    assert timer["NextElapseUSecRealtime"], "the timer has no next run"
    assert shell.check("ls /var/lib/linstor/backups").split() == []
    shell.check(f"systemctl start {timer['Triggers']}", timeout=180)
    backups = shell.check("find /var/lib/linstor/backups -name 'linstor-backup-*' -size +0 -printf '%f\\n'").split()
    assert len(backups) == 1, shell.check(f"journalctl -b -u {timer['Triggers']} --no-pager")


# -- 10. firewall allowlist replaced in the running VM ---------------------------------------------------------


def apply_through_agent(vm: Machine, ruleset: bytes) -> dict[str, object]:
    """What 'qm guest exec --pass-stdin 1' does for sync: allowlist.APPLY_ARGV with the ruleset on stdin; the
    agent's final guest-exec-status."""
    agent = vm.agent()
    try:
        started = agent.call("guest-exec", {"path": allowlist.APPLY_ARGV[0], "arg": list(allowlist.APPLY_ARGV[1:]),
                                            "input-data": base64.b64encode(ruleset).decode(),
                                            "capture-output": True})  # fmt: skip
        status: dict[str, object] = {}
        for _ in range(60):
            status = agent.call("guest-exec-status", {"pid": started["pid"]})
            if status.get("exited"):
                break
            time.sleep(1)
        return status
    finally:
        agent.close()


def test_allowlist_update_through_the_guest_agent_is_live_without_a_reboot(vm: Machine) -> None:
    # What 'linstor-appliance sync' sends with 'qm guest exec --pass-stdin 1': the program and the ruleset on stdin.
    # 10.0.2.0/24 (QEMU's user network, where the host's connections come from) stays allowed.
    ruleset = firewall.ruleset([22, 3370, 3371], firewall.allowlist(["192.0.2.77"], [ip_network("10.0.2.0/24")]),
                               vmid=100)  # fmt: skip
    digest = hashlib.sha256(ruleset.encode()).hexdigest()
    status = apply_through_agent(vm, ruleset.encode())
    err = base64.b64decode(str(status.get("err-data", ""))).decode(errors="replace")
    assert status.get("exited") and status.get("exitcode") == 0, err
    live = vm.shell.check("nft list set inet linstor_appliance allowed_v4")
    assert "192.0.2.77" in live
    assert vm.shell.check(f"sha256sum < {allowlist.GUEST_PATH}").split()[0] == digest
    # A ruleset nft rejects changes nothing: the file and the loaded rules stay as they were.
    status = apply_through_agent(vm, b"table inet broken {")
    assert status.get("exited") and status.get("exitcode") != 0
    assert "192.0.2.77" in vm.shell.check("nft list set inet linstor_appliance allowed_v4")
    assert vm.shell.check(f"sha256sum < {allowlist.GUEST_PATH}").split()[0] == digest
