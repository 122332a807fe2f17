"""A simulated cluster laid out the way `linstor-appliance deploy` leaves it, plus guests, for the coldstart tests.

The controller VM's disk is a DRBD resource attached by path on every node (`drbd@<res>.target`
enabled), the host controller is stopped and disabled, and storage.cfg points at the appliance's
address. The simulation cannot run a controller inside a VM, so `Appliance.sync()` plays the
appliance: its controller answers `answer_after` seconds after the controller VM started, and is
gone while the VM is not running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sim import controller as sim_controller
from sim import vms as sim_vms
from sim.cluster import SimCluster
from sim.scenario import DEFAULT_STORAGE_CFG, Scenario

from builder.coldstart.layout import NODE_PYTHON, ZIPAPP_TOOL

APPLIANCE_IP = "10.0.0.100"
CONTROLLER_VMID = 100
PROJECT = Path(__file__).resolve().parents[2]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}: {result.stdout}{result.stderr}"
    return result


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@dataclass
class Appliance:
    cluster: SimCluster
    resource: str
    root: Path
    answer_after: float = 0.0
    controller_vmid: int = CONTROLLER_VMID
    ha_guests: list[int] = field(default_factory=list)
    boot_guests: list[int] = field(default_factory=list)
    other_guests: list[int] = field(default_factory=list)

    @property
    def guests(self) -> list[int]:
        return sorted(self.ha_guests + self.boot_guests)

    def controller_running(self) -> bool:
        return APPLIANCE_IP in self.cluster.controller_endpoints()

    def sync(self) -> None:
        """The appliance's controller follows its VM: up `answer_after` seconds after it started, gone with it."""
        entry = sim_vms.runtime(self.cluster.state).get(str(self.controller_vmid))
        running = self.cluster.vm_status(self.controller_vmid) == "running"
        if not running and self.controller_running():
            self.cluster.stop_controller(APPLIANCE_IP)
        elif running and not self.controller_running() and entry:
            if self.cluster.state.now() - float(entry["since"]) >= self.answer_after:
                self.cluster.start_controller(APPLIANCE_IP, self.root)

    def start_time(self, vmid: int) -> float | None:
        entry = sim_vms.runtime(self.cluster.state).get(str(vmid))
        return float(entry["since"]) if entry else None


@dataclass(frozen=True)
class Deployment:
    """Guests by node: HA-managed, started at boot by pve-guests, and on local storage (onboot too)."""

    ha_guests: dict[int, str]
    boot_guests: dict[int, str]
    other_guests: dict[int, str] = field(default_factory=dict)
    nodes: int = 3
    controller_vmid: int = CONTROLLER_VMID
    enable_drbd_target: bool = True
    resource_nodes: tuple[str, ...] | None = None
    # 8.3.0 starts a guest without a controller when its DRBD devices are up on the node; 7.0.1 never does.
    plugin_version: str = "8.3.0"

    def scenario(self) -> Scenario:
        drbd_guests = {**self.ha_guests, **self.boot_guests}
        return Scenario(nodes=self.nodes, existing_vms=drbd_guests, controller_down=True,
                        plugin_version=self.plugin_version,
                        storage_cfg=DEFAULT_STORAGE_CFG.format(controller_ip=APPLIANCE_IP))  # fmt: skip


