"""LINSTOR satellites on the simulated nodes: whom they follow, and the DRBD resources they bring up.

What a satellite does with `/var/lib/linstor.d/*.res` depends on its version (linstor.md section 5):

- <= 1.20.0: at start it deletes every .res file except names matching LS_KEEP_RES (from its unit's
  environment, e.g. a `systemctl edit` drop-in);
- 1.20.1 .. 1.32.x: the same deletion, but only once a controller has connected;
- >= 1.33.0: once connected, it deletes only .res files of resources the controller does not know.

A connected satellite writes a .res file for and brings up every resource the controller has on
its node, and takes down the ones it no longer has. DRBD devices stay up when the satellite stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import controller, drbd, network, systemd
from .state import SimState

SATELLITE_UNIT = "linstor-satellite.service"


def version_tuple(version: str) -> tuple[int, int, int]:
    numbers = re.findall(r"\d+", version)[:3]
    return (int(numbers[0]), int(numbers[1]), int(numbers[2])) if len(numbers) == 3 else (0, 0, 0)


def package_version(state: SimState, node: str, package: str) -> str | None:
    return state.read("packages.json", {}).get(node, {}).get(package)


def running_version(state: SimState, node: str) -> str:
    """The version the node's satellite runs: the package version at its last start (apt restarts it)."""
    started = state.read("satellites.json", {}).get(node, {}).get("version")
    return str(started or package_version(state, node, "linstor-satellite") or "")


def res_dir(state: SimState, node: str) -> Path:
    return state.node_root(node) / "var" / "lib" / "linstor.d"


@contextlib.contextmanager
def _cluster_state_locked(path: Path) -> Iterator[dict[str, Any]]:
    # Same sidecar lock as the stand-in controller uses for this file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
            data.setdefault("satellites", {})
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
                os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cluster_state(state: SimState) -> dict[str, Any]:
    path = controller.cluster_state_path(state)
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return {"satellites": {}}


def satellite_running(state: SimState, node: str) -> bool:
    return state.node_online(node) and systemd.is_active(state, node, SATELLITE_UNIT)


def _db_nodes(db_file: str) -> set[str]:
    data = _read_db(db_file)
    return {str(n.get("name", "")).casefold() for n in data.get("nodes", [])}


def _read_db(db_file: str) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(db_file).read_text()))
    except (OSError, ValueError):
        return {}


def refresh(state: SimState) -> None:
    """Bring sim/linstor_cluster_state.json in line with nodes and services.

    A satellite that (re)starts follows the most recently started running controller that knows
    its node and runs the same release - the controller that would connect to it last.
    """
    running = sorted(network.endpoints(state).values(), key=lambda e: float(e.get("started", 0)), reverse=True)
    with _cluster_state_locked(controller.cluster_state_path(state)) as data:
        sats = data["satellites"]
        for node in state.node_names():
            version = running_version(state, node)
            online = satellite_running(state, node)
            entry = sats.setdefault(node, {"version": version, "online": False, "controller": ""})
            was_online = bool(entry.get("online"))
            entry["version"] = version
            entry["online"] = online
            if online and (not was_online or not _follows_running(entry, running)):
                for ctrl in running:
                    same = version_tuple(str(ctrl.get("version", ""))) == version_tuple(version)
                    if same and node.casefold() in _db_nodes(str(ctrl.get("db", ""))):
                        entry["controller"] = ctrl.get("controller_id", "")
                        break


def report_in_use(state: SimState, in_use: dict[str, list[str]]) -> None:
    """Where each node holds a resource Primary, for the controllers' resource list (`state.in_use`)."""
    with _cluster_state_locked(controller.cluster_state_path(state)) as data:
        for node, entry in data["satellites"].items():
            entry["in_use"] = sorted(in_use.get(node, []))


def _follows_running(entry: dict[str, Any], running: list[dict[str, Any]]) -> bool:
    return any(entry.get("controller") and entry.get("controller") == c.get("controller_id") for c in running)


def followed_controller(state: SimState, node: str) -> dict[str, Any] | None:
    """The running controller this node's satellite is connected to (same release), if any."""
    entry = cluster_state(state).get("satellites", {}).get(node)
    if not entry or not entry.get("online") or not satellite_running(state, node):
        return None
    for ctrl in network.endpoints(state).values():
        if ctrl.get("controller_id") and ctrl.get("controller_id") == entry.get("controller"):
            if version_tuple(str(ctrl.get("version", ""))) == version_tuple(str(entry.get("version", ""))):
                return ctrl
    return None


