"""What the steps of a deploy share: the options, what preflight found, and the adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.deploy.controller import Directory, Endpoint
from builder.deploy.journal import Journal
from builder.deploy.options import Options
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.storagecfg import Entry
from builder.deploy.versions import Plugin


@dataclass(frozen=True)
class NodeFacts:
    node: Node
    satellite_version: str | None
    # drbd-utils has the per-resource drbd@.target template (else only drbd.service brings it up).
    drbd_target: bool


@dataclass(frozen=True)
class Facts:
    """The cluster as preflight found it; steps take their inputs from here, never from guesses."""

    local: Node
    nodes: tuple[NodeFacts, ...]
    plugin: Plugin
    linstor_version: str
    storage: Entry
    drbd_entries: tuple[Entry, ...]
    resource_group: str
    host_endpoint: Endpoint
    appliance_endpoint: Endpoint
    firewall_ports: tuple[int, ...]
    host_toml: str
    db_base: str  # the H2 URL's path, e.g. /var/lib/linstor/linstordb
    manifest: dict[str, Any]
    image_size: int
    disk_size: int
    raw_sha256: str | None  # of the uncompressed image, when SHA256SUMS lists it

    @property
    def node_ips(self) -> list[str]:
        return [n.node.address for n in self.nodes]


@dataclass
class Context:
    options: Options
    pve: Pve
    transport: Transport
    directory: Directory
    journal: Journal | None = None
    facts: Facts | None = None

    @property
    def f(self) -> Facts:
        assert self.facts is not None, "preflight has not run"
        return self.facts

    @property
    def j(self) -> Journal:
        assert self.journal is not None, "no journal in a dry run"
        return self.journal
