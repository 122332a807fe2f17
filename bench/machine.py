"""The machine the figures were taken on: they mean little without it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _first_match(path: Path, pattern: str) -> str | None:
    try:
        match = re.search(pattern, path.read_text(errors="replace"), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip() if match else None


def _version(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else None


def describe() -> dict[str, Any]:
    memory_kib = _first_match(Path("/proc/meminfo"), r"^MemTotal:\s+(\d+) kB")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first_match(Path("/proc/cpuinfo"), r"^model name\s*:\s*(.+)$"),
        "memory_bytes": int(memory_kib) * 1024 if memory_kib else None,
        "os": _first_match(Path("/etc/os-release"), r'^PRETTY_NAME="?([^"\n]+)"?'),
        "kernel": platform.release(),
        "virtualized": _first_match(Path("/proc/cpuinfo"), r"^flags\s*:.*\b(hypervisor)\b") is not None,
        "kvm_device": os.path.exists("/dev/kvm"),
        "mkosi": _version(["mkosi", "--version"]),
        "qemu": _version(["qemu-system-x86_64", "--version"]),
        "python": platform.python_version(),
        "load_average_after": os.getloadavg(),
    }


NEIGHBOUR_PATTERN = re.compile(rb"(^|/)(qemu-system-[\w-]+|mkosi)\x00")


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name in parentheses may contain spaces; the parent pid is the second field after it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _is_ours(pid: int, ours: int) -> bool:
    while pid > 1:
        if pid == ours:
            return True
        pid = _parent(pid)
    return False


def neighbours_running(ours: int) -> bool:
    """Whether a QEMU or mkosi that this run did not start is running: other people's builds and boots."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        head = b"\x00".join(argv.split(b"\x00")[:2]) + b"\x00"
        if NEIGHBOUR_PATTERN.search(head) and not _is_ours(int(entry.name), ours):
            return True
    return False


@dataclass
class Neighbours:
    """Samples every few seconds whether other people's QEMU or mkosi runs share the machine.

    TCG boots and builds slow down markedly when they do, so each figure says how often that was.
    """

    interval: float = 5.0
    samples: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="bench-neighbours", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        ours = os.getpid()
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), neighbours_running(ours)))
            self._stop.wait(self.interval)

    def busy_share(self, started: float, ended: float) -> float | None:
        """The share of samples between started and ended that saw other QEMU or mkosi processes."""
        window = [busy for at, busy in self.samples if started <= at <= ended]
        return sum(window) / len(window) if window else None
