"""Where the simulation keeps its state, and the few primitives every fake uses to touch it.

Layout of a state directory (PVE_SIM_STATE):

    pve/                      the cluster file system (pmxcfs), shared by all nodes
    nodes/<node>/             the root file system of one node (PVE_SIM_ROOT on that node);
                              etc/pve is a symlink to ../../../pve, or a frozen read-only copy
                              while the node has no quorum
    sim/                      bookkeeping of the simulation itself (JSON), never read by real tools
    bin/                      the fake commands, first on PATH
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

ENV_STATE = "PVE_SIM_STATE"
ENV_NODE = "PVE_SIM_NODE"
ENV_ROOT = "PVE_SIM_ROOT"


class _ProcessLock:
    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.handle: IO[str] | None = None


_LOCKS: dict[str, _ProcessLock] = {}
_REGISTRY_GUARD = threading.Lock()


class SimState:
    """Paths and locked JSON access inside one state directory."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root)

    @classmethod
    def from_env(cls) -> SimState:
        value = os.environ.get(ENV_STATE)
        if not value:
            raise SystemExit(f"{ENV_STATE} is not set; run this through the simulated cluster's PATH")
        return cls(Path(value))

    # --- paths -------------------------------------------------------------------------------
    @property
    def pve(self) -> Path:
        return self.dir / "pve"

    @property
    def sim(self) -> Path:
        return self.dir / "sim"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    def node_root(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def node_pve(self, node: str) -> Path:
        """/etc/pve as `node` sees it (the shared tree, or its frozen copy without quorum)."""
        return self.node_root(node) / "etc" / "pve"

    def drbd_backing(self, res: str) -> Path:
        return self.sim / "drbd" / f"{res}.img"

    # --- JSON bookkeeping ----------------------------------------------------------------------
    def read(self, name: str, default: Any = None) -> Any:
        path = self.sim / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default

    def write(self, name: str, data: Any) -> None:
        path = self.sim / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One big lock for bookkeeping changes: fakes run as concurrent processes.

        Re-entrant within a process (and per thread), so helpers may lock without knowing
        whether their caller already does.
        """
        self.sim.mkdir(parents=True, exist_ok=True)
        key = str(self.sim.resolve())
        with _REGISTRY_GUARD:
            entry = _LOCKS.setdefault(key, _ProcessLock())
        with entry.thread_lock:
            if entry.depth == 0:
                entry.handle = open(self.sim / ".lock", "a+")  # noqa: SIM115 - held across the yield
                fcntl.flock(entry.handle, fcntl.LOCK_EX)
            entry.depth += 1
            try:
                yield
            finally:
                entry.depth -= 1
                if entry.depth == 0 and entry.handle is not None:
                    fcntl.flock(entry.handle, fcntl.LOCK_UN)
                    entry.handle.close()
                    entry.handle = None

    # --- nodes -----------------------------------------------------------------------------------
    def nodes(self) -> dict[str, dict[str, Any]]:
        return dict(self.read("nodes.json", {}))

    def node_names(self) -> list[str]:
        return list(self.nodes())

    def node_online(self, node: str) -> bool:
        return bool(self.nodes().get(node, {}).get("online", False))

    def node_quorate(self, node: str) -> bool:
        info = self.nodes().get(node, {})
        return bool(info.get("online", False) and info.get("quorate", False))

    def node_by_host(self, host: str) -> str | None:
        """Resolve what ssh was given (node name or cluster IP) to a node name."""
        for name, info in self.nodes().items():
            if host in (name, info.get("ip")):
                return name
        return None

    def scenario_json(self) -> dict[str, Any]:
        return dict(self.read("scenario.json", {}))

    # --- clock -----------------------------------------------------------------------------------
    def now(self) -> float:
        """Simulated wall clock: real time plus whatever the tests fast-forwarded."""
        return time.time() + float(self.read("clock.json", {}).get("offset", 0.0))
