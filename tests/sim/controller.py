"""Starting and stopping stand-in LINSTOR controllers as the simulated `linstor-controller.service`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import network
from .state import SimState

DAEMON = Path(__file__).with_name("controller_daemon.py")
CLUSTER_STATE = "linstor_cluster_state.json"
START_TIMEOUT = 15.0


class ControllerError(Exception):
    pass


def db_path(root: Path) -> Path:
    return root / "var" / "lib" / "linstor" / "linstordb.mv.db"


def config_directory(root: Path) -> Path:
    """The controller's /etc/linstor; `standin-fail-migration` there makes its next migration fail."""
    return root / "etc" / "linstor"


def cluster_state_path(state: SimState) -> Path:
    return state.sim / CLUSTER_STATE


def start(state: SimState, address: str, owner: str, root: Path, version: str) -> dict[str, object]:
    """Run a controller that answers for `address`; returns its network.json entry."""
    current = network.endpoints(state).get(address)
    if current and _alive(int(current["pid"])):
        return current
    ready = state.sim / "run" / f"controller-{address}.json"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    log_path = state.sim / "run" / f"controller-{address}.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, str(DAEMON), "--db", str(db_path(root)), "--version", version,
         "--config-directory", str(config_directory(root)),
         "--cluster-state", str(cluster_state_path(state)), "--ready-file", str(ready), "--watch", str(state.sim),
         "--controller-id", f"{address}:{network.LINSTOR_PORT}", "--address", address],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None:
            # Only this start's lines: an earlier run's error must not be mistaken for this one's.
            with open(log_path, "rb") as read:
                read.seek(log_start)
                text = read.read().decode(errors="replace")
            raise ControllerError(f"the LINSTOR controller for {address} exited: {text.strip()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise ControllerError(f"the LINSTOR controller for {address} did not start within {START_TIMEOUT}s")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    entry: dict[str, object] = {
        "port": info["port"], "pid": info["pid"], "owner": owner, "controller_id": info.get("controller_id", ""),
        "started": time.time(), "version": version, "db": str(db_path(root)),
    }  # fmt: skip
    endpoints = network.endpoints(state)
    endpoints[address] = entry
    state.write(network.NETWORK_FILE, endpoints)
    return entry


def stop(state: SimState, address: str) -> None:
    endpoints = network.endpoints(state)
    entry = endpoints.pop(address, None)
    state.write(network.NETWORK_FILE, endpoints)
    if entry:
        terminate(int(entry["pid"]))


def stop_owned_by(state: SimState, owner: str) -> None:
    for address, entry in network.endpoints(state).items():
        if entry.get("owner") == owner:
            stop(state, address)


def terminate(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0: reap it if it is our child, else read its state.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"
