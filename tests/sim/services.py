"""What starting and stopping a unit does on a simulated node, node power, and the boot sequence."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import controller, drbd, ha, satellite, systemd, vmconf, vms
from .state import SimState

CONTROLLER_UNIT = "linstor-controller.service"


class UnitFailed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _job_failed(unit: str) -> UnitFailed:
    return UnitFailed(
        f"Job for {unit} failed because the control process exited with error code.\n"
        f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.'
    )


def start_unit(state: SimState, node: str, unit: str) -> None:
    with state.locked():
        if systemd.is_active(state, node, unit):
            return
        if unit == CONTROLLER_UNIT:
            version = satellite.package_version(state, node, "linstor-controller") or "1.33.3"
            address = state.nodes()[node]["ip"]
            try:
                controller.start(state, address, node, state.node_root(node), version)
            except controller.ControllerError as err:
                systemd.set_active(state, node, unit, "failed")
                raise _job_failed(unit) from err
            systemd.set_active(state, node, unit, "active")
            satellite.sync_all(state)
            return
        if unit == satellite.SATELLITE_UNIT:
            systemd.set_active(state, node, unit, "active")
            satellite.on_start(state, node)
            return
        if unit == "drbd.service":
            satellite.bring_up_from_res_files(state, node)
        elif unit.startswith("drbd@") and unit.endswith((".service", ".target")):
            res = systemd.instance_of(unit)
            if not (satellite.res_dir(state, node) / f"{res}.res").exists():
                service = f"drbd@{res}.service"
                systemd.set_active(state, node, service, "failed")
                if unit.endswith(".target"):
                    raise UnitFailed(f"A dependency job for {unit} failed. See 'journalctl -xe' for details.")
                raise _job_failed(service)
            satellite.bring_up_from_res_files(state, node, only=res)
            systemd.set_active(state, node, f"drbd@{res}.service", "active")
        systemd.set_active(state, node, unit, "active")


def stop_unit(state: SimState, node: str, unit: str) -> None:
    with state.locked():
        if unit == CONTROLLER_UNIT:
            controller.stop(state, state.nodes()[node]["ip"])
        systemd.set_active(state, node, unit, "inactive")
        if unit == satellite.SATELLITE_UNIT:
            satellite.refresh(state)
        elif unit == "drbd.service":
            for res in drbd.devices_on(state, node):
                if node not in drbd.primaries(state, res):
                    drbd.down(state, node, res)
        elif unit.startswith("drbd@"):
            res = systemd.instance_of(unit)
            if node not in drbd.primaries(state, res):
                drbd.down(state, node, res)
            systemd.set_active(state, node, f"drbd@{res}.service", "inactive")
            systemd.set_active(state, node, f"drbd@{res}.target", "inactive")


# --- quorum and /etc/pve views ------------------------------------------------------------------
def _set_immutable(path: Path, on: bool) -> None:
    # Root ignores permission bits; the immutable flag makes writes fail with EPERM as pmxcfs does.
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return
    flag = "+i" if on else "-i"
    subprocess.run(["chattr", "-R", flag, str(path)], check=False, capture_output=True)


def freeze_view(state: SimState, node: str) -> None:
    """No quorum on `node`: its /etc/pve becomes a read-only snapshot (files 0444, dirs 0555)."""
    link = state.node_pve(node)
    if not link.is_symlink():
        return
    frozen = state.node_root(node) / "etc" / ".pve-readonly"
    if frozen.exists():
        thaw_view(state, node)
    shutil.copytree(state.pve, frozen, symlinks=True)
    for path in [frozen, *frozen.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o555 if path.is_dir() else 0o444)
    link.unlink()
    frozen.rename(link)
    _set_immutable(link, True)


def thaw_view(state: SimState, node: str) -> None:
    link = state.node_pve(node)
    if link.is_symlink() or not link.exists():
        if not link.exists() and not link.is_symlink():
            link.symlink_to(state.pve.resolve())
        return
    _set_immutable(link, False)
    for path in [link, *link.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(link)
    link.symlink_to(state.pve.resolve())


def recompute_quorum(state: SimState) -> None:
    """Votequorum: a node is quorate when it is online, a majority is online, and no test forbade it."""
    with state.locked():
        nodes = state.nodes()
        online = [n for n, info in nodes.items() if info.get("online")]
        majority = len(online) * 2 > len(nodes)
        for info in nodes.values():
            info["quorate"] = bool(info.get("online") and majority and not info.get("quorum_blocked"))
        state.write("nodes.json", nodes)
        for name, info in nodes.items():
            if info["quorate"]:
                thaw_view(state, name)
            else:
                freeze_view(state, name)


# --- power ----------------------------------------------------------------------------------------
def power_off(state: SimState, node: str) -> None:
    with state.locked():
        controller.stop_owned_by(state, node)
        vms.kill_on_node(state, node)
        drbd.drop_node(state, node)
        data = state.read(f"systemd/{node}.json", {})
        data["active"] = {}
        data["env"] = {}
        state.write(f"systemd/{node}.json", data)
        nodes = state.nodes()
        nodes[node]["online"] = False
        state.write("nodes.json", nodes)
        satellite.refresh(state)
    recompute_quorum(state)


def boot_order(state: SimState, node: str) -> list[str]:
    """Enabled units in the order this node starts them.

    Nothing orders the satellite after drbd.service upstream; unless a drop-in says
    After=drbd.service (or a drbd@ unit), the simulation starts it first - the unlucky order.
    """
    enabled = systemd.enabled_units(state, node)
    sat_after = " ".join(systemd.parsed_unit(state, node, satellite.SATELLITE_UNIT).get("Unit", {}).get("After", []))
    drbd_units = [u for u in enabled if u == "drbd.service" or u.startswith("drbd@") or u == "drbd-configured.target"]
    sat_waits = "drbd.service" in sat_after or "drbd@" in sat_after or "drbd-configured.target" in sat_after
    first = [u for u in ("corosync.service", "pve-cluster.service") if u in enabled]
    storage = (drbd_units + [satellite.SATELLITE_UNIT]) if sat_waits else ([satellite.SATELLITE_UNIT] + drbd_units)
    storage = [u for u in storage if u in enabled]
    late = [u for u in enabled if u not in first and u not in storage and u != "pve-guests.service"]
    last = ["pve-guests.service"] if "pve-guests.service" in enabled else []
    return first + storage + late + last


def power_on(state: SimState, node: str) -> list[str]:
    """Boot `node`: start enabled units in boot order; returns failures as text."""
    with state.locked():
        nodes = state.nodes()
        nodes[node]["online"] = True
        state.write("nodes.json", nodes)
        systemd.daemon_reload(state, node)
    recompute_quorum(state)
    failures: list[str] = []
    for unit in boot_order(state, node):
        if unit == "pve-guests.service":
            failures += startall(state, node)
        try:
            start_unit(state, node, unit)
        except UnitFailed as err:
            failures.append(err.message)
    with state.locked():
        satellite.sync_all(state)
    return failures


def startall(state: SimState, node: str) -> list[str]:
    """pve-guests: onboot VMs that are not HA-managed, by startup order then VMID (proxmox.md section 5)."""
    pve = state.node_pve(node)
    plugin_version = str(state.scenario_json().get("plugin_version", "8.3.0"))
    candidates = []
    for vmid, owner in vmconf.all_vms(pve).items():
        if owner != node:
            continue
        conf = vmconf.parse(vmconf.conf_path(pve, node, vmid).read_text())
        if conf.values.get("onboot") != "1" or ha.is_managed(pve, vmid):
            continue
        order = 1 << 30
        for part in conf.values.get("startup", "").split(","):
            key, _, value = part.partition("=")
            if key in ("order",) or (value == "" and key.isdigit()):
                order = int(value or key)
        candidates.append((order, vmid))
    failures = []
    for _, vmid in sorted(candidates):
        try:
            vms.start(state, node, vmid, plugin_version)
        except vms.VmError as err:
            failures.append(f"Starting VM {vmid} failed: {err}")
    return failures
