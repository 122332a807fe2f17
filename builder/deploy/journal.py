"""The deploy journal: what each step changed, written atomically after every change.

`<root>/var/lib/linstor-appliance/deploy-<vmid>.json` holds the options of the deploy, the state of each
step (`started` before it changes anything, `done` with a record of what it changed, `undone` after a
rollback) and facts later steps and a rollback need (the storage entries' old controllers, the node
list before migration, where the database backup is). A deploy killed at any point leaves a journal
that says which step may be half done, so --resume repeats it and --rollback undoes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.deploy import signals
from builder.errors import die

FORMAT = 1


def path_for(state_dir: Path, vmid: int) -> Path:
    return state_dir / f"deploy-{vmid}.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Journal:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as error:
            die(f"the deploy journal {path} is damaged ({error})",
                hint="restore it from a backup, or move it away after checking the cluster by hand")
        if data.get("format") != FORMAT:
            die(f"the deploy journal {path} has an unknown format", hint="use the linstor-appliance that wrote it")
        return cls(path, data)

    @classmethod
    def create(cls, path: Path, options: dict[str, Any]) -> Journal:
        journal = cls(path, {"format": FORMAT, "status": "running", "started_at": _now(), "options": options,
                             "steps": {}, "facts": {}, "attempts": 1})  # fmt: skip
        journal.save()
        return journal

    # --- state ----------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return str(self.data.get("status", "running"))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.data["options"])

    def step(self, key: str) -> dict[str, Any]:
        return dict(self.data["steps"].get(key, {}))

    def state(self, key: str) -> str | None:
        state = self.data["steps"].get(key, {}).get("state")
        return None if state is None else str(state)

    def touched(self, key: str) -> bool:
        """The step may have changed something: it started, whether or not it finished."""
        return self.state(key) in ("started", "done")

    def record(self, key: str) -> dict[str, Any]:
        return dict(self.data["steps"].get(key, {}).get("record", {}))

    def fact(self, key: str, default: Any = None) -> Any:
        return self.data["facts"].get(key, default)

    # --- changes (each saved at once) --------------------------------------------------------------
    def set_status(self, status: str, **extra: Any) -> None:
        self.data["status"] = status
        self.data[f"{status}_at"] = _now()
        self.data.update(extra)
        self.save()

    def set_fact(self, key: str, value: Any) -> None:
        self.data["facts"][key] = value
        self.save()

    def start_step(self, key: str) -> None:
        entry = self.data["steps"].setdefault(key, {})
        entry.update(state="started", started_at=_now())
        entry.setdefault("record", {})
        self.save()

    def note(self, key: str, **record: Any) -> None:
        """Record part of what a step changed while it runs, so a kill midway still leaves a trace."""
        self.data["steps"].setdefault(key, {"state": "started"}).setdefault("record", {}).update(record)
        self.save()

    def finish_step(self, key: str, record: dict[str, Any] | None = None) -> None:
        entry = self.data["steps"].setdefault(key, {})
        entry.setdefault("record", {}).update(record or {})
        entry.update(state="done", finished_at=_now())
        self.save()

    def mark_undone(self, key: str) -> None:
        entry = self.data["steps"].setdefault(key, {})
        entry.update(state="undone", undone_at=_now())
        self.save()

    def new_attempt(self) -> None:
        self.data["attempts"] = int(self.data.get("attempts", 1)) + 1
        self.data["status"] = "running"
        self.save()

    def save(self) -> None:
        # A signal (see signals) waits until the journal is whole on disk, so a stop never leaves a temporary file.
        with signals.held():
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as handle:
            handle.write(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        # The rename is only durable once the directory is on disk too.
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def exclusive(state_dir: Path, vmid: int) -> Iterator[None]:
    """One deploy per VMID at a time on this node."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"deploy-{vmid}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            die(f"another linstor-appliance deploy of VM {vmid} is running on this node",
                hint="wait for it to finish")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
