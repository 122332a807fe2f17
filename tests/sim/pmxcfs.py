"""/etc/pve semantics the fakes honour: quorum, atomic writes, size limit, cluster locks (proxmox.md section 4)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

MAX_FILE_SIZE = 1024 * 1024  # MEMDB_MAX_FILE_SIZE
LOCK_ACQUIRE_TIMEOUT = 10.0
LOCK_EXPIRY = 120.0
NO_QUORUM = "cluster not ready - no quorum?"


class PmxcfsError(Exception):
    pass


def set_contents(pve: Path, relpath: str, text: str) -> None:
    """PVE::Tools::file_set_contents: write `<file>.tmp.<pid>`, then rename over the target."""
    target = pve / relpath
    data = text.encode()
    if len(data) > MAX_FILE_SIZE:
        raise PmxcfsError(f"unable to open file '/etc/pve/{relpath}.tmp.{os.getpid()}' - File too large")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except PermissionError as err:
        tmp.unlink(missing_ok=True)
        raise PmxcfsError(f"unable to open file '/etc/pve/{relpath}.tmp.{os.getpid()}' - {err.strerror}") from err


@contextlib.contextmanager
def cfs_lock(pve: Path, name: str, now: float, quorate: bool = True, timeout: float = LOCK_ACQUIRE_TIMEOUT,
             ) -> Iterator[None]:  # fmt: skip
    """PVE::Cluster::cfs_lock: mkdir /etc/pve/priv/lock/<name>, retried once a second until `timeout`.

    Without quorum the mkdir fails like a held lock does, so the caller waits out the timeout
    (pmxcfs refuses the write); pmxcfs expires a lock directory after 120 s.
    """
    lockdir = pve / "priv" / "lock" / name
    deadline = time.monotonic() + timeout
    while True:
        got = False
        if quorate:
            try:
                os.mkdir(lockdir)
                got = True
            except FileExistsError:
                with contextlib.suppress(FileNotFoundError):
                    if now - lockdir.stat().st_mtime > LOCK_EXPIRY:
                        os.rmdir(lockdir)
                        continue
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                    raise
        if got:
            break
        if time.monotonic() >= deadline:
            raise PmxcfsError(f"cfs-lock '{name}' error: got lock request timeout")
        print(f"trying to acquire cfs lock '{name}' ...", file=sys.stderr, flush=True)
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(lockdir)
