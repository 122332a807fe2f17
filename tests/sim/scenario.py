"""The knobs of a simulated cluster: what is installed, how many nodes, what is broken at the start."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Package versions as the Debian packages report them (dpkg-query ${Version}).
PLUGIN_VERSIONS = ("5.2.2", "7.0.1", "8.3.0")
LINSTOR_VERSIONS = {
    # short knob -> (package version, REST API version the controller reports)
    "1.20": ("1.20.0", "1.16.0"),
    "1.32": ("1.32.3", "1.26.0"),
    "1.33": ("1.33.3", "1.27.0"),
    "1.34": ("1.34.0", "1.28.0"),
}

DEFAULT_STORAGE_CFG = """\
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

lvmthin: local-lvm
\tthinpool data
\tvgname pve
\tcontent rootdir,images

drbd: drbdstorage
\tresourcegroup defaultpool
\tcontent images,rootdir
\tcontroller {controller_ip}

"""


def linstor_package_version(knob: str) -> str:
    """'1.33' -> '1.33.3'; a full version passes through unchanged."""
    return LINSTOR_VERSIONS[knob][0] if knob in LINSTOR_VERSIONS else knob


@dataclass(frozen=True)
class Scenario:
    """Everything a test can choose about the simulated cluster before it starts.

    Node names are pve1..pveN with cluster IPs 10.0.0.1..N; the physical host running the
    LINSTOR controller is `controller_node`.
    """

    nodes: int = 3
    plugin_version: str = "8.3.0"
    linstor_version: str = "1.33"
    pve_version: str = "8.4.1"
    controller_node: str = "pve1"
    # Nodes that are powered off / unreachable at start.
    offline_nodes: tuple[str, ...] = ()
    # Nodes whose pmxcfs has no quorum at start (their /etc/pve is read-only).
    no_quorum_nodes: tuple[str, ...] = ()
    # The host controller is installed but stopped at start.
    controller_down: bool = False
    # VMIDs that already exist: {vmid: node}.
    existing_vms: dict[int, str] = field(default_factory=dict)
    # Verbatim storage.cfg; None = DEFAULT_STORAGE_CFG with the controller's IP filled in.
    storage_cfg: str | None = None
    # Satellites running a different LINSTOR version than the rest: {node: version}.
    satellite_versions: dict[str, str] = field(default_factory=dict)
    # What apt's configured repository holds: {package: [Debian versions]}; linstor-common, linstor-controller and
    # linstor-satellite hold the cluster's own LINSTOR version unless given here. Same on every node...
    apt_versions: dict[str, list[str]] = field(default_factory=dict)
    # ...unless a node has its own: {node: {package: [versions]}} (overrides apt_versions package by package).
    apt_versions_by_node: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # Seconds before the simulated HA CRM notices a request, and before the LRM acts on it.
    ha_delay: float = 0.3
    # pmxcfs lock acquire timeout (10 s in PVE); lower it to keep no-quorum tests fast.
    cfs_lock_timeout: float = 10.0
    # LINSTOR resource group the default storage.cfg points at.
    resource_group: str = "defaultpool"
    # Seed for MAC addresses, UUIDs and pm- names.
    seed: int = 4242

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 5:
            raise ValueError("a simulated cluster has 1 to 5 nodes")
        names = self.node_names
        nodes = (self.controller_node, *self.offline_nodes, *self.no_quorum_nodes, *self.satellite_versions,
                 *self.apt_versions_by_node)  # fmt: skip
        for node in nodes:
            if node not in names:
                raise ValueError(f"unknown node {node!r}; the scenario has {', '.join(names)}")

    @property
    def node_names(self) -> list[str]:
        return [f"pve{i}" for i in range(1, self.nodes + 1)]

    def node_ip(self, node: str) -> str:
        return f"10.0.0.{self.node_names.index(node) + 1}"

    @property
    def linstor_package_version(self) -> str:
        return linstor_package_version(self.linstor_version)

    @property
    def rest_api_version(self) -> str:
        for package, rest in LINSTOR_VERSIONS.values():
            if package == self.linstor_package_version:
                return rest
        return "1.27.0"

    @property
    def plugin_major(self) -> int:
        return int(self.plugin_version.split(".")[0])

    def initial_storage_cfg(self) -> str:
        if self.storage_cfg is not None:
            return self.storage_cfg
        text = DEFAULT_STORAGE_CFG.format(controller_ip=self.node_ip(self.controller_node))
        return text.replace("resourcegroup defaultpool", f"resourcegroup {self.resource_group}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["existing_vms"] = {str(k): v for k, v in self.existing_vms.items()}
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        data: dict[str, Any] = json.loads(text)
        data["existing_vms"] = {int(k): v for k, v in data.get("existing_vms", {}).items()}
        for key in ("offline_nodes", "no_quorum_nodes"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)
