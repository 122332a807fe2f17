"""The boot tests' serial console driver and transcript checks, against a fake guest instead of a VM.

The fake guest behaves like the appliance's console as far as the driver cares: a getty that asks
for the cursor position before its prompt, login with an expired password, and then a real bash
whose 'sudo' and 'dmesg' are harmless shell functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import boot.machine
import pytest
from boot.checks import before_login, boot_loader_errors, interactive_prompts
from boot.console import Console, ConsoleError, GuestPanic
from boot.machine import Machine
from helpers import PANICKING_KERNEL

from builder.qemu import ACCEL_ENV, Firmware

FAKE_GUEST = r"""
import os, sys, termios, tty
def say(text):
    sys.stdout.write(text); sys.stdout.flush()
say("GRUB loading.\r\n[    0.000000] Linux version 6.12\r\n")
old = termios.tcgetattr(0)
tty.setcbreak(0)
say("\x1b[6n")
answer = ""
while not answer.endswith("R"):
    answer += sys.stdin.read(1)
termios.tcsetattr(0, termios.TCSANOW, old)
say("\r\nDebian GNU/Linux 13 fake ttyS0\r\n\r\nfake login: ")
user = input()
say("Password: ")
if input() != "linbit":
    say("\r\nLogin incorrect\r\n"); sys.exit(1)
if os.environ.get("EXPIRED") == "yes":
    say("You are required to change your password immediately (administrator enforced).\r\n")
    say("Changing password for %s.\r\nCurrent password: " % user); input()
    say("New password: "); new = input()
    say("Retype new password: "); input()
