"""Driving a VM over its serial console with pexpect: login, then commands with their exit codes.

QEMU runs with the serial port on stdio, so the console is the pty pexpect gives it. Everything the
guest prints goes to a transcript file, which is what a person reads when a boot test fails.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pexpect

# systemd 257's serial getty asks the terminal for its cursor position (to learn its size) before
# the prompt and waits for an answer; a real terminal answers at once, so this driver does too.
from builder.qemu import CURSOR_ANSWER, CURSOR_QUERY, KERNEL_PANIC, LOGIN_PROMPT

# One factor for every timeout: emulation (TCG) on a busy CI runner can be several times slower.
TIMEOUT_FACTOR = float(os.environ.get("LINSTOR_APPLIANCE_TIMEOUT_FACTOR", "1"))

SHELL_PROMPT = r"@\S+:\S*[$#] $"
ROOT_PROMPT = "appliance-test# "
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Z0-9]|[=>]|\[![a-z])")


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


class ConsoleError(AssertionError):
    """The guest did not say what was expected in time; the message ends with its last words."""


class GuestPanic(ConsoleError):
    """The guest kernel panicked before the login prompt: it will print nothing more, so waiting is pointless."""


@dataclass
class LoginRecord:
    """What the guest asked for during login: the test of the forced password change reads this."""

    password_change_forced: bool = False
    prompts: tuple[str, ...] = ()


class Console:
    def __init__(self, argv: Sequence[str], transcript: Path) -> None:
        self.transcript_path = transcript
        self._log: TextIO = transcript.open("w", encoding="utf-8", errors="replace")
        self.started = time.monotonic()
        self.child = pexpect.spawn(
            argv[0], list(argv[1:]), encoding="utf-8", codec_errors="replace", dimensions=(24, 80),
            timeout=scaled(60), echo=False,
        )
        self.child.logfile_read = self._log
        self._root = False
        # Until the login prompt shows, a kernel panic ends any wait. Later the line may be a command's
        # output (a journal read, say), so it is not looked for any more.
        self._booting = True

    # -- low level -------------------------------------------------------------------------------------------

    def expect(self, patterns: str | Sequence[str], timeout: float) -> int:
        """Wait for one of the regular expressions, answering terminal queries on the way."""
        wanted = [patterns] if isinstance(patterns, str) else list(patterns)
        described = " or ".join(map(repr, wanted))
        watched = [re.escape(CURSOR_QUERY), KERNEL_PANIC] if self._booting else [re.escape(CURSOR_QUERY)]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                index = self.child.expect([*watched, *wanted], timeout=max(remaining, 0.1))
            except pexpect.TIMEOUT:
                raise ConsoleError(self._explain(f"no {described} within {timeout:.0f}s")) from None
            except pexpect.EOF:
                raise ConsoleError(self._explain(f"QEMU exited while waiting for {described}")) from None
            if index == 0:
                self.child.send(CURSOR_ANSWER)
                continue
            if index == 1 and self._booting:
                line = str(self.child.after).strip()
                raise GuestPanic(self._explain(f"the guest kernel panicked ({line}) while waiting for {described}"))
            return index - len(watched)

    def send_line(self, text: str) -> None:
        self.child.send(text + "\r")

    def _explain(self, problem: str) -> str:
        tail = clean(self.child.before if isinstance(self.child.before, str) else "")[-600:]
        return f"{problem}; serial transcript: {self.transcript_path}; last output:\n{tail}"

    # -- login -----------------------------------------------------------------------------------------------

    def wait_for_login_prompt(self, timeout: float) -> float:
        """Seconds from QEMU's start to the login prompt; nothing is typed on the way there.

        Raises GuestPanic as soon as the guest kernel panics on the way.
        """
        self._booting = True
        self.expect(LOGIN_PROMPT, timeout)
        self._booting = False
        return time.monotonic() - self.started

    def login(self, user: str, password: str, new_password: str) -> LoginRecord:
        """Log in at the prompt that is showing; a forced password change is answered with new_password."""
        record = LoginRecord()
        prompts: list[str] = []
        self.send_line(user)
        self.expect("Password: $", scaled(30))
        self.send_line(password)
        step = [r"Current password: $", r"New password: $", r"Retype new password: $", SHELL_PROMPT,
                "Login incorrect", "Authentication token manipulation error"]
        answers = {0: password, 1: new_password, 2: new_password}
        while True:
            index = self.expect(step, scaled(60))
            if index in answers:
                record.password_change_forced = True
                prompts.append(step[index].removesuffix(" $"))
                self.send_line(answers[index])
                continue
            if index == 3:
                break
            raise ConsoleError(self._explain(f"login as {user} failed"))
        record.prompts = tuple(prompts)
        return record

    def become_root(self, password: str) -> None:
        """sudo -i with the user's password, then a shell set up for scripting (see _prepare_shell)."""
        self.send_line("sudo -i")
        index = self.expect([r"\[sudo\] password for \S+: $", SHELL_PROMPT], scaled(30))
        if index == 0:
            self.send_line(password)
        index = self.expect([r"root@\S+:\S*# $", "Sorry, try again", r"is not in the sudoers file"], scaled(30))
        if index != 0:
            raise ConsoleError(self._explain("sudo -i was refused"))
        self._root = True
        self._prepare_shell()

    def _prepare_shell(self) -> None:
        # No echo of what is typed, a fixed prompt, no bracketed-paste codes, no colours and no line
        # wrapping: the output of a command is then exactly what it printed. Kernel messages would
        # interleave on the console; dmesg -n 1 keeps them off. The prompt is typed in two quoted
        # halves because this line is still echoed, and its echo must not look like the prompt.
        head, tail = ROOT_PROMPT[:4], ROOT_PROMPT[4:]
        self.send_line(
            f"stty -echo columns 29999; bind 'set enable-bracketed-paste off'; PS1='{head}''{tail}'; "
            "PROMPT_COMMAND=; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat TERM=dumb; dmesg -n 1"
        )
        self.expect(re.escape(ROOT_PROMPT), scaled(30))

    # -- commands --------------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run a shell command as root; its exit code and output (carriage returns removed)."""
        if not self._root:
            raise RuntimeError("log in and call become_root() before running commands")
        token = secrets.token_hex(4)
        # The marker is assembled by printf, so the typed line (were it echoed) never matches it. The
        # guest's newlines arrive as \r\r\n: its tty and QEMU's stdio each add a carriage return.
        self.send_line(f"{command}; printf '\\n%s:%s:%s\\n' DONE $? {token}")
        try:
            self.expect(rf"\nDONE:(\d+):{token}\r*\n", scaled(timeout))
        except ConsoleError as error:
            raise ConsoleError(f"'{command}': {error}") from None
        match = self.child.match
        assert match is not None and not isinstance(match, type(pexpect.EOF))
        code = int(match.group(1))
        output = clean(self.child.before or "")
        self.expect(re.escape(ROOT_PROMPT), scaled(30))
        return code, output

    def check(self, command: str, timeout: float = 60) -> str:
        """Run a command that must succeed; its output."""
        code, output = self.run(command, timeout)
        if code != 0:
            raise AssertionError(f"'{command}' failed with exit code {code}:\n{output}")
        return output

    # -- the end ---------------------------------------------------------------------------------------------

    def wait_for_exit(self, timeout: float) -> float:
        """Seconds until QEMU exits by itself (the guest powered off)."""
        started = time.monotonic()
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            raise ConsoleError(self._explain(f"the guest was still running after {timeout:.0f}s")) from None
        self.child.wait()
        return time.monotonic() - started

    @property
    def alive(self) -> bool:
        return bool(self.child.isalive())

    def close(self) -> None:
        """Stop QEMU (it exits cleanly on SIGHUP/SIGINT; SIGKILL if not) and finish the transcript."""
        self.child.close(force=True)
        if not self._log.closed:
            self._log.close()

    def transcript(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.transcript_path.read_text(encoding="utf-8", errors="replace")


def clean(text: str) -> str:
    """Console output as plain text: no carriage returns, no terminal control sequences."""
    return ANSI.sub("", text).replace("\r", "")
