"""Checks more than one boot makes: reading the serial transcript, units, and a machine's identity."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .console import LOGIN_PROMPT, Console, clean

# What an unattended boot must never stop at: each of these waits for a key or an answer.
INTERACTIVE_PROMPTS = {
    "systemd-firstboot": re.compile(r"Please configure your system|Press any key to proceed"),
    "GRUB menu": re.compile(r"Press enter to boot the selected OS|Use the [↑^] and [↓v] keys"),
    "systemd-boot menu": re.compile(r"Boot in \d+ s\.|Press .* to select"),
    "emergency shell": re.compile(r"You are in emergency mode|Give root password|Press Enter for maintenance"),
    "passphrase": re.compile(r"Please enter passphrase"),
}
# Anything the firmware or boot loader reports as an error before the kernel takes over, e.g. the
# "error: syntax error." lines of GRUB with the invalid grub.cfg of mkosi 24.3 (mkosi#2974).
BOOT_LOADER_ERROR = re.compile(r"^\s*error\b|\berror:|\bfailed\b|not found", re.IGNORECASE)
KERNEL_START = re.compile(r"Linux version \d|\[\s+0\.000000\]")


def before_login(transcript: str) -> str:
    """The console from power-on to the first login prompt, as plain text."""
    text = clean(transcript)
    match = re.search(LOGIN_PROMPT.removesuffix("$"), text)
    return text[: match.start()] if match else text


def interactive_prompts(text: str) -> list[str]:
    return [name for name, pattern in INTERACTIVE_PROMPTS.items() if pattern.search(text)]


def boot_loader_errors(text: str) -> list[str]:
    """Error lines printed before the kernel's first message."""
    kernel = KERNEL_START.search(text)
    loader = text[: kernel.start()] if kernel else text
    return [line.strip() for line in loader.splitlines() if BOOT_LOADER_ERROR.search(line)]


def failed_units(console: Console) -> list[str]:
    """Units that failed once the boot has finished (systemctl waits for that)."""
    console.run("systemctl is-system-running --wait", timeout=300)
    output = console.check("systemctl list-units --failed --plain --no-legend --no-pager")
    return [line.split()[0] for line in output.splitlines() if line.strip()]


@dataclass(frozen=True)
class Identity:
    """What must differ between two VMs made from one image."""

    machine_id: str
    host_keys: frozenset[str]  # "type base64", without the comment


def read_identity(console: Console) -> Identity:
    machine_id = console.check("cat /etc/machine-id").strip()
    keys = console.check("cat /etc/ssh/ssh_host_*_key.pub")
    host_keys = frozenset(" ".join(line.split()[:2]) for line in keys.splitlines() if line.strip())
    return Identity(machine_id, host_keys)
