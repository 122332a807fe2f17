"""SimCluster: builds a simulated PVE + LINSTOR cluster for a Scenario and lets tests drive and inspect it."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import binaries, controller, drbd, ha, network, reactor, satellite, services, storage, systemd, vmconf, vms
from .scenario import Scenario, linstor_package_version
from .state import ENV_NODE, ENV_ROOT, ENV_STATE, SimState

PVE_PACKAGES = {
    "pve-manager": "8.4.1",
    "qemu-server": "8.3.12",
    "libpve-storage-perl": "8.3.6",
    "pve-ha-manager": "4.0.7",
    "pve-cluster": "8.1.0",
    "proxmox-ve": "8.4.0",
    "drbd-utils": "9.30.0-1",
    "drbd-dkms": "9.2.13-1",
}
STORAGE_POOL = "drbdpool"


class SimCluster:
    """One simulated cluster in `directory`; use as a context manager or call start()/close()."""

    def __init__(self, scenario: Scenario, directory: Path) -> None:
        self.scenario = scenario
        self.state = SimState(Path(directory))
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, background: bool = True) -> SimCluster:
        self._build()
        for node in self.scenario.node_names:
            if node in self.scenario.offline_nodes:
                continue
            failures = services.power_on(self.state, node)
            if failures:
                raise RuntimeError(f"simulated boot of {node} failed: {failures}")
        if self.scenario.controller_down and self.scenario.controller_node not in self.scenario.offline_nodes:
            self.controller_down()
        if self.scenario.no_quorum_nodes:
            self.lose_quorum(*self.scenario.no_quorum_nodes)
        reactor.tick(self.state)
        if background:
            self._ticker = threading.Thread(target=self._tick_loop, name="sim-reactor", daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
            self._ticker = None
        for entry in network.endpoints(self.state).values():
            controller.terminate(int(entry["pid"]))
        with contextlib.suppress(Exception):
            self.state.write(network.NETWORK_FILE, {})
        for node in self.state.node_names():
            with contextlib.suppress(Exception):
                services.thaw_view(self.state, node)

    def _tick_loop(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                reactor.tick(self.state)

    # --- building the initial state -------------------------------------------------------------
    def _build(self) -> None:
        sc = self.scenario
        st = self.state
        st.dir.mkdir(parents=True, exist_ok=True)
        st.sim.mkdir(exist_ok=True)
        (st.sim / "scenario.json").write_text(sc.to_json() + "\n")
        nodes = {
            name: {"ip": sc.node_ip(name), "nodeid": index + 1, "online": False, "quorate": False,
                   "quorum_blocked": False}
            for index, name in enumerate(sc.node_names)
        }  # fmt: skip
        st.write("nodes.json", nodes)
        st.write("clock.json", {"offset": 0.0})
        binaries.write_bin(st.bin)
        self._build_pmxcfs()
        packages: dict[str, dict[str, str]] = {}
        for name in sc.node_names:
            packages[name] = self._build_node(name)
        st.write("packages.json", packages)
        self._seed_controller_db()
        for vmid, node in sorted(sc.existing_vms.items()):
            self._existing_vm(vmid, node)

    def _build_pmxcfs(self) -> None:
        sc = self.scenario
        pve = self.state.pve
        for sub in ("priv/lock", "ha", "nodes"):
            (pve / sub).mkdir(parents=True, exist_ok=True)
        (pve / "storage.cfg").write_text(sc.initial_storage_cfg())
        (pve / "datacenter.cfg").write_text("keyboard: en-us\n")
        nodelist = "".join(
            f"  node {{\n    name: {n}\n    nodeid: {i + 1}\n    quorum_votes: 1\n"
            f"    ring0_addr: {sc.node_ip(n)}\n  }}\n"
            for i, n in enumerate(sc.node_names)
        )
        (pve / "corosync.conf").write_text(
            f"logging {{\n  debug: off\n  to_syslog: yes\n}}\n\nnodelist {{\n{nodelist}}}\n\n"
            "quorum {\n  provider: corosync_votequorum\n}\n\ntotem {\n  cluster_name: pve-sim\n  config_version: 3\n"
            "  interface {\n    linknumber: 0\n  }\n  ip_version: ipv4-6\n  link_mode: passive\n"
            "  secauth: on\n  version: 2\n}\n"
        )
        for node in sc.node_names:
            for sub in ("qemu-server", "lxc", "openvz", "priv"):
                (pve / "nodes" / node / sub).mkdir(parents=True, exist_ok=True)

    def _build_node(self, node: str, ip: str | None = None) -> dict[str, str]:
        sc = self.scenario
        ip = ip or sc.node_ip(node)
        root = self.state.node_root(node)
        (root / "etc").mkdir(parents=True, exist_ok=True)
        link = root / "etc" / "pve"
        if not link.is_symlink():
            link.symlink_to(self.state.pve.resolve())
        (root / "etc" / "hostname").write_text(f"{node}\n")
        (root / "etc" / "network").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "network" / "interfaces").write_text(
            f"auto lo\niface lo inet loopback\n\niface eno1 inet manual\n\nauto vmbr0\niface vmbr0 inet static\n"
            f"\taddress {ip}/24\n\tgateway 10.0.0.254\n\tbridge-ports eno1\n\tbridge-stp off\n"
            "\tbridge-fd 0\n"
        )
        for sub in ("var/lib/linstor.d", "var/lib/vz/snippets", "var/lib/vz/images", "var/lock/qemu-server",
                    "dev/drbd/by-res", "etc/linstor", "var/cache/linstor-proxmox"):  # fmt: skip
            (root / sub).mkdir(parents=True, exist_ok=True)
        is_controller = node == sc.controller_node
        version = linstor_package_version(sc.satellite_versions.get(node, sc.linstor_version))
        packages = dict(PVE_PACKAGES)
        packages["pve-manager"] = sc.pve_version
        packages.update({"linstor-proxmox": sc.plugin_version, "linstor-satellite": version, "linstor-common": version,
                         "linstor-client": "1.25.4", "python-linstor": "1.25.3"})  # fmt: skip
        if is_controller:
            packages["linstor-controller"] = version
            (root / "var" / "lib" / "linstor").mkdir(parents=True, exist_ok=True)
            (root / "var" / "lib" / "linstor").chmod(0o750)
            (root / "etc" / "linstor" / "linstor.toml").write_text(
                '[db]\n  user = "linstor"\n  password = "linstor"\n'
                '  connection_url = "jdbc:h2:/var/lib/linstor/linstordb"\n'
            )
        systemd.install_units(self.state, node, with_controller=is_controller)
        enabled = list(systemd.DEFAULT_ENABLED) + (["linstor-controller.service"] if is_controller else [])
        for unit in enabled:
            for link_path in systemd.enablement_links(self.state, node, unit):
                link_path.parent.mkdir(parents=True, exist_ok=True)
                if not link_path.is_symlink():
                    link_path.symlink_to(f"/lib/systemd/system/{unit}")
        return packages

    def _seed_controller_db(self) -> None:
        """The host controller's database as the stand-in reads it, with the PVE nodes registered."""
        sc = self.scenario
        rng = random.Random(f"{sc.seed}:db")

        def new_uuid() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        nodes = []
        for name in sc.node_names:
            nodes.append({
                "name": name, "type": "COMBINED" if name == sc.controller_node else "SATELLITE",
                "uuid": new_uuid(), "flags": [], "props": {"CurStltConnName": "default", "NodeUname": name},
                "net_interfaces": [{"name": "default", "address": sc.node_ip(name), "satellite_port": 3366,
                                    "satellite_encryption_type": "PLAIN", "is_active": True, "uuid": new_uuid()}],
                "storage_pools": [
                    {"storage_pool_name": "DfltDisklessStorPool", "provider_kind": "DISKLESS", "props": {},
                     "uuid": new_uuid()},
                    {"storage_pool_name": STORAGE_POOL, "provider_kind": "LVM_THIN",
                     "props": {"StorDriver/LvmVg": "drbdpool", "StorDriver/ThinPool": "thinpool"},
                     "uuid": new_uuid(), "free_capacity": 400 * 1024 * 1024, "total_capacity": 500 * 1024 * 1024},
                ],
            })  # fmt: skip
        db = {
            "format": "linstor-standin-db",
            "version": 1,
            "linstor_version": linstor_package_version(sc.linstor_version),
            "nodes": nodes,
            "resource_groups": [
                {"name": "DfltRscGrp", "description": "", "props": {}, "select_filter": {"place_count": 2},
                 "uuid": new_uuid()},
                {"name": sc.resource_group, "description": "", "props": {},
                 "select_filter": {"place_count": min(2, sc.nodes), "storage_pool": STORAGE_POOL},
                 "uuid": new_uuid()},
            ],
            "resource_definitions": [],
            "resources": [],
            "properties": {"Cluster/LocalID": new_uuid()},
        }  # fmt: skip
        path = controller.db_path(self.state.node_root(sc.controller_node))
        path.write_text(json.dumps(db, indent=2, sort_keys=True) + "\n")

    def _existing_vm(self, vmid: int, node: str) -> None:
        """A VM that was there before: a small config with a DRBD disk, replicated on two nodes."""
        sc = self.scenario
        rng = random.Random(f"{sc.seed}:existing:{vmid}")
        res = f"pm-{rng.getrandbits(32):08x}" if sc.plugin_major >= 8 else f"vm-{vmid}-disk-1"
        volname = f"{res}_{vmid}" if sc.plugin_major >= 8 else res
        path = controller.db_path(self.state.node_root(sc.controller_node))
        db = json.loads(path.read_text())
        db["resource_definitions"].append({
            "name": res, "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "resource_group_name": sc.resource_group, "flags": [], "drbd_port": 7000 + len(db["resource_definitions"]),
            "drbd_secret": "simsecret", "props": {"Aux/pm/vmid": str(vmid),
                                                  "DrbdOptions/Net/allow-two-primaries": "yes"},
            "volume_definitions": [{"volume_number": 0, "size_kib": 1024 * 1024, "minor_number": 1000 + vmid,
                                    "props": {}, "flags": [], "uuid": str(uuid.UUID(int=rng.getrandbits(128)))}],
        })  # fmt: skip
        holders = [node] + [n for n in sc.node_names if n != node][:1]
        for index, holder in enumerate(holders):
            db["resources"].append({
                "name": res, "node_name": holder, "uuid": str(uuid.UUID(int=rng.getrandbits(128))), "flags": [],
                "props": {}, "node_id": index, "storage_pool_name": STORAGE_POOL, "create_timestamp": 0,
            })  # fmt: skip
        path.write_text(json.dumps(db, indent=2, sort_keys=True) + "\n")
        conf = vmconf.VmConfig(values={
            "name": f"vm{vmid}", "memory": "2048", "cores": "2", "scsihw": "virtio-scsi-pci",
            "scsi0": f"drbdstorage:{volname},size=1G", "net0": f"virtio=BC:24:11:00:00:{vmid % 256:02X},bridge=vmbr0",
            "boot": "order=scsi0;net0", "ostype": "l26", "smbios1": f"uuid={uuid.UUID(int=rng.getrandbits(128))}",
        })  # fmt: skip
        target = vmconf.conf_path(self.state.pve, node, vmid)
        target.write_text(conf.render())

    # --- running commands ---------------------------------------------------------------------
    def env(self, node: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a root shell on `node`: fakes first on PATH, PVE_SIM_* set."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.state.bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env[ENV_STATE] = str(self.state.dir)
        env[ENV_NODE] = node
        env[ENV_ROOT] = str(self.root(node))
        return env

    def run(self, node: str, *argv: str, input: str | None = None, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run a command on `node` as the deploy code would (fakes are found through PATH)."""
        return subprocess.run(list(argv), env=self.env(node), capture_output=True, text=True, input=input,
                              timeout=timeout, check=check)  # fmt: skip

    def root(self, node: str) -> Path:
        return self.state.node_root(node)

    @property
    def directory(self) -> Path:
        return self.state.dir

    @property
    def nodes(self) -> list[str]:
        """The cluster's members now (join() and delnode() change them)."""
        return self.state.node_names()

    def ip(self, node: str) -> str:
        return str(self.state.nodes()[node]["ip"])

    # --- inspection ---------------------------------------------------------------------------
    def storage_cfg_text(self) -> str:
        return (self.state.pve / "storage.cfg").read_text()

    def storage_cfg(self) -> dict[str, dict[str, Any]]:
        """storage.cfg as PVE parses it (with the implicit `local` and defaults); warnings dropped."""
        return storage.read_storage_cfg(self.state.pve, self.scenario.plugin_version).ids

    def storage_cfg_warnings(self) -> list[str]:
        return storage.read_storage_cfg(self.state.pve, self.scenario.plugin_version).warnings

    def vm_owner(self, vmid: int) -> str | None:
        return vmconf.find_owner(self.state.pve, vmid)

    def vm_config(self, vmid: int) -> dict[str, str]:
        owner = self.vm_owner(vmid)
        if owner is None:
            raise KeyError(f"VM {vmid} does not exist")
        return vmconf.parse(vmconf.conf_path(self.state.pve, owner, vmid).read_text()).values

    def vm_status(self, vmid: int) -> str:
        return vms.status(self.state, vmid)

    def vm_running_on(self, vmid: int) -> str | None:
        return vms.running_node(self.state, vmid)

    def ha_resources(self) -> dict[str, dict[str, Any]]:
        return ha.read_resources(self.state.pve).ids

    def ha_services(self) -> dict[str, dict[str, Any]]:
        """The simulated CRM's view: {"vm:100": {"state": "started", "node": "pve1", ...}}."""
        return ha.services(self.state)

    def backup_jobs(self) -> str:
        path = self.state.pve / "jobs.cfg"
        return path.read_text() if path.exists() else ""

    def unit_active(self, node: str, unit: str) -> str:
        return systemd.active_state(self.state, node, systemd.normalize(unit))

    def unit_enabled(self, node: str, unit: str) -> str:
        return systemd.is_enabled(self.state, node, systemd.normalize(unit))

    def unit_environment(self, node: str, unit: str) -> dict[str, str]:
        """Environment= the running unit was started with (after drop-ins loaded by daemon-reload)."""
        return systemd.loaded_environment(self.state, node, systemd.normalize(unit))

    def dropins(self, node: str, unit: str) -> dict[str, str]:
        return {p.name: p.read_text() for p in systemd.dropins(self.state, node, systemd.normalize(unit))}

    def drbd_devices(self, node: str) -> list[str]:
        return drbd.devices_on(self.state, node)

    def drbd_device(self, node: str, res: str) -> Path:
        return drbd.node_device(self.state, node, res)

    def drbd_primary(self, res: str) -> list[str]:
        return drbd.primaries(self.state, res)

    def res_files(self, node: str) -> list[str]:
        directory = satellite.res_dir(self.state, node)
        return sorted(p.stem for p in directory.glob("*.res")) if directory.is_dir() else []

    def satellites(self) -> dict[str, dict[str, Any]]:
        """The file the stand-in controllers read: {node: {version, online, controller}}."""
        return dict(satellite.cluster_state(self.state).get("satellites", {}))

    def controller_endpoints(self) -> dict[str, dict[str, Any]]:
        return network.endpoints(self.state)

    def controller_url(self, address: str | None = None) -> str:
        """http://127.0.0.1:<port> of the controller answering for `address` (default: the host's)."""
        address = address or self.ip(self.scenario.controller_node)
        entry = network.endpoints(self.state).get(address)
        if entry is None:
            raise LookupError(f"no LINSTOR controller answers for {address}")
        return f"http://127.0.0.1:{entry['port']}"

    def linstor_url(self, address: str | None = None) -> str:
        return self.controller_url(address).replace("http://", "linstor://")

    def controller_db(self, node: str | None = None) -> dict[str, Any]:
        path = controller.db_path(self.root(node or self.scenario.controller_node))
        return dict(json.loads(path.read_text()))

    # --- changing things live -------------------------------------------------------------------
    def settle(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            reactor.tick(self.state)

    def advance(self, seconds: float) -> None:
        """Fast-forward the simulated clock (HA timers), then let the cluster catch up."""
        with self.state.locked():
            clock = self.state.read("clock.json", {"offset": 0.0})
            clock["offset"] = float(clock.get("offset", 0.0)) + seconds
            self.state.write("clock.json", clock)
        self.settle()

    def controller_down(self) -> None:
        """The host controller stops (crash or `systemctl stop`); its unit shows inactive."""
        services.stop_unit(self.state, self.scenario.controller_node, services.CONTROLLER_UNIT)

    def controller_up(self) -> None:
        services.start_unit(self.state, self.scenario.controller_node, services.CONTROLLER_UNIT)

    def node_offline(self, node: str) -> None:
        """Power the node off: services, VMs and DRBD devices on it are gone, ssh gets no route."""
        services.power_off(self.state, node)
        self.settle()

    def node_online(self, node: str) -> list[str]:
        """Boot the node with its enabled units; returns boot failures."""
        failures = services.power_on(self.state, node)
        self.settle()
        return failures

    def join(self, node: str, ip: str) -> list[str]:
        """A freshly installed node runs `pvecm add` (proxmox.md section 11.4) and boots into the cluster.

        It gets the lowest free nodeid, a nodelist entry (config_version + 1), /etc/pve/nodes/<node>/, the
        cluster's /etc/pve, and PVE with linstor-satellite installed. Registering it in LINSTOR is the
        admin's part, as on a real cluster. Returns boot failures.
        """
        with self.state.locked():
            info = self.state.nodes()
            if node in info:
                raise ValueError(f"{node} is already a member")
            used = {int(entry["nodeid"]) for entry in info.values()}
            nodeid = min(set(range(1, len(used) + 2)) - used)
            info[node] = {"ip": ip, "nodeid": nodeid, "online": False, "quorate": False, "quorum_blocked": False}
            self.state.write("nodes.json", info)
            self._write_corosync(info)
            for sub in ("qemu-server", "lxc", "openvz", "priv"):
                (self.state.pve / "nodes" / node / sub).mkdir(parents=True, exist_ok=True)
            packages = dict(self.state.read("packages.json", {}))
            packages[node] = self._build_node(node, ip)
            self.state.write("packages.json", packages)
        return self.node_online(node)

    def delnode(self, node: str) -> None:
        """The node is shut down for good and `pvecm delnode <node>` runs on another member (section 11.4):
        it leaves the nodelist and /cluster/status; /etc/pve/nodes/<node>/ stays."""
        services.power_off(self.state, node)
        with self.state.locked():
            info = self.state.nodes()
            del info[node]
            self.state.write("nodes.json", info)
            self._write_corosync(info)
        services.recompute_quorum(self.state)
        self.settle()

    def _write_corosync(self, info: dict[str, dict[str, Any]]) -> None:
        path = self.state.pve / "corosync.conf"
        text = path.read_text()
        nodelist = "".join(
            f"  node {{\n    name: {n}\n    nodeid: {e['nodeid']}\n    quorum_votes: 1\n"
            f"    ring0_addr: {e['ip']}\n  }}\n"
            for n, e in info.items()
        )
        text = re.sub(r"nodelist \{\n.*?\n\}\n", lambda _: f"nodelist {{\n{nodelist}}}\n", text, count=1, flags=re.S)
        version = int(re.search(r"config_version: (\d+)", text).group(1))  # type: ignore[union-attr]
        path.write_text(text.replace(f"config_version: {version}", f"config_version: {version + 1}"))

    def lose_quorum(self, *nodes: str) -> None:
        """Nodes (default: all) lose quorum: /etc/pve read-only there, writes refused."""
        with self.state.locked():
            info = self.state.nodes()
            for node in nodes or self.nodes:
                info[node]["quorum_blocked"] = True
            self.state.write("nodes.json", info)
        services.recompute_quorum(self.state)
        self.settle()

    def regain_quorum(self, *nodes: str) -> None:
        with self.state.locked():
            info = self.state.nodes()
            for node in nodes or self.nodes:
                info[node]["quorum_blocked"] = False
            self.state.write("nodes.json", info)
        services.recompute_quorum(self.state)
        self.settle()

    def start_controller(self, address: str, root: Path, version: str | None = None) -> str:
        """Another controller (e.g. the appliance's) answering for `address`, with its DB under `root`."""
        version = version or linstor_package_version(self.scenario.linstor_version)
        controller.db_path(root).parent.mkdir(parents=True, exist_ok=True)
        with self.state.locked():
            controller.start(self.state, address, f"guest:{address}", root, version)
            satellite.sync_all(self.state)
        return self.controller_url(address)

    def satellite_version(self, node: str) -> str:
        """The version `node`'s satellite runs now (installed at its last start; apt restarts it)."""
        return satellite.running_version(self.state, node)

    def stop_controller(self, address: str) -> None:
        with self.state.locked():
            controller.stop(self.state, address)
            satellite.sync_all(self.state)

    @contextlib.contextmanager
    def drbd_open(self, node: str, res: str, holder: str = "test") -> Iterator[Path]:
        """Hold a DRBD device open for writing on `node` (Primary there) while the block runs."""
        with self.state.locked():
            drbd.open_for_write(self.state, node, res, holder)
        try:
            yield drbd.node_device(self.state, node, res)
        finally:
            with self.state.locked():
                drbd.close(self.state, node, res, holder)


def remove_tree(directory: Path) -> None:
    """Delete a state directory, clearing the immutable flags of read-only /etc/pve views first."""
    if shutil.which("chattr") and os.geteuid() == 0:
        subprocess.run(["chattr", "-R", "-i", str(directory)], check=False, capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)

