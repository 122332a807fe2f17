"""Running a measured command: wall time, the bytes it wrote (its rusage), its output kept in a log file."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A measurement could not be taken; the figure records the message instead of a number."""


@dataclass(frozen=True)
class Timed:
    seconds: float
    write_bytes: int  # what the process and its waited-for children caused to be written to storage
    returncode: int
    log: Path
    wall_start: float  # time.time(), to line up with timestamps other processes wrote
    wall_end: float


def run_timed(argv: Sequence[str | os.PathLike[str]], log: Path, *, env: Mapping[str, str] | None = None,
              cwd: Path = PROJECT_ROOT, check: bool = True) -> Timed:
    """Run argv with stdout and stderr appended to `log`.

    The bytes written come from wait4()'s rusage (ru_oublock, 512-byte units): the kernel's count of
    the process's storage writes, the same counter as write_bytes in /proc/<pid>/io, including its children.
    """
    args = [os.fspath(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as output:
        output.write(f"+ {shlex.join(args)}\n")
        output.flush()
        wall_start, started = time.time(), time.monotonic()
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds, wall_end = time.monotonic() - started, time.time()
    process.returncode = os.waitstatus_to_exitcode(status)
    if check and process.returncode != 0:
        raise BenchError(f"'{shlex.join(args[:4])} ...' failed with exit code {process.returncode}; see {log}: "
                         f"{last_line(log)}")
    return Timed(seconds, usage.ru_oublock * 512, process.returncode, log, wall_start, wall_end)


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


EXTENT = re.compile(r"^\s*\d+:\s*\d+\.\.\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+):(.*)$")


def data_extent_bytes(path: Path) -> int:
    """Allocated bytes that hold data: unwritten extents (fallocate'd, reading as zeros) do not count.

    A loop device turns zero-out requests into such extents on its backing file, so allocation alone
    would count zeroed ranges as if data had been written there.
    """
    result = subprocess.run(["filefrag", "-v", str(path)], capture_output=True, text=True, check=True,
                            stdin=subprocess.DEVNULL)
    block = re.search(r"blocks of (\d+) bytes", result.stdout)
    size = int(block.group(1)) if block else 4096
    total = 0
    for line in result.stdout.splitlines():
        match = EXTENT.match(line)
        if match and "unwritten" not in match.group(2):
            total += int(match.group(1)) * size
    return total
