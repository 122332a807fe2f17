"""Thin adapters over Proxmox VE's command-line tools: qm, pvesm, pvesh, ha-manager, pveversion, dpkg-query.

Structured data comes from `pvesh ... --output-format json`; text output is parsed only where PVE has
no JSON (pveversion). `qm` is node-local (proxmox.md section 1.1), so VM commands run on the node that
owns the VM, looked up right before each call because HA may move it.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from builder.deploy.remote import Node, Transport
from builder.errors import ApplianceError, die


@dataclass(frozen=True)
class ClusterNode:
    name: str
    ip: str
    online: bool
    local: bool


@dataclass(frozen=True)
class ClusterStatus:
    quorate: bool
    nodes: tuple[ClusterNode, ...]

    @property
    def local(self) -> ClusterNode:
        return next(n for n in self.nodes if n.local)


class Pve:
    def __init__(self, transport: Transport, local: Node) -> None:
        self.transport = transport
        self.local = local
        self._nodes: dict[str, Node] = {local.name: local}

    def node(self, name: str) -> Node:
        return self._nodes.get(name) or Node(name, name)

    def remember(self, nodes: list[Node]) -> None:
        for node in nodes:
            self._nodes[node.name] = node

    # --- pvesh --------------------------------------------------------------------------------
    def pvesh(self, method: str, path: str, *options: str, check: bool = True) -> Any:
        result = self.transport.run(self.local, ["pvesh", method, path, *options, "--output-format", "json"],
                                    check=check)  # fmt: skip
        if result.returncode != 0:
            return None
        text = result.stdout.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            # Worker endpoints print a UPID, not JSON.
            return text

    def cluster_status(self) -> ClusterStatus:
        entries = self.pvesh("get", "/cluster/status") or []
        cluster = next((e for e in entries if e.get("type") == "cluster"), None)
        # A node that is not part of a cluster has no cluster entry and is quorate by itself.
        quorate = bool(cluster.get("quorate", 0)) if cluster else True
        nodes = tuple(
            ClusterNode(str(e["name"]), str(e.get("ip", e["name"])), bool(e.get("online", 0)), bool(e.get("local", 0)))
            for e in entries if e.get("type") == "node"
        )  # fmt: skip
        if not any(n.local for n in nodes):
            die("pvesh did not report which node this is", hint="check 'pvesh get /cluster/status'")
        return ClusterStatus(quorate, nodes)

    def vms(self) -> list[dict[str, Any]]:
        return list(self.pvesh("get", "/cluster/resources", "--type", "vm") or [])

    def vm(self, vmid: int) -> dict[str, Any] | None:
        return next((v for v in self.vms() if int(v.get("vmid", -1)) == vmid), None)

    def vm_config(self, vmid: int, entry: dict[str, Any] | None = None) -> dict[str, Any] | None:
        entry = entry or self.vm(vmid)
        if entry is None:
            return None
        return dict(self.pvesh("get", f"/nodes/{entry['node']}/qemu/{vmid}/config") or {})

    def bridges(self, node: str) -> list[str] | None:
        """Bridges (Linux or OVS) configured on a node; None if the node did not answer."""
        entries = self.pvesh("get", f"/nodes/{node}/network", "--type", "any_bridge", check=False)
        if entries is None:
            return None
        return [str(e.get("iface")) for e in entries]

    def ha_services(self) -> dict[str, dict[str, Any]]:
        entries = self.pvesh("get", "/cluster/ha/status/current") or []
        return {str(e["sid"]): e for e in entries if e.get("type") == "service"}

    def ha_resources(self) -> dict[str, dict[str, Any]]:
        entries = self.pvesh("get", "/cluster/ha/resources") or []
        return {str(e["sid"]): e for e in entries}

    def backup_jobs(self) -> dict[str, dict[str, Any]]:
        return {str(e["id"]): e for e in self.pvesh("get", "/cluster/backup") or []}

    # --- qm -------------------------------------------------------------------------------------
    def qm(self, vmid: int, verb: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        entry = self.vm(vmid)
        if entry is None:
            die(f"VM {vmid} does not exist", hint="run the deploy again with --resume to recreate it")
        return self.transport.run(self.node(str(entry["node"])), ["qm", verb, str(vmid), *args], check=check)

    def qm_create(self, vmid: int, *args: str) -> None:
        self.transport.run(self.local, ["qm", "create", str(vmid), *args])

    # --- pvesm ------------------------------------------------------------------------------------
    def pvesm_set(self, storage: str, values: dict[str, str], delete: tuple[str, ...] = ()) -> None:
        argv = ["pvesm", "set", storage]
        for key, value in values.items():
            argv += [f"--{key}", value]
        if delete:
            argv += ["--delete", ",".join(delete)]
        self.transport.run(self.local, argv)

    def pvesm_alloc(self, storage: str, vmid: int, name: str, size_kib: int) -> None:
        self.transport.run(self.local, ["pvesm", "alloc", storage, str(vmid), name, str(size_kib)])

    def apiver(self) -> int | None:
        result = self.transport.run(self.local, ["pvesm", "apiinfo"], check=False)
        match = re.search(r"^APIVER\s+(\d+)", result.stdout, re.MULTILINE)
        return int(match.group(1)) if match else None

    # --- packages and services ---------------------------------------------------------------------
    def pve_version(self) -> str | None:
        try:
            result = self.transport.run(self.local, ["pveversion"], check=False)
        except ApplianceError:
            # Not installed: this is no Proxmox VE node, which the caller reports.
            return None
        match = re.match(r"^pve-manager/(\S+?)/", result.stdout.strip())
        return match.group(1) if result.returncode == 0 and match else None

    def package_version(self, node: Node, package: str) -> str | None:
        result = self.transport.run(node, ["dpkg-query", "-W", "-f=${Version}", package], check=False)
        version = result.stdout.strip()
        return version if result.returncode == 0 and version else None

    def systemctl(self, node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.transport.run(node, ["systemctl", *args], check=check)

    def unit_active(self, node: Node, unit: str) -> bool:
        return self.systemctl(node, "is-active", "--quiet", unit, check=False).returncode == 0

    def unit_enabled(self, node: Node, unit: str) -> bool:
        result = self.systemctl(node, "is-enabled", unit, check=False)
        return result.stdout.strip() == "enabled"
