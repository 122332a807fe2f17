"""Bounded waiting with visible progress: nothing in a deploy waits forever or silently."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from builder import log
from builder.errors import die

T = TypeVar("T")


def until(check: Callable[[], T | None], *, timeout: float, what: str, hint: str, interval: float = 1.0,
          report_every: float = 10.0) -> T:  # fmt: skip
    """Call check() until it returns something other than None/False; die after timeout seconds."""
    started = time.monotonic()
    last_report = started
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        now = time.monotonic()
        if now - started >= timeout:
            die(f"{what} did not happen within {timeout:.0f}s", hint=hint)
        if now - last_report >= report_every:
            log.info(f"still waiting: {what} ({now - started:.0f}s of at most {timeout:.0f}s)")
            last_report = now
        time.sleep(min(interval, max(0.05, timeout - (now - started))))
