"""Figure 3: time to the serial login prompt and to the controller answering on 3370, appliance against bare.

Both images boot with the command line `linstor-appliance boot` uses (builder.qemu.qemu_argv: SeaBIOS,
VirtIO SCSI disk, VirtIO NIC, 2 CPUs, 2 GiB, changes discarded), differing only in the image file.
Clocks start when QEMU is started. The controller counts as answering when GET /v1/controller/version
through the forwarded port returns 200; it is polled every half second from the start.
A boot whose guest kernel panicked (see builder.qemu.KERNEL_PANIC) ends at once and is tried again, at most
PANIC_RETRIES times per run; the figure counts the panics.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

from bench import stats
from builder.qemu import (
    CURSOR_ANSWER,
    CURSOR_QUERY,
    KERNEL_PANIC,
    LOGIN_PROMPT,
    Accel,
    ApiWatch,
    QemuOptions,
    forwards_for_appliance,
    qemu_argv,
)

# The controller is polled every half second, each request given 2 s.
POLL_S = 0.5
REQUEST_TIMEOUT_S = 2.0
# A run whose boot panicked boots the same image again, at most this many more times.
PANIC_RETRIES = 2


@dataclass
class Boot:
    login_prompt_s: float | None = None
    api_s: float | None = None
    error: str | None = None
    panicked: bool = False  # this boot ended in a guest kernel panic
    retried: list[str] = field(default_factory=list)  # the errors of this run's earlier boots, each a panic


def boot_once(image: Path, accel: Accel, transcript: Path, *, wait_for_api: bool, timeout: float) -> Boot:
    ssh, api = forwards_for_appliance()
    options = QemuOptions(image=image.resolve(), accel=accel, forwards=(ssh, api), snapshot=True,
                          guest_agent_socket=transcript.with_suffix(".qga"), name=f"bench-{image.stem}")
    argv = qemu_argv(options)
    with transcript.open("w", encoding="utf-8", errors="replace") as log:
        started = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace", dimensions=(24, 80),
                              echo=False)
        child.logfile_read = log
        poller = ApiWatch(api.host, started, interval=POLL_S, request_timeout=REQUEST_TIMEOUT_S)
        if wait_for_api:
            poller.start()
        try:
            record = watch(child, poller if wait_for_api else None, started, started + timeout)
        finally:
            poller.stop()
            child.close(force=True)
    if record.error:
        record.error += f" (transcript: {transcript})"
    return record


def watch(child: pexpect.spawn, poller: ApiWatch | None, started: float, deadline: float) -> Boot:
    record = Boot()
    what = "the login prompt"
    try:
        while record.login_prompt_s is None:
            remaining = max(deadline - time.monotonic(), 0.1)
            index = child.expect([re.escape(CURSOR_QUERY), LOGIN_PROMPT, KERNEL_PANIC], timeout=remaining)
            if index == 0:
                child.send(CURSOR_ANSWER)
            elif index == 1:
                record.login_prompt_s = time.monotonic() - started
            else:
                return panicked(child, record, what)
        what = "the controller's answer"
        while poller is not None and poller.answered_after is None and time.monotonic() < deadline:
            # Keep reading the console so QEMU never blocks on a full pty.
            with contextlib.suppress(pexpect.TIMEOUT):
                if child.expect([re.escape(CURSOR_QUERY), KERNEL_PANIC], timeout=POLL_S) == 1:
                    return panicked(child, record, what)
                child.send(CURSOR_ANSWER)
    except pexpect.TIMEOUT:
        record.error = f"no sign of {what} in time"
    except pexpect.EOF:
        record.error = f"QEMU exited before {what}"
    if poller is not None:
        record.api_s = poller.answered_after
        if record.api_s is None and not record.error:
            record.error = "the controller did not answer in time"
    return record


def panicked(child: pexpect.spawn, record: Boot, what: str) -> Boot:
    """The boot ended in a kernel panic: the guest prints nothing more, so there is no point waiting."""
    record.panicked = True
    record.error = f"the guest kernel panicked before {what}: {str(child.after).strip()}"
    return record


def run_boots(images: dict[str, Path], runs: int, accel: Accel, transcripts: Path, timeout: float,
              report: Callable[[str], None]) -> dict[str, list[Boot]]:
    """Appliance and bare boot alternately, so a busy spell of the host affects both."""
    boots: dict[str, list[Boot]] = {flavor: [] for flavor in images}
    for index in range(runs):
        for flavor, image in images.items():
            retried: list[str] = []
            for attempt in range(PANIC_RETRIES + 1):
                again = f", boot {attempt + 1} after a kernel panic" if attempt else ""
                report(f"boot: {flavor}, run {index + 1} of {runs} ({accel}){again}")
                suffix = f"-retry{attempt}" if attempt else ""
                record = boot_once(image, accel, transcripts / f"boot-{flavor}-{index}{suffix}.txt",
                                   wait_for_api=flavor == "appliance", timeout=timeout)
                if not record.panicked or attempt == PANIC_RETRIES:
                    break
                retried.append(record.error or "the guest kernel panicked")
            record.retried = retried
            boots[flavor].append(record)
    return boots


def figure(boots: dict[str, list[Boot]], accel: Accel) -> dict[str, Any]:
    appliance, baseline = boots.get("appliance", []), boots.get("baseline", [])
    errors = [f"{flavor}: {error}" for flavor, runs in boots.items() for b in runs for error in [*b.retried, b.error]
              if error]
    paired = [(a.login_prompt_s, b.login_prompt_s) for a, b in zip(appliance, baseline, strict=False)]
    return {
        "acceleration": str(accel),
        "appliance": {
            "login_prompt_s": stats.summary([b.login_prompt_s for b in appliance if b.login_prompt_s], "s"),
            "api_s": stats.summary([b.api_s for b in appliance if b.api_s], "s"),
        },
        "baseline": {
            "login_prompt_s": stats.summary([b.login_prompt_s for b in baseline if b.login_prompt_s], "s"),
            "api_s": stats.not_measured("s", "the bare image has no controller"),
        },
        "ratio": {"login_prompt": stats.ratios([a for a, _ in paired], [b for _, b in paired])},
        "errors": errors,
        "panics": {flavor: sum(len(b.retried) + b.panicked for b in runs) for flavor, runs in boots.items()},
    }