rc = os.environ["RCFILE"]
os.execvpe("bash", ["bash", "--rcfile", rc, "-i"], {**os.environ, "PS1": user + "@fake:~$ "})
"""

RCFILE = r"""
dmesg() { :; }
sudo() {
    read -rsp "[sudo] password for $USER_NAME: " pw; echo
    if [ "$pw" = "$SUDO_PASSWORD" ]; then PS1='root@fake:~# '; else echo "Sorry, try again."; fi
}
"""


@pytest.fixture
def guest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "guest.py"
    script.write_text(FAKE_GUEST)
    rc = tmp_path / "rc"
    rc.write_text(RCFILE)
    monkeypatch.setenv("RCFILE", str(rc))
    monkeypatch.setenv("USER_NAME", "linbit")
    return script


def start(guest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, expired: bool,
          sudo_password: str) -> Console:
    monkeypatch.setenv("EXPIRED", "yes" if expired else "no")
    monkeypatch.setenv("SUDO_PASSWORD", sudo_password)
    return Console([sys.executable, str(guest)], tmp_path / "serial.log")


def test_login_with_forced_change_then_commands_with_exit_codes(
    guest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = start(guest, tmp_path, monkeypatch, expired=True, sudo_password="N3w-pass")
    try:
        assert console.wait_for_login_prompt(10) < 10  # only if the cursor query was answered
        record = console.login("linbit", "linbit", "N3w-pass")
        assert record.password_change_forced
        assert record.prompts == ("Current password:", "New password:", "Retype new password:")
        console.become_root("N3w-pass")
        assert console.run("echo hello; false") == (1, "hello\n")
        assert console.run("printf 'a\\nb\\n'; (exit 7)") == (7, "a\nb\n")
        assert console.run("echo DONE:0:deadbeef") == (0, "DONE:0:deadbeef\n")
        assert console.check("echo $((6 * 7))") == "42\n"
        with pytest.raises(AssertionError, match="exit code 3"):
            console.check("exit_three() { return 3; }; exit_three")
    finally:
        console.close()
    assert "fake login:" in console.transcript()


def test_login_without_forced_change_is_recorded_as_such(
    guest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = start(guest, tmp_path, monkeypatch, expired=False, sudo_password="linbit")
    try:
        console.wait_for_login_prompt(10)
        record = console.login("linbit", "linbit", "unused")
        assert not record.password_change_forced and record.prompts == ()
    finally:
        console.close()


def test_refused_sudo_and_timeouts_name_the_transcript(
    guest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = start(guest, tmp_path, monkeypatch, expired=False, sudo_password="other")
    try:
        console.wait_for_login_prompt(10)
        console.login("linbit", "linbit", "unused")
        with pytest.raises(ConsoleError, match=r"sudo -i was refused; serial transcript: .*serial\.log"):
            console.become_root("linbit")
        with pytest.raises(ConsoleError, match="within 1s"):
            console.expect("never printed", 1)
    finally:
        console.close()


# -- a guest kernel that panics ---------------------------------------------------------------------------------


def test_a_kernel_panic_ends_the_wait_for_the_login_prompt(tmp_path: Path) -> None:
    script = tmp_path / "panics.py"
    script.write_text(PANICKING_KERNEL)
    console = Console([sys.executable, str(script)], tmp_path / "serial.log")
    try:
        # The guest hangs after the panic: only the panic line can end this wait before its timeout.
        with pytest.raises(GuestPanic) as raised:
            console.wait_for_login_prompt(60)
    finally:
        console.close()
    message = str(raised.value)
    assert message.startswith("the guest kernel panicked (Kernel panic - not syncing: Fatal exception in interrupt)")
    assert f"serial transcript: {tmp_path / 'serial.log'}" in message
    assert "Oops: int3" in message.split("last output:")[1]


def boot_panicking_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, panic_once: bool) -> Machine:
    """A Machine whose "QEMU" is the fake guest behind a kernel that panics (the guest fixture sets up its shell)."""
    script = tmp_path / "panicking-guest.py"
    script.write_text(PANICKING_KERNEL + FAKE_GUEST)
    if panic_once:
        monkeypatch.setenv("PANIC_MARKER", str(tmp_path / "panicked"))
    monkeypatch.setenv("EXPIRED", "no")
    monkeypatch.setenv("SUDO_PASSWORD", "linbit")
    monkeypatch.setenv(ACCEL_ENV, "tcg")
    monkeypatch.setattr(boot.machine, "qemu_argv", lambda options: [sys.executable, str(script)])
    return Machine("vm", tmp_path / "disk.raw", Firmware.bios, tmp_path / "work", tmp_path / "vm.serial.log")


@pytest.mark.usefixtures("guest")
def test_a_machine_whose_first_boot_panicked_boots_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = boot_panicking_machine(tmp_path, monkeypatch, panic_once=True)
    try:
        machine.boot_to_root_shell("linbit", "unused")
        assert machine.shell.check("echo up") == "up\n"
    finally:
        machine.stop()
    assert machine.record.panicked_boots == 1
    assert machine.record.login_prompt_s is not None
    assert "Kernel panic - not syncing" in (tmp_path / "vm.serial.log").read_text()
    assert machine.record.transcript == tmp_path / "vm-retry1.serial.log"
    assert "fake login:" in machine.record.transcript.read_text()


@pytest.mark.usefixtures("guest")
def test_a_machine_whose_second_boot_panicked_too_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = boot_panicking_machine(tmp_path, monkeypatch, panic_once=False)
    try:
        with pytest.raises(GuestPanic, match=r"vm-retry1\.serial\.log"):
            machine.boot_to_root_shell("linbit", "unused")
    finally:
        machine.stop()
    assert machine.record.panicked_boots == 2


# -- transcript checks -----------------------------------------------------------------------------------------

SEABIOS_GRUB_2974 = (
    "SeaBIOS (version 1.16.2)\r\nBooting from Hard Disk...\r\nGRUB loading.....\r\n\x1b[0;30;47mWelcome to GRUB!\r\n"
    "error: syntax error.\r\nerror: Incorrect command.\r\n"
    "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\r\n[    1.0] error: not a boot loader line\r\n"
    "Debian GNU/Linux 13 ctrl ttyS0\r\n\r\nctrl login: "
)


def test_boot_loader_errors_are_found_before_the_kernel_only() -> None:
    assert boot_loader_errors(before_login(SEABIOS_GRUB_2974)) == ["error: syntax error.", "error: Incorrect command."]
    clean = SEABIOS_GRUB_2974.replace("error: syntax error.\r\nerror: Incorrect command.\r\n", "")
    assert boot_loader_errors(before_login(clean)) == []


def test_interactive_prompts_before_login() -> None:
    firstboot = "Welcome to Debian!\r\nPlease configure your system!\r\n-- Press any key to proceed --\r\nx login: "
    assert interactive_prompts(before_login(firstboot)) == ["systemd-firstboot"]
    assert interactive_prompts(before_login(SEABIOS_GRUB_2974)) == []
    # Only what came before the first prompt counts.
    assert interactive_prompts(before_login("x login: \r\nYou are in emergency mode.")) == []
