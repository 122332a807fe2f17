"""One boot of an appliance image in QEMU, started with the same command line as 'linstor-appliance boot'."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from builder.qemu import (
    Accel,
    ApiWatch,
    Firmware,
    QemuOptions,
    choose_accel,
    copy_ovmf_vars,
    forwards_for_appliance,
    qemu_argv,
)

from .agent import GuestAgent
from .console import Console, GuestPanic, LoginRecord, scaled

USER = "linbit"
DEFAULT_PASSWORD = "linbit"
NEW_PASSWORD = "Appliance-Test-7x"
# A boot whose guest kernel panicked is tried once more: under TCG with 2 vCPUs the kernel now and then
# panics early for a reason of the emulator (see builder.qemu.KERNEL_PANIC); twice in a row is a failure.
PANIC_RETRIES = 1


@dataclass
class BootRecord:
    """What a person wants to know about each boot: how long, and how it was emulated."""

    name: str
    firmware: Firmware
    accel: Accel
    transcript: Path
    login_prompt_s: float | None = None
    api_s: float | None = None
    failed: bool = False
    panicked_boots: int = 0  # boots that ended in a guest kernel panic; transcript is the last boot's


class Machine:
    """A VM of one image: console, forwarded ports, guest agent socket and the boot's record."""

    def __init__(self, name: str, image: Path, firmware: Firmware, workdir: Path, transcript: Path,
                 *, persist: bool = False, disks_before: tuple[Path, ...] = ()) -> None:
        self.name = name
        self.image = image
        self.firmware = firmware
        self.workdir = workdir
        self.persist = persist
        self.disks_before = disks_before
        workdir.mkdir(parents=True, exist_ok=True)
        self.ssh_forward, self.api_forward = forwards_for_appliance()
        self.agent_socket = workdir / f"{name}.qga"
        self.accel = choose_accel(Accel.auto)
        self.record = BootRecord(name, firmware, self.accel, transcript)
        self.login_record: LoginRecord | None = None
        self.console: Console | None = None
        self._api: ApiWatch | None = None

    @property
    def ssh_port(self) -> int:
        return self.ssh_forward.host

    @property
    def api_port(self) -> int:
        return self.api_forward.host

    def options(self) -> QemuOptions:
        vars_copy = None
        if self.firmware is Firmware.uefi:
            vars_copy = copy_ovmf_vars(self.workdir / f"{self.name}.vars.fd")
        return QemuOptions(
            image=self.image, accel=self.accel, firmware=self.firmware, memory_mib=2048, cpus=2,
            snapshot=not self.persist, forwards=(self.ssh_forward, self.api_forward), ovmf_vars=vars_copy,
            guest_agent_socket=self.agent_socket, name=f"appliance-test-{self.name}", disks_before=self.disks_before,
        )

    def start(self) -> Console:
        self.console = Console(qemu_argv(self.options()), self.record.transcript)
        self._api = ApiWatch(self.api_port, self.console.started).start()
        return self.console

    def boot_to_root_shell(self, password: str = DEFAULT_PASSWORD, new_password: str = NEW_PASSWORD,
                           before_login: Callable[[Machine], None] | None = None) -> Console:
        """Start, wait for the login prompt, log in as linbit (changing the password if asked) and sudo -i.

        before_login sees the machine as nobody has used it yet, e.g. for an SSH login before the
        console login changes the password.
        """
        first_transcript = self.record.transcript
        for attempt in range(PANIC_RETRIES + 1):
            console = self.start()
            try:
                self.record.login_prompt_s = console.wait_for_login_prompt(scaled(300))
                break
            except GuestPanic:
                self.record.panicked_boots += 1
                if attempt == PANIC_RETRIES:
                    raise
                # The panicked boot's transcript stays for a person to read. A persisted disk may be booted
                # again: a panic 3 s into the kernel has written nothing, a later one is at worst a power cut.
                self.stop()
                self.record.transcript = retry_transcript(first_transcript, attempt + 1)
        if before_login is not None:
            before_login(self)
        self.login_record = console.login(USER, password, new_password)
        console.become_root(new_password if self.login_record.password_change_forced else password)
        return console

    @property
    def shell(self) -> Console:
        if self.console is None or not self.console.alive:
            raise AssertionError(f"the VM {self.name} is not running")
        return self.console

    def wait_for_api(self, timeout: float = 240) -> float:
        """Seconds from power-on until the controller answered on the forwarded port."""
        assert self._api is not None, "start() first"
        answered = self._api.wait(scaled(timeout))
        if answered is None:
            raise AssertionError(f"the controller did not answer on 127.0.0.1:{self.api_port} (guest port 3370) "
                                 f"within {scaled(timeout):.0f}s")
        self.record.api_s = answered
        return answered

    def agent(self, timeout: float = 120) -> GuestAgent:
        agent = GuestAgent(self.agent_socket)
        agent.connect(scaled(timeout))
        return agent

    def ssh(self, key: Path | None, user: str, *command: str, extra: tuple[str, ...] = (),
            env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """ssh from the host through the forward; never prompts, never trusts or stores host keys."""
        argv = [
            "ssh", "-p", str(self.ssh_port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
            "-F", "/dev/null",
        ]
        if key is not None:
            argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        argv += [*extra, f"{user}@127.0.0.1", *command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=scaled(timeout), env=env,
                              stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self._api is not None:
            self._api.stop()
            # Also for boots whose tests never asked: every boot reports when the controller answered.
            self.record.api_s = self.record.api_s or self._api.answered_after
        if self.console is not None:
            self.console.close()


def retry_transcript(first: Path, attempt: int) -> Path:
    """dhcp-seabios.serial.log -> dhcp-seabios-retry1.serial.log"""
    stem, dot, suffixes = first.name.partition(".")
    return first.with_name(f"{stem}-retry{attempt}{dot}{suffixes}")


# The boot fixture: boot(name, image, firmware, persist=False, password=...) -> context manager of a Machine.
Booter = Callable[..., AbstractContextManager[Machine]]
