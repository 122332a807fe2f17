"""Where off-VM backups of the controller database lie on the nodes, and how old the newest is."""

from __future__ import annotations

import calendar
import re
import time

# On every node: <BACKUPS_DIR>/<vmid>/<UTC time>-<sha12>.<json|zip|mv.db>, complete once its .sha256 file
# lies beside it (written last by linstor-appliance backup).
BACKUPS_DIR = "/var/lib/linstor-appliance/backups"
NAME_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{12}\.(json|zip|mv\.db)$")
WARN_AFTER = 26 * 3600
CRITICAL_AFTER = 72 * 3600


def folder(vmid: int) -> str:
    return f"{BACKUPS_DIR}/{vmid}"


def newest(names: list[str]) -> float | None:
    """The time (UTC epoch) of the newest complete backup among a folder's file names, or None."""
    present = set(names)
    times = [calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%SZ"))
             for m in (NAME_RE.match(name) for name in names) if m and f"{m.group(0)}.sha256" in present]  # fmt: skip
    return max(times, default=None)