def keep_res_pattern(state: SimState, node: str) -> re.Pattern[str] | None:
    value = systemd.loaded_environment(state, node, SATELLITE_UNIT).get("LS_KEEP_RES")
    if not value:
        return None
    try:
        return re.compile(value)
    except re.error:
        return None


def _delete_res_files(state: SimState, node: str, keep: set[str]) -> None:
    pattern = keep_res_pattern(state, node)
    directory = res_dir(state, node)
    if not directory.is_dir():
        return
    for path in directory.glob("*.res"):
        name = path.stem
        if name in keep or (pattern is not None and pattern.search(name)):
            continue
        path.unlink()


def on_start(state: SimState, node: str) -> None:
    """linstor-satellite.service started on `node`."""
    installed = package_version(state, node, "linstor-satellite") or "0.0.0"
    if version_tuple(installed) <= (1, 20, 0):
        _delete_res_files(state, node, keep=set())
    info = state.read("satellites.json", {})
    info[node] = {"cleaned": False, "version": installed}
    state.write("satellites.json", info)
    refresh(state)
    sync(state, node)


def res_text(res: str, version: str, node: str) -> str:
    return (
        f"# This file was generated by linstor({version}), do not edit manually.\n"
        f'# Local node: {node}\n\nresource "{res}"\n{{\n    on "{node}"\n    {{\n'
        f"        volume 0\n        {{\n            device minor 1000;\n        }}\n    }}\n}}\n"
    )


def sync(state: SimState, node: str) -> None:
    """Apply what the followed controller has for `node`: .res files and DRBD devices."""
    ctrl = followed_controller(state, node)
    if ctrl is None:
        return
    db = _read_db(str(ctrl.get("db", "")))
    mine: dict[str, dict[str, Any]] = {}
    for rsc in db.get("resources", []):
        if str(rsc.get("node_name", "")).casefold() == node.casefold():
            mine[str(rsc["name"])] = rsc
    known = {str(rd.get("name")) for rd in db.get("resource_definitions", [])}
    version = running_version(state, node)
    info = state.read("satellites.json", {})
    if not info.get(node, {}).get("cleaned", True):
        if version_tuple(version) >= (1, 33, 0):
            directory = res_dir(state, node)
            for path in directory.glob("*.res") if directory.is_dir() else []:
                if path.stem not in known:
                    path.unlink()
        elif version_tuple(version) > (1, 20, 0):
            _delete_res_files(state, node, keep=set(mine))
        info.setdefault(node, {})["cleaned"] = True
        state.write("satellites.json", info)
    directory = res_dir(state, node)
    directory.mkdir(parents=True, exist_ok=True)
    two_primaries = {
        str(rd.get("name")): str(rd.get("props", {}).get("DrbdOptions/Net/allow-two-primaries", "no")) == "yes"
        for rd in db.get("resource_definitions", [])
    }
    managed = set(state.read("managed.json", {}).get(node, []))
    for res in mine:
        path = directory / f"{res}.res"
        if not path.exists():
            path.write_text(res_text(res, version, node))
        size = _size_kib(db, res)
        entry = drbd.resources(state).get(res)
        if (
            entry is None
            or int(entry.get("size_kib", 0)) < size
            or entry.get("allow_two_primaries") != two_primaries.get(res)
        ):
            drbd.define(state, res, size, two_primaries.get(res, False))
        drbd.up(state, node, res)
    for res in managed - set(mine):
        # The controller took the resource off this node: drbdadm down, .res removed.
        drbd.down(state, node, res)
        (directory / f"{res}.res").unlink(missing_ok=True)
    all_managed = state.read("managed.json", {})
    all_managed[node] = sorted(mine)
    state.write("managed.json", all_managed)


def _size_kib(db: dict[str, Any], res: str) -> int:
    for rd in db.get("resource_definitions", []):
        if str(rd.get("name")) == res:
            vds = rd.get("volume_definitions") or [{}]
            return int(vds[0].get("size_kib", 0) or 0)
    return 0


def bring_up_from_res_files(state: SimState, node: str, only: str | None = None) -> list[str]:
    """drbd.service / drbd@<res>.target: `drbdadm adjust` for the .res files present."""
    directory = res_dir(state, node)
    started = []
    for path in sorted(directory.glob("*.res")) if directory.is_dir() else []:
        if only is not None and path.stem != only:
            continue
        if not drbd.is_up(state, node, path.stem):
            entry = drbd.resources(state).get(path.stem)
            if entry is None:
                drbd.define(state, path.stem, 0, False)
            drbd.up(state, node, path.stem)
        started.append(path.stem)
    return started


def sync_all(state: SimState) -> None:
    refresh(state)
    for node in state.node_names():
        if state.node_online(node):
            sync(state, node)
