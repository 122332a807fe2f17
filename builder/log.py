"""Console output: stages, verbose command echo and progress bars, all on stderr."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

_state = {"verbose": False, "depth": 0}


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = verbose


def is_verbose() -> bool:
    return bool(_state["verbose"])


def _emit(text: str) -> None:
    write(sys.stderr, text)


def write(stream: TextIO, text: str) -> None:
    """A line to a terminal that may be gone: after a dropped SSH session writes fail (EIO, EPIPE), and the work
    in progress (a rollback) must go on; the deploy journal stays the record."""
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        _to_devnull(stream)


def _to_devnull(stream: TextIO) -> None:
    """Point a dead stream at /dev/null, so what is still buffered (and the flush at exit) no longer fails."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
        stream.flush()


def info(message: str) -> None:
    _emit("  " * int(_state["depth"]) + message)


def warn(message: str) -> None:
    _emit("  " * int(_state["depth"]) + f"warning: {message}")


def debug(message: str) -> None:
    if _state["verbose"]:
        _emit("  " * int(_state["depth"]) + message)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """A named stage; nested stages indent, and each reports how long it took."""
    info(f"‣ {title}")
    started = time.monotonic()
    _state["depth"] = int(_state["depth"]) + 1
    try:
        yield
    finally:
        _state["depth"] = int(_state["depth"]) - 1
    debug(f"  done in {time.monotonic() - started:.1f}s")


@dataclass
class Progress:
    """A single-line progress bar; on a non-terminal it prints at most every 10 percent."""

    label: str
    total: int
    unit: str = "B"
    _done: int = 0
    _last_decile: int = -1

    def update(self, done: int) -> None:
        self._done = min(done, self.total) if self.total else done
        fraction = self._done / self.total if self.total else 1.0
        if sys.stderr.isatty():
            width = 30
            filled = int(width * fraction)
            bar = "#" * filled + "-" * (width - filled)
            try:
                sys.stderr.write(f"\r  {self.label} [{bar}] {fraction * 100:5.1f}% {self._describe()}")
                sys.stderr.flush()
            except (OSError, ValueError):
                _to_devnull(sys.stderr)
            return
        decile = int(fraction * 10)
        if decile != self._last_decile:
            self._last_decile = decile
            info(f"{self.label}: {fraction * 100:.0f}% {self._describe()}")

    def advance(self, amount: int) -> None:
        self.update(self._done + amount)

    def finish(self) -> None:
        self.update(self.total)
        if sys.stderr.isatty():
            write(sys.stderr, "")

    def _describe(self) -> str:
        if self.unit == "B":
            return f"{self._done / 2**20:.0f}/{self.total / 2**20:.0f} MiB"
        return f"{self._done}/{self.total} {self.unit}"
