"""The node the runtime runs on, for real: its files under a root, PVE's commands, curl, flock, the clock.

Refusals live in /run (gone with the boot they belong to), HA errors being cleared in /var/lib (a
reboot in between must not leave a guest disabled), the lock slots are flock(2) locks on files in
/run, released by the kernel when the process ends however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import IO

from builder.coldstart import probe as health
from builder.coldstart import pveconf
from builder.coldstart.layout import CLEARING_DIR, RUN_DIR
from builder.coldstart.pveconf import Guest, Storage
from builder.coldstart.runtime import Config, Process, done
from builder.run import run


class LocalNode:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = pveconf.local_node(root)
        self.config = Config.read(root)
        self.run_dir = root / RUN_DIR
        self.clearing_dir = root / CLEARING_DIR
        self._slots: dict[int, IO[bytes]] = {}

    def now(self) -> float:
        return time.time()

    @cached_property
    def _storages(self) -> dict[str, Storage]:
        return pveconf.drbd_storages(self.root)

    def storages(self) -> dict[str, Storage]:
        return self._storages

    def guest(self, vmid: int) -> Guest | None:
        return pveconf.guest(self.root, vmid)

    def guests_here(self) -> list[Guest]:
        return list(pveconf.guests(self.root, self.name).values())

    def ha_managed(self, vmid: int) -> bool:
        # Read each time: the retry changes HA states, and the hook may run for minutes.
        return vmid in pveconf.ha_resources(self.root)

    def max_workers(self) -> int:
        return pveconf.max_workers(self.root)

    def device_up(self, resource: str) -> bool:
        return (self.root / "dev/drbd/by-res" / resource / "0").exists()

    def probe(self, storage: Storage, address: str) -> Process[bool]:
        argv = health.health_argv(self.root, storage, address, self.config.probe_timeout)
        return done(run(argv, check=False, capture=True).returncode == 0)

    def take_slot(self, slot: int) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.run_dir / f"slot.{slot}").open("wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._slots[slot] = handle
        return True

    def release_slot(self, slot: int) -> None:
        handle = self._slots.pop(slot, None)
        if handle is not None:
            handle.close()

    def ha_state(self, vmid: int) -> str:
        text = run(["ha-manager", "status"], check=False, capture=True).stdout
        match = re.search(rf"^service vm:{vmid} \([^,]*, (.*)\)$", text, flags=re.M)
        return match.group(1) if match else "none"

    def ha_set(self, vmid: int, state: str) -> bool:
        result = run(["ha-manager", "set", f"vm:{vmid}", "--state", state], check=False, capture=True)
        sys.stderr.write(result.stderr)
        return result.returncode == 0

    def running(self, vmid: int) -> bool:
        text = run(["qm", "status", str(vmid)], check=False, capture=True).stdout
        return "status: running" in text.splitlines()

    def qm_start(self, vmid: int) -> Process[bool]:
        result = run(["qm", "start", str(vmid)], check=False, capture=True)
        sys.stderr.write(result.stderr)
        return done(result.returncode == 0)

    def refused(self) -> list[int]:
        return _ids(self.run_dir / "refused")

    def add_refusal(self, vmid: int, stores: list[str]) -> None:
        # "<time> <storage>..." : coldstart status shows when.
        _write(self.run_dir / "refused" / str(vmid), " ".join([str(int(self.now())), *stores]) + "\n")

    def drop_refusal(self, vmid: int) -> None:
        (self.run_dir / "refused" / str(vmid)).unlink(missing_ok=True)

    def clearing(self) -> list[int]:
        return _ids(self.clearing_dir)

    def add_clearing(self, vmid: int) -> None:
        _write(self.clearing_dir / str(vmid), "")

    def drop_clearing(self, vmid: int) -> None:
        (self.clearing_dir / str(vmid)).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.clearing_dir.rmdir()

    def gate_expired(self) -> None:
        _write(self.run_dir / "gate-expired", "")

    def log(self, text: str) -> None:
        print(f"linstor-coldstart: {text}", file=sys.stderr, flush=True)


def _ids(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
