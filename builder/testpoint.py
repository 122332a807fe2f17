"""Named points where the test suite can hold a running command, to signal it exactly there.

Inert unless LINSTOR_APPLIANCE_TEST_PAUSE is set to `<point>:<marker file>`: at that point the process
writes its PID to the marker file and waits while the file exists (at most two minutes). The tests use
it to send SIGHUP, SIGTERM or SIGINT to the real command line tool at a step boundary or in the middle
of the image write, then check what the deploy made of it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "LINSTOR_APPLIANCE_TEST_PAUSE"
MAX_WAIT = 120.0
_passed: set[str] = set()


def reached(point: str) -> None:
    value = os.environ.get(ENV)
    if not value or point in _passed:
        return
    name, _, marker = value.partition(":")
    if name != point or not marker:
        return
    _passed.add(point)
    path = Path(marker)
    path.write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + MAX_WAIT
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
