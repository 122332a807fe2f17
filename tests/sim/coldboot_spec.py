"""What a cold start starts from: the cluster's guests, HA resources and boot-time units, read from a live simulation.

`spec_from_sim()` turns a SimCluster into the ClusterSpec the cold-boot model (coldboot.py) boots:
VM configs, HA resources, the DRBD resources each node's units bring up from kept .res files, the
ExecStartPre commands of pve-guests.service beyond PVE's own, and the enabled timer units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import ha, satellite, systemd, vmconf
from .cluster import SimCluster

PVE_STARTALL_DELAY = "/usr/share/pve-manager/helpers/pve-startall-delay"


@dataclass(frozen=True)
class VmSpec:
    vmid: int
    node: str
    drbd: bool  # a disk on drbd storage: activation needs an answering controller
    by_path: tuple[str, ...] = ()  # DRBD resources attached as /dev/drbd/by-res/<res>/0
    hookscript: str | None = None
    onboot: bool = False
    order: int = 1 << 30
    ha: bool = False
    max_restart: int = 1
    max_relocate: int = 1
    # The VM's configuration file as key/value pairs, for scripts that read it.
    config: tuple[tuple[str, str], ...] = ()

    @property
    def sid(self) -> str:
        return f"vm:{self.vmid}"


@dataclass(frozen=True)
class TimerSpec:
    unit: str
    command: str
    on_boot: float
    interval: float


@dataclass(frozen=True)
class NodeSpec:
    name: str
    boot_resources: tuple[str, ...] = ()  # DRBD resources its units bring up from kept .res files
    exec_start_pre: tuple[str, ...] = ()  # pve-guests.service ExecStartPre beyond PVE's own
    timers: tuple[TimerSpec, ...] = ()


@dataclass(frozen=True)
class ClusterSpec:
    nodes: tuple[NodeSpec, ...]
    vms: tuple[VmSpec, ...]
    controller_vmid: int
    max_workers: int = 4
    storage_cfg: str = ""  # /etc/pve/storage.cfg as it was, for scripts that read it

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)


def spec_from_sim(cluster: SimCluster, controller_vmid: int) -> ClusterSpec:
    """What a power-on would find: VM configs, HA resources, enabled units and kept .res files."""
    state = cluster.state
    pve = state.pve
    drbd_ids = {sid for sid, cfg in cluster.storage_cfg().items() if cfg.get("type") == "drbd"}
    resources = ha.read_resources(pve).ids
    vms = []
    for vmid, node in sorted(vmconf.all_vms(pve).items()):
        conf = vmconf.parse(vmconf.conf_path(pve, node, vmid).read_text())
        drives = [vmconf.drive_file(v) for v in conf.drives().values() if not vmconf.is_cdrom(v)]
        by_path = tuple(r for r in (_drbd_res(d) for d in drives) if r)
        on_drbd = any(d.split(":", 1)[0] in drbd_ids for d in drives if ":" in d and not d.startswith("/"))
        cfg = resources.get(f"vm:{vmid}")
        managed = cfg is not None and cfg.get("state", "started") != "ignored"
        order = 1 << 30
        for part in conf.values.get("startup", "").split(","):
            key, _, value = part.partition("=")
            if key == "order" or (value == "" and key.isdigit()):
                order = int(value or key)
        vms.append(VmSpec(vmid=vmid, node=node, drbd=on_drbd, by_path=by_path,
                          hookscript=conf.values.get("hookscript"), onboot=conf.values.get("onboot") == "1",
                          order=order, ha=managed,
                          max_restart=int((cfg or {}).get("max_restart", 1)),
                          max_relocate=int((cfg or {}).get("max_relocate", 1)),
                          config=tuple(conf.values.items())))  # fmt: skip
    nodes = tuple(_node_spec(cluster, node) for node in cluster.nodes)
    datacenter = (pve / "datacenter.cfg").read_text() if (pve / "datacenter.cfg").exists() else ""
    workers = next((int(line.split(":")[1]) for line in datacenter.splitlines() if line.startswith("max_workers:")), 4)
    return ClusterSpec(nodes=nodes, vms=tuple(vms), controller_vmid=controller_vmid, max_workers=workers,
                       storage_cfg=cluster.storage_cfg_text())


def _drbd_res(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if path.startswith("/") and len(parts) == 5 and parts[:3] == ["dev", "drbd", "by-res"] and parts[4] == "0":
        return parts[3]
    return None


def _node_spec(cluster: SimCluster, node: str) -> NodeSpec:
    state = cluster.state
    enabled = systemd.enabled_units(state, node)
    kept = {p.stem for p in satellite.res_dir(state, node).glob("*.res")}
    if "drbd.service" in enabled:
        up = kept
    else:
        up = {systemd.instance_of(u) for u in enabled if u.startswith("drbd@") and u.endswith(".target")} & kept
    guests = systemd.parsed_unit(state, node, "pve-guests.service").get("Service", {})
    pre = tuple(c for c in guests.get("ExecStartPre", []) if PVE_STARTALL_DELAY not in c)
    timers = []
    for unit in enabled:
        if not unit.endswith(".timer"):
            continue
        section = systemd.parsed_unit(state, node, unit).get("Timer", {})
        service = section.get("Unit", [unit.replace(".timer", ".service")])[-1]
        command = systemd.parsed_unit(state, node, service).get("Service", {}).get("ExecStart", [""])[-1]
        timers.append(TimerSpec(unit, command, _seconds(section.get("OnBootSec", ["0"])[-1]),
                                _seconds(section.get("OnUnitActiveSec", ["60"])[-1])))  # fmt: skip
    return NodeSpec(name=node, boot_resources=tuple(sorted(up)), exec_start_pre=pre, timers=tuple(timers))


def _seconds(text: str) -> float:
    """systemd time spans as the units here write them: '15s', '1min', '2min 30s', '90'."""
    total = 0.0
    units = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "": 1}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units.get(unit, 1)
    return total
