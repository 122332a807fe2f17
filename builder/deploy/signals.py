"""SIGHUP, SIGTERM and SIGINT during a deploy: turned into an exception, so the failure path decides what happens.

A dropped SSH session sends SIGHUP; `kill` sends SIGTERM; Ctrl-C sends SIGINT. While steps run, each of them
raises `Interrupted` in the main thread, and the runner treats it like a failing step: before the host's
controller was stopped the deploy stops cleanly and `--resume` continues it; after that it rolls back.
While the rollback (or the cleanup before it) runs, further signals are only recorded: a rollback cut
off halfway would leave the cluster with no controller at all.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
_state: dict[str, object] = {"deferring": False, "received": []}


class Interrupted(KeyboardInterrupt):
    """A signal asked the deploy to stop. Like Ctrl-C, not an Exception: `except Exception` must not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["deferring"]:
        received = _state["received"]
        assert isinstance(received, list)
        received.append(signal.Signals(signum).name)
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block the handled signals raise Interrupted; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread can have signal handlers (a deploy run by a test's helper thread keeps the defaults).
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred() -> Iterator[list[str]]:
    """Within the block signals are recorded (their names in the yielded list) instead of raised."""
    before = _state["deferring"]
    _state["deferring"] = True
    received: list[str] = []
    outer = _state["received"]
    _state["received"] = received
    try:
        yield received
    finally:
        _state["deferring"] = before
        _state["received"] = outer
        if isinstance(outer, list):
            outer.extend(received)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Delay the handled signals (blocked at the OS level) until the block ends: for writes that must be whole."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