def deploy(start: Callable[[Scenario], SimCluster], layout: Deployment) -> Appliance:
    """What `linstor-appliance deploy` leaves, written the way the simulation seeds `existing_vms`.

    The controller VM (HA, its disk /dev/drbd/by-res/<res>/0 on every node, drbd@<res>.target
    enabled) runs on pve1; the host controller is stopped and disabled; the appliance's controller
    answers for APPLIANCE_IP with a copy of the host's database.
    """
    cluster = start(layout.scenario())
    nodes = list(layout.resource_nodes or cluster.nodes)
    vmid = layout.controller_vmid
    resource = f"pm-c{vmid:07d}"
    appliance_root = cluster.directory / "appliance"
    db_file = sim_controller.db_path(appliance_root)
    db_file.parent.mkdir(parents=True, exist_ok=True)
    db = json.loads(sim_controller.db_path(cluster.root(cluster.scenario.controller_node)).read_text())
    db["resource_definitions"].append({
        "name": resource, "uuid": f"00000000-0000-4000-8000-{vmid:012d}", "resource_group_name": "defaultpool",
        "flags": [], "drbd_port": 7900, "drbd_secret": "simsecret", "props": {
            "Aux/pm/vmid": str(vmid), "DrbdOptions/Net/allow-two-primaries": "yes"},
        "volume_definitions": [{"volume_number": 0, "size_kib": 1024 * 1024, "minor_number": 999, "props": {},
                                "flags": [], "uuid": f"00000000-0000-4000-8001-{vmid:012d}"}],
    })  # fmt: skip
    for index, node in enumerate(nodes):
        db["resources"].append({"name": resource, "node_name": node, "uuid": f"00000000-0000-4000-8002-{index:012d}",
                                "flags": [], "props": {}, "node_id": index, "storage_pool_name": "drbdpool",
                                "create_timestamp": 0})  # fmt: skip
    db_file.write_text(json.dumps(db, indent=2, sort_keys=True) + "\n")
    pve = cluster.state.pve
    (pve / "nodes/pve1/qemu-server" / f"{vmid}.conf").write_text(
        f"memory: 1024\nname: linstor-controller\nprotection: 1\nscsi0: /dev/drbd/by-res/{resource}/0,shared=1\n"
        "scsihw: virtio-scsi-pci\nserial0: socket\n")
    for guest, node in layout.boot_guests.items():
        conf = pve / "nodes" / node / "qemu-server" / f"{guest}.conf"
        conf.write_text(conf.read_text().replace(f"name: vm{guest}\n", f"name: boot{guest}\nonboot: 1\n"))
    for guest, node in layout.ha_guests.items():
        conf = pve / "nodes" / node / "qemu-server" / f"{guest}.conf"
        conf.write_text(conf.read_text().replace(f"name: vm{guest}\n", f"name: ha{guest}\n"))
    for guest, node in layout.other_guests.items():
        (pve / "nodes" / node / "qemu-server" / f"{guest}.conf").write_text(
            f"memory: 512\nname: local{guest}\nonboot: 1\nscsi0: local-lvm:vm-{guest}-disk-0,size=1G\n")
    resources = f"vm: {vmid}\n\tmax_relocate 3\n\tmax_restart 3\n\tstate started\n\n"
    resources += "".join(f"vm: {guest}\n\tstate started\n\n" for guest in sorted(layout.ha_guests))
    (pve / "ha/resources.cfg").write_text(resources)
    wants = "etc/systemd/system/multi-user.target.wants"
    (cluster.root(cluster.scenario.controller_node) / wants / "linstor-controller.service").unlink()
    if layout.enable_drbd_target:
        for node in nodes:
            (cluster.root(node) / wants / f"drbd@{resource}.target").symlink_to("/lib/systemd/system/drbd@.target")
    cluster.start_controller(APPLIANCE_IP, appliance_root)
    app = Appliance(cluster, resource, appliance_root, controller_vmid=vmid, ha_guests=sorted(layout.ha_guests),
                    boot_guests=sorted(layout.boot_guests), other_guests=sorted(layout.other_guests))  # fmt: skip
    assert wait_for(lambda: all(cluster.vm_status(v) == "running" for v in [vmid, *layout.ha_guests]))
    assert all((cluster.root(n) / f"var/lib/linstor.d/{resource}.res").exists() for n in nodes)
    return app


def cli(cluster: SimCluster, node: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`linstor-appliance <argv> --root <node's root>` as an admin would run it on that node."""
    args = [sys.executable, "-m", "builder", *argv, "--root", str(cluster.root(node))]
    return subprocess.run(args, env=cluster.env(node), cwd=PROJECT, capture_output=True, text=True, timeout=timeout)


def install_everywhere(cluster: SimCluster, *options: str, nodes: Iterable[str] | None = None) -> None:
    for node in nodes or cluster.nodes:
        ok(cli(cluster, node, "coldstart", "install", *options))


def node_script(cluster: SimCluster, node: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`linstor-appliance coldstart <argv>` as the node's units run it: the installed tool, by the node's python3."""
    tool = cluster.root(node) / ZIPAPP_TOOL
    return subprocess.run([NODE_PYTHON, str(tool), "coldstart", *argv], env=cluster.env(node), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def hook(cluster: SimCluster, node: str, vmid: int, phase: str = "pre-start") -> subprocess.CompletedProcess[str]:
    """The hookscript as PVE calls it: `<script> <vmid> <phase>`, with only the node's variables set."""
    script = cluster.root(node) / "var/lib/vz/snippets/linstor-coldstart-hook"
    env = dict(os.environ)
    env.update({"PVE_SIM_NODE": node, "PVE_SIM_ROOT": str(cluster.root(node)),
                "PATH": cluster.env(node)["PATH"]})  # fmt: skip
    return subprocess.run([str(script), str(vmid), phase], env=env, capture_output=True, text=True, timeout=300)
