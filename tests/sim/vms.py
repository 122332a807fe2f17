"""Running VMs: what `qm start` / `qm stop` and the HA LRM do to a VM and its disks.

Runtime state (sim/vms.json): {"<vmid>": {"status": "running", "node": "pve1", "since": <time>}}.
A VM runs on the node whose directory holds its config; its DRBD disks are held open there
(Primary). Starting checks what QEMU would need: activated volumes (through the storage plugin),
existing absolute-path devices, a DRBD device it may open for writing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from . import drbd, plugin, storage, vmconf
from .state import SimState

VMS_FILE = "vms.json"


class VmError(Exception):
    pass


def runtime(state: SimState) -> dict[str, dict[str, Any]]:
    return dict(state.read(VMS_FILE, {}))


def status(state: SimState, vmid: int) -> str:
    entry = runtime(state).get(str(vmid))
    if not entry or entry.get("status") != "running" or not state.node_online(entry["node"]):
        return "stopped"
    return "running"


def running_node(state: SimState, vmid: int) -> str | None:
    entry = runtime(state).get(str(vmid))
    if entry and entry.get("status") == "running" and state.node_online(entry["node"]):
        return str(entry["node"])
    return None


def _set(state: SimState, vmid: int, entry: dict[str, Any] | None) -> None:
    data = runtime(state)
    if entry is None:
        data.pop(str(vmid), None)
    else:
        data[str(vmid)] = entry
    state.write(VMS_FILE, data)


def holder(vmid: int) -> str:
    return f"vm:{vmid}"


def run_hookscript(state: SimState, node: str, vmid: int, conf: vmconf.VmConfig, phase: str) -> None:
    """pre-start aborts the start on a non-zero exit; other phases only warn."""
    volid = conf.values.get("hookscript")
    if not volid:
        return
    storeid, _, rel = volid.partition(":")
    script_rel = rel.split("/", 1)[1] if rel.startswith("snippets/") else rel
    real = f"/var/lib/vz/snippets/{script_rel}"
    script = state.node_root(node) / real.lstrip("/")
    env = dict(os.environ)
    env.update({"PVE_SIM_NODE": node, "PVE_SIM_ROOT": str(state.node_root(node))})
    result = subprocess.run([str(script), str(vmid), phase], env=env, check=False)
    if result.returncode != 0:
        message = (f"hookscript error for {vmid} on {phase}: command '{real} {vmid} {phase}' failed: "
                   f"exit code {result.returncode}")  # fmt: skip
        if phase == "pre-start":
            raise VmError(message)
        print(message, flush=True)


def start(state: SimState, node: str, vmid: int, plugin_version: str) -> list[str]:
    """Start VM `vmid` on `node` (vm_start); returns warnings. Raises VmError with QEMU's/PVE's text."""
    if status(state, vmid) == "running":
        raise VmError(f"VM {vmid} already running")
    pve = state.node_pve(node)
    conf = vmconf.parse(vmconf.conf_path(pve, node, vmid).read_text())
    run_hookscript(state, node, vmid, conf, "pre-start")
    parsed = storage.read_storage_cfg(pve, plugin_version)
    warnings: list[str] = []
    to_open: list[str] = []
    for key, value in sorted(conf.drives().items()):
        if vmconf.is_cdrom(value):
            continue
        volume = vmconf.drive_file(value)
        if volume == "none":
            continue
        if volume.startswith("/"):
            # Absolute paths are skipped by storage activation; QEMU just opens them.
            device = state.node_root(node) / volume.lstrip("/")
            if not device.exists():
                raise VmError(_qemu_fail(key, volume, "No such file or directory"))
            res = drbd.res_of_device(volume)
            if res:
                to_open.append(res)
            continue
        storeid, _, volname = volume.partition(":")
        scfg = parsed.ids.get(storeid)
        if scfg is None:
            raise VmError(f"storage '{storeid}' does not exist")
        backend = plugin.lookup(state, node, storeid, scfg)
        if backend is None:
            continue
        try:
            warnings += backend.activate(volname)
        except plugin.StorageError as err:
            raise VmError(str(err)) from err
        res = backend.linstor_name(volname)
        if not drbd.is_up(state, node, res):
            raise VmError(_qemu_fail(key, drbd.device_path(res), "No such file or directory"))
        to_open.append(res)
    opened: list[str] = []
    with state.locked():
        failing = ""
        try:
            for failing in to_open:
                drbd.open_for_write(state, node, failing, holder(vmid))
                opened.append(failing)
        except drbd.DrbdError as err:
            for res in opened:
                drbd.close(state, node, res, holder(vmid))
            failed_path = drbd.device_path(failing)
            key = next(k for k, v in conf.drives().items() if failing in v or failed_path in v)
            raise VmError(_qemu_fail(key, failed_path, str(err).rsplit(": ", 1)[-1])) from err
        _set(state, vmid, {"status": "running", "node": node, "since": state.now()})
    return warnings


def _qemu_fail(key: str, path: str, reason: str) -> str:
    return (f"kvm: -drive file={path},if=none,id=drive-{key},format=raw,cache=none,aio=io_uring,detect-zeroes=on: "
            f"Could not open '{path}': {reason}\nstart failed: QEMU exited with code 1")  # fmt: skip


def stop(state: SimState, vmid: int) -> None:
    entry = runtime(state).get(str(vmid))
    with state.locked():
        drbd.release_holder(state, holder(vmid), entry["node"] if entry else None)
        _set(state, vmid, None)


def kill_on_node(state: SimState, node: str) -> list[int]:
    """The node died: its VMs are gone (their configs stay where they are)."""
    killed = []
    for vmid, entry in runtime(state).items():
        if entry.get("node") == node:
            killed.append(int(vmid))
            drbd.release_holder(state, holder(int(vmid)), node)
            _set(state, int(vmid), None)
    return killed


def move_config(state: SimState, vmid: int, source: str, target: str) -> None:
    """What HA recovery and migration do: rename the config into the target node's directory."""
    src = vmconf.conf_path(state.pve, source, vmid)
    dst = vmconf.conf_path(state.pve, target, vmid)
    dst.parent.mkdir(parents=True, exist_ok=True)
    Path(src).rename(dst)
