"""DRBD devices in the simulation.

Every resource has one sparse backing file (sim/drbd/<res>.img); a node on which the resource is
up has `<node root>/dev/drbd/by-res/<res>/0` as a hard link to it, so all replicas see the same
bytes at once. A node is Primary while something on it holds the device open for writing (a
running VM, an import); with allow-two-primaries off a second node cannot promote and gets
EMEDIUMTYPE, as DRBD 9's auto-promote answers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .state import SimState

DRBD_FILE = "drbd.json"
EMEDIUMTYPE = "Wrong medium type"


class DrbdError(Exception):
    pass


def device_path(res: str) -> str:
    """The path as tools on a node see it."""
    return f"/dev/drbd/by-res/{res}/0"


def node_device(state: SimState, node: str, res: str) -> Path:
    return state.node_root(node) / device_path(res).lstrip("/")


def _load(state: SimState) -> dict[str, Any]:
    return dict(state.read(DRBD_FILE, {"resources": {}}))


def resources(state: SimState) -> dict[str, dict[str, Any]]:
    return dict(_load(state)["resources"])


def define(state: SimState, res: str, size_kib: int, allow_two_primaries: bool = True) -> None:
    """Make sure the backing file exists with at least `size_kib`."""
    data = _load(state)
    entry = data["resources"].setdefault(res, {"size_kib": 0, "allow_two_primaries": allow_two_primaries,
                                                "openers": {}})  # fmt: skip
    entry["size_kib"] = max(int(entry["size_kib"]), int(size_kib))
    entry["allow_two_primaries"] = allow_two_primaries
    backing = state.drbd_backing(res)
    backing.parent.mkdir(parents=True, exist_ok=True)
    with open(backing, "ab") as handle:
        if handle.tell() < entry["size_kib"] * 1024:
            handle.truncate(entry["size_kib"] * 1024)
    _save(state, data)


def forget(state: SimState, res: str) -> None:
    data = _load(state)
    data["resources"].pop(res, None)
    _save(state, data)
    for node in state.node_names():
        down(state, node, res)
    state.drbd_backing(res).unlink(missing_ok=True)


def up(state: SimState, node: str, res: str) -> None:
    """Bring the resource up on `node`: its device node appears."""
    backing = state.drbd_backing(res)
    if not backing.exists():
        define(state, res, 0)
    device = node_device(state, node, res)
    if device.exists():
        return
    device.parent.mkdir(parents=True, exist_ok=True)
    os.link(backing, device)


def down(state: SimState, node: str, res: str) -> None:
    device = node_device(state, node, res)
    device.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        device.parent.rmdir()
    data = _load(state)
    entry = data["resources"].get(res)
    if entry and entry["openers"].pop(node, None) is not None:
        _save(state, data)


def is_up(state: SimState, node: str, res: str) -> bool:
    return node_device(state, node, res).exists()


def devices_on(state: SimState, node: str) -> list[str]:
    base = state.node_root(node) / "dev" / "drbd" / "by-res"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "0").exists())


def primaries(state: SimState, res: str) -> list[str]:
    entry = _load(state)["resources"].get(res, {})
    held = {node for node, holders in entry.get("openers", {}).items() if holders}
    return sorted(held | loop_holders(state, res))


def loop_holders(state: SimState, res: str) -> set[str]:
    """Nodes whose device is attached to a writable loop device (a real one, from the kernel's list): a loop
    device keeps the DRBD device open, so the node stays Primary until it is detached."""
    nodes = {os.path.realpath(node_device(state, node, res)): node for node in state.node_names()}
    found = set()
    for loop in Path("/sys/block").glob("loop*"):
        try:
            backing = (loop / "loop/backing_file").read_text().strip()
            read_only = (loop / "ro").read_text().strip() == "1"
        except OSError:
            continue
        if backing in nodes and not read_only:
            found.add(nodes[backing])
    return found


def open_for_write(state: SimState, node: str, res: str, holder: str) -> None:
    """Auto-promote: become Primary on `node` for `holder`, or refuse like DRBD does."""
    if not is_up(state, node, res):
        raise DrbdError(f"Could not open '{device_path(res)}': No such file or directory")
    data = _load(state)
    entry = data["resources"].setdefault(res, {"size_kib": 0, "allow_two_primaries": True, "openers": {}})
    others = [n for n, holders in entry["openers"].items() if holders and n != node]
    if others and (not entry.get("allow_two_primaries", True) or len(others) >= 2):
        raise DrbdError(f"Could not open '{device_path(res)}': {EMEDIUMTYPE}")
    holders = entry["openers"].setdefault(node, [])
    if holder not in holders:
        holders.append(holder)
    _save(state, data)


def close(state: SimState, node: str, res: str, holder: str) -> None:
    data = _load(state)
    entry = data["resources"].get(res)
    if not entry:
        return
    holders = entry["openers"].get(node, [])
    if holder in holders:
        holders.remove(holder)
    if not holders:
        entry["openers"].pop(node, None)
    _save(state, data)


def _save(state: SimState, data: dict[str, Any]) -> None:
    state.write(DRBD_FILE, data)
    _report_roles(state, data)


def _report_roles(state: SimState, data: dict[str, Any]) -> None:
    """Each satellite tells its controller where it is Primary (the resource's `state.in_use` in the REST API)."""
    from . import satellite

    in_use: dict[str, list[str]] = {}
    for res, entry in data["resources"].items():
        for node, holders in entry.get("openers", {}).items():
            if holders:
                in_use.setdefault(node, []).append(res)
    satellite.report_in_use(state, in_use)


def release_holder(state: SimState, holder: str, node: str | None = None) -> None:
    """Drop every open of `holder` (a VM that stopped or whose node died)."""
    data = _load(state)
    for entry in data["resources"].values():
        for n in list(entry["openers"]):
            if node is not None and n != node:
                continue
            entry["openers"][n] = [h for h in entry["openers"][n] if h != holder]
            if not entry["openers"][n]:
                del entry["openers"][n]
    _save(state, data)


def drop_node(state: SimState, node: str) -> None:
    """A node lost power: all its devices and opens are gone."""
    for res in devices_on(state, node):
        down(state, node, res)
    data = _load(state)
    for entry in data["resources"].values():
        entry["openers"].pop(node, None)
    _save(state, data)


@contextlib.contextmanager
def opened(state: SimState, node: str, res: str, holder: str) -> Iterator[Path]:
    open_for_write(state, node, res, holder)
    try:
        yield node_device(state, node, res)
    finally:
        close(state, node, res, holder)


def res_of_device(path: str) -> str | None:
    """'/dev/drbd/by-res/<res>/0' -> '<res>'."""
    parts = path.strip("/").split("/")
    if len(parts) == 5 and parts[:3] == ["dev", "drbd", "by-res"] and parts[4] == "0":
        return parts[3]
    return None
