"""Preflight: read-only checks of this node, the cluster, LINSTOR and the image, all reported at once.

Every problem is one line that says what is wrong and what to do. Nothing here changes anything:
only `pvesh get`, `dpkg-query`, `systemctl is-active`/`show`, `ssh ... sh -c` with read-only commands,
`ping` and REST GETs. When everything is fine the result is the `Facts` the steps work from.

A resumed deploy skips what its own earlier steps explain: the VMID is taken by its VM, the address
answers once the VM runs, the controller on this node is stopped after step 6.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from builder import log
from builder.deploy import controller, firewall, storagecfg
from builder.deploy.context import Facts, NodeFacts
from builder.deploy.controller import Directory, Endpoint, NodeInfo
from builder.deploy.journal import Journal
from builder.deploy.options import Options, Strategy
from builder.deploy.pve import ClusterStatus, Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps import inject as inject_step
from builder.deploy.steps.disk import ours as disk_is_ours
from builder.deploy.steps.vm import is_ours as vm_is_ours
from builder.deploy.versions import Plugin, release
from builder.errors import ApplianceError
from builder.imagewrite import image_size
from builder.manifest import MANIFEST_NAME, load, read_sums, sha256

T = TypeVar("T")
H2_URL = re.compile(r"^jdbc:h2:(?P<path>/[^;]+)")
DEFAULT_RESOURCE_GROUP = "drbdgrp"


@dataclass(frozen=True)
class Problem:
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}"


@dataclass
class Findings:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, message: str, hint: str) -> None:
        self.problems.append(Problem(message, hint))


# A probe per node in one ssh round trip (which also proves SSH works): the satellite's version, and
# whether drbd-utils has the per-resource drbd@.target (systemd loads the template for any instance).
NODE_PROBE = (
    "printf 'satellite=%s\\n' \"$(dpkg-query -W -f='${Version}' linstor-satellite 2>/dev/null)\"; "
    "printf 'drbd_target=%s\\n' \"$(systemctl show -p LoadState --value \"drbd@$1.target\" 2>/dev/null)\"; "
    "echo probed"
)


class Preflight:
    def __init__(self, options: Options, pve: Pve, transport: Transport, directory: Directory,
                 journal: Journal | None) -> None:  # fmt: skip
        self.o = options
        self.pve = pve
        self.transport = transport
        self.directory = directory
        self.journal = journal
        self.found = Findings()

    # Journal-aware relaxations for --resume.
    def _touched(self, key: str) -> bool:
        return self.journal is not None and self.journal.status != "rolled-back" and self.journal.touched(key)

    def _done(self, key: str) -> bool:
        return self.journal is not None and self.journal.status != "rolled-back" and self.journal.state(key) == "done"

    def add(self, message: str, hint: str) -> None:
        self.found.add(message, hint)

    def run(self) -> tuple[Findings, Facts | None]:
        try:
            facts = self._run()
        except Exception as error:  # noqa: BLE001 - whatever stopped the checks is reported with what they found
            message = error.message if isinstance(error, ApplianceError) else f"{type(error).__name__}: {error}"
            self.add(message, (error.hint if isinstance(error, ApplianceError) else None) or "see the message")
            facts = None
        return self.found, facts if not self.found.problems else None

    def _check(self, check: Callable[..., T], *args: Any, default: Any) -> T:
        """One check; if it cannot even ask (a command or a read fails), that is a problem like any other and the
        remaining checks still run, so the report lists everything at once."""
        try:
            return check(*args)
        except ApplianceError as error:
            self.add(error.message, error.hint or "see the message")
            return cast(T, default)
        except Exception as error:  # noqa: BLE001 - e.g. a command's output that does not parse
            self.add(f"a check stopped on an unexpected {type(error).__name__}: {error}",
                     hint="run the deploy with --debug and report it")
            return cast(T, default)

    def _run(self) -> Facts | None:
        o = self.o
        if os.geteuid() != 0:
            self.add("linstor-appliance deploy must run as root", hint="run it with sudo or as root")
        image = self._check(self._image, default=None)
        pve_version = self._check(self.pve.pve_version, default="")
        if pve_version is None:
            self.add("this is not a Proxmox VE node (pveversion does not answer)",
                     hint="run the deploy on the Proxmox VE node that runs the LINSTOR controller")
            return None
        status = self._check(self._cluster, default=None)
        local = self.pve.local
        nodes: list[Node] = []
        offline: list[str] = []
        if status is not None:
            local = Node(status.local.name, status.local.ip, local=True)
            self.pve.local = local
            nodes = [local] + [Node(n.name, n.ip) for n in status.nodes if not n.local]
            self.pve.remember(nodes)
            offline = [n.name for n in status.nodes if not n.online]
        for name in offline:
            self.add(f"node {name} is offline", hint="start it: every node must bring the VM disk up at boot")
        entry, drbd_entries = self._check(self._storage, default=(None, []))
        plugin = self._check(self._plugin, default=None)
        node_facts = self._check(self._nodes, [n for n in nodes if n.name not in offline], default=[])
        host = self._check(self._host_controller, local, default=None)
        linstor_version = self._check(self._versions, host, node_facts, image, default=None)
        if host is not None and host.nodes is not None:
            if status is not None:
                self._check(self._satellites, host.nodes, status, default=None)
            self._check(self._linstor_names, host, default=None)
            usable = sum(1 for n in host.nodes if n.type in controller.SATELLITE_TYPES)
            if o.redundancy > usable:
                self.add(f"--redundancy {o.redundancy} needs {o.redundancy} LINSTOR satellites, the cluster has "
                         f"{usable}", hint=f"use --redundancy {usable} or add nodes")  # fmt: skip
        self._check(self._vmid, default=None)
        if status is not None:
            self._check(self._address, status, default=None)
            self._check(self._bridge, nodes, offline, default=None)
        self._check(self._backup_storage, default=None)
        if self.found.problems or status is None or None in (image, entry, plugin, host, linstor_version):
            return None
        assert image is not None and entry is not None and plugin is not None and host is not None
        assert o.address is not None and linstor_version is not None
        facts = Facts(
            local=local, nodes=tuple(node_facts), plugin=plugin, linstor_version=linstor_version, storage=entry,
            drbd_entries=tuple(drbd_entries),
            resource_group=entry.options.get("resourcegroup", DEFAULT_RESOURCE_GROUP),
            host_endpoint=host.endpoint, appliance_endpoint=Endpoint(str(o.address.ip), host.http_port),
            firewall_ports=tuple(sorted({22, host.http_port, host.https_port or 3371})), host_toml=host.toml,
            db_base=host.db_base, manifest=image.manifest, image_size=image.size, disk_size=image.disk_size,
            raw_sha256=image.raw_sha256,
        )  # fmt: skip
        # The same check step 7 makes, here while nothing is changed yet: a ruleset nft refuses stops the deploy
        # before the host's controller is touched.
        self._check(self._firewall, facts, default=None)
        return None if self.found.problems else facts

    def _firewall(self, facts: Facts) -> None:
        firewall.check(inject_step.firewall_for(facts, self.o))

    # --- the image -------------------------------------------------------------------------------
    def _image(self) -> _Image | None:
        o = self.o
        assert o.image is not None and o.manifest is not None and o.sums is not None
        if not o.image.is_file():
            self.add(f"the image {o.image} does not exist", hint="copy linstor-controller.raw.zst to this node")
            return None
        try:
            manifest = load(o.manifest)
        except ApplianceError as error:
            self.add(error.message, error.hint or "")
            return None
        if not o.sums.is_file():
            self.add(f"{o.sums} does not exist", hint="copy SHA256SUMS from the build output next to the image")
            return None
        sums = read_sums(o.sums)
        if o.image.name not in sums:
            self.add(f"{o.sums.name} lists no checksum for {o.image.name}",
                     hint="use the SHA256SUMS written together with the image")
            return None
        # Hashing the image takes a while; a resumed deploy that already wrote it does not need it again.
        if not self._done("image"):
            log.info(f"checking {o.image.name} against {o.sums.name}")
            if sha256(o.image) != sums[o.image.name]:
                self.add(f"{o.image.name} does not match its SHA256SUMS",
                         hint="copy the image again; it was damaged or changed on the way")
                return None
        if MANIFEST_NAME in sums and o.manifest.name == MANIFEST_NAME and sha256(o.manifest) != sums[MANIFEST_NAME]:
            self.add(f"{o.manifest} does not match its SHA256SUMS", hint="copy manifest.json from the build again")
            return None
        try:
            size = image_size(o.image)
        except ApplianceError as error:
            self.add(error.message, error.hint or "")
            return None
        configured = manifest.get("configuration", {}).get("disk_size")
        disk_size = o.disk_size or int(configured or manifest.get("sizes", {}).get("virtual", size))
        if size > disk_size:
            self.add(f"the image needs {size / 2**30:.2f} GiB but the VM disk has {disk_size / 2**30:.2f} GiB",
                     hint="use a larger --disk-size")
            return None
        raw_name = str(manifest.get("image", ""))
        raw_sha = sums.get(raw_name) if o.image.name.endswith(".zst") else sums.get(o.image.name)
        return _Image(manifest, size, disk_size, raw_sha)

    # --- Proxmox VE ----------------------------------------------------------------------------------
    def _cluster(self) -> ClusterStatus | None:
        status = self.pve.cluster_status()
        if not status.quorate:
            self.add("the Proxmox VE cluster is not quorate", hint="bring enough nodes online ('pvecm status')")
        return status

    def _storage(self) -> tuple[storagecfg.Entry | None, list[storagecfg.Entry]]:
        o = self.o
        assert o.storage is not None
        entries = storagecfg.read(o.root)
        drbd = storagecfg.drbd_entries(entries)
        entry = entries.get(o.storage)
        if entry is None:
            known = ", ".join(e.id for e in drbd) or "none"
            self.add(f"storage '{o.storage}' does not exist in /etc/pve/storage.cfg",
                     hint=f"use a drbd storage (drbd storages here: {known})")
            return None, drbd
        if entry.type != "drbd":
            self.add(f"storage '{o.storage}' is of type {entry.type}, not drbd",
                     hint="the controller VM's disk must be on a LINSTOR (drbd) storage")
            return None, drbd
        return entry, drbd

    def _plugin(self) -> Plugin | None:
        version = self.pve.package_version(self.pve.local, "linstor-proxmox")
        if version is None:
            self.add("the linstor-proxmox plugin is not installed", hint="install linstor-proxmox from LINBIT")
            return None
        plugin = Plugin(release(version))
        self.found.notes.append(plugin.describe())
        if self.o.strategy is Strategy.controllervm and not plugin.has_controllervm:
            self.add(f"--strategy controllervm needs the plugin's controllervm option, which linstor-proxmox "
                     f"{plugin.version} no longer has (removed in 6.0.0)",
                     hint="use the default --strategy device-path")  # fmt: skip
        limit = plugin.max_apiver
        apiver = self.pve.apiver() if limit else None
        if limit and apiver and apiver > limit:
            self.add(f"linstor-proxmox {plugin.version} supports storage APIVER up to {limit}, this Proxmox VE has "
                     f"{apiver}, so the plugin cannot load", hint="upgrade linstor-proxmox")  # fmt: skip
        return plugin

    def _nodes(self, nodes: list[Node]) -> list[NodeFacts]:
        found = []
        for node in nodes:
            result = self.transport.script(node, NODE_PROBE, self.o.resource, check=False)
            if "probed" not in result.stdout.splitlines():
                lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
                reason = lines[-1] if lines else f"exit code {result.returncode}"
                self.add(f"cannot run commands on {node.name} over SSH: {reason}",
                         hint=f"make 'ssh -o BatchMode=yes root@{node.address} true' work from this node")
                continue
            values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
            satellite = values.get("satellite") or None
            if satellite is None:
                self.add(f"linstor-satellite is not installed on {node.name}",
                         hint="every node must be a LINSTOR satellite to run the controller VM")
            found.append(NodeFacts(node, release(satellite) if satellite else None,
                                   values.get("drbd_target") == "loaded"))  # fmt: skip
        return found

    # --- LINSTOR -------------------------------------------------------------------------------------
    def _host_controller(self, local: Node) -> _Host | None:
        o = self.o
        toml_path = o.host_path("/etc/linstor/linstor.toml")
        if not toml_path.is_file():
            self.add("/etc/linstor/linstor.toml does not exist on this node",
                     hint="run the deploy on the node that runs the LINSTOR controller")
            return None
        toml = toml_path.read_text()
        try:
            listen, http_port, https_port = controller.http_settings(toml)
        except ApplianceError as error:
            self.add(error.message, error.hint or "fix /etc/linstor/linstor.toml")
            return None
        db_base = self._database(toml)
        endpoint = controller.host_endpoint(o.root)
        host = _Host(endpoint, toml, http_port, https_port, db_base or "/var/lib/linstor/linstordb")
        if self._touched("handover"):
            # The controller here was stopped by this deploy; the journal knows what it said.
            assert self.journal is not None
            host.version = self.journal.fact("controller_version")
            host.nodes = None
            return host if db_base else None
        if not self.pve.unit_active(local, "linstor-controller.service"):
            self.add(f"the LINSTOR controller does not run on this node ({local.name})",
                     hint="run the deploy on the node where 'systemctl is-active linstor-controller' says active")
            return None
        if db_base is None:
            return None
        try:
            with controller.connect(self.directory, endpoint, timeout=10) as ctrl:
                host.version = ctrl.version()
                host.nodes = ctrl.nodes()
                host.resource = ctrl.resource_definition(o.resource)
        except ApplianceError as error:
            self.add(error.message, error.hint or "")
            return None
        return host

    def _database(self, toml: str) -> str | None:
        try:
            url = str(tomllib.loads(toml).get("db", {}).get("connection_url", "jdbc:h2:/var/lib/linstor/linstordb"))
        except tomllib.TOMLDecodeError as error:
            self.add(f"/etc/linstor/linstor.toml is not valid TOML ({error})", hint="fix it")
            return None
        match = H2_URL.match(url)
        if not match:
            kind = url.split(":")[1] if url.startswith("jdbc:") else url.split(":")[0]
            self.add(f"the controller uses a {kind} database ({url}); the appliance carries only H2 database files",
                     hint="convert it with linstor-database export-db/import-db to H2 first")  # fmt: skip
            return None
        base = match.group("path")
        if not base.startswith("/var/lib/linstor/"):
            self.add(f"the controller's database {base} is outside /var/lib/linstor",
                     hint="the appliance's controller may only write there; move it to /var/lib/linstor")
            return None
        if not self._touched("handover") and not self.o.host_path(base + ".mv.db").is_file():
            self.add(f"the controller database {base}.mv.db does not exist on this node",
                     hint="run the deploy on the node that runs the LINSTOR controller")
            return None
        return base

    def _versions(self, host: _Host | None, nodes: list[NodeFacts], image: _Image | None) -> str | None:
        versions: dict[str, str] = {}
        if host is not None and host.version:
            versions["the controller on this node"] = release(host.version)
        for facts in nodes:
            if facts.satellite_version:
                versions[f"the satellite on {facts.node.name}"] = facts.satellite_version
        if image is not None:
            image_version = image.manifest.get("linstor_controller", {}).get("version")
            if image_version:
                versions["the image"] = release(str(image_version))
            else:
                self.add("the image's manifest names no linstor-controller version",
                         hint="use a manifest.json written by linstor-appliance build")
        if len(set(versions.values())) > 1:
            listing = ", ".join(f"{who} {v}" for who, v in versions.items())
            self.add(f"LINSTOR versions differ: {listing}",
                     hint="LINSTOR has no mixed-version operation: upgrade them together, and build the image "
                          "with --linstor-version matching the satellites")  # fmt: skip
            return None
        return next(iter(versions.values()), None) if host is not None and host.version else None

    def _satellites(self, nodes: list[NodeInfo], status: ClusterStatus) -> None:
        bad = [f"{n.name} ({n.status.lower()})" for n in nodes
               if n.type in controller.SATELLITE_TYPES and n.status != "ONLINE"]  # fmt: skip
        if bad:
            self.add(f"LINSTOR satellites not online: {', '.join(bad)}",
                     hint="start them ('systemctl start linstor-satellite') and check 'linstor node list'")
        linstor_nodes = {n.name.casefold() for n in nodes if n.type in controller.SATELLITE_TYPES}
        missing = [n.name for n in status.nodes if n.name.casefold() not in linstor_nodes]
        if missing:
            self.add(f"Proxmox VE nodes without a LINSTOR satellite: {', '.join(missing)}",
                     hint="HA may start the controller VM on any node; make every node a LINSTOR satellite")

    def _linstor_names(self, host: _Host) -> None:
        o = self.o
        if host.resource is not None and not disk_is_ours(host.resource, o.vmid) and not self._touched("disk"):
            self.add(f"a LINSTOR resource {o.resource} already exists and was not made by this deploy",
                     hint="remove it or deploy with another --vmid")
        if o.register_node and host.nodes is not None:
            assert o.address is not None
            same = next((n for n in host.nodes if n.name.casefold() == o.name.casefold()), None)
            if same is not None and (same.type != "CONTROLLER" or same.address != str(o.address.ip)):
                self.add(f"LINSTOR already has a node named {o.name} ({same.type.lower()} at {same.address})",
                         hint="choose another --name, or pass --no-register-node")

    # --- the VM's identity -----------------------------------------------------------------------------
    def _vmid(self) -> None:
        o = self.o
        vm = self.pve.vm(o.vmid)
        if vm is None:
            return
        config = self.pve.vm_config(o.vmid, vm)
        if vm_is_ours(config) or self._touched("vm"):
            self.found.notes.append(f"VM {o.vmid} exists from an earlier run of this deploy and is reused")
            return
        kind = "CT" if vm.get("type") == "lxc" else "VM"
        self.add(f"VMID {o.vmid} is taken: {kind} {o.vmid} ({vm.get('name', '')}) on {vm.get('node')}",
                 hint="choose a free --vmid ('pvesh get /cluster/nextid' suggests one)")

    def _address(self, status: ClusterStatus) -> None:
        o = self.o
        assert o.address is not None
        ip = str(o.address.ip)
        for node in status.nodes:
            if node.ip == ip:
                self.add(f"{ip} is the address of node {node.name}", hint="give the VM an address of its own")
                return
        if self._touched("start"):
            return
        result = self.transport.run(self.pve.local, ["ping", "-c", "1", "-W", "1", ip], check=False)
        if result.returncode == 0:
            self.add(f"something already answers on {ip}", hint="give the VM an unused address")

    def _bridge(self, nodes: list[Node], offline: list[str]) -> None:
        missing = []
        for node in nodes:
            if node.name in offline:
                continue
            bridges = self.pve.bridges(node.name)
            if bridges is not None and self.o.bridge not in bridges:
                missing.append(node.name)
        if missing:
            self.add(f"bridge {self.o.bridge} does not exist on {', '.join(missing)}",
                     hint="HA may start the VM on any node: create the bridge everywhere or choose another --bridge")

    def _backup_storage(self) -> None:
        name = self.o.backup_storage
        if name is None:
            return
        entry = storagecfg.read(self.o.root).get(name)
        if entry is None:
            self.add(f"backup storage '{name}' does not exist", hint="name a storage with backup content")
        elif "backup" not in entry.options.get("content", "").split(","):
            self.add(f"storage '{name}' does not hold backups (content: {entry.options.get('content', 'none')})",
                     hint=f"allow it with 'pvesm set {shlex.quote(name)} --content ...,backup' or choose another")


@dataclass
class _Image:
    manifest: dict[str, Any]
    size: int
    disk_size: int
    raw_sha256: str | None


@dataclass
class _Host:
    endpoint: Endpoint
    toml: str
    http_port: int
    https_port: int | None
    db_base: str
    version: str | None = None
    nodes: list[NodeInfo] | None = None
    resource: Any = None


def report(findings: Findings) -> None:
    for note in findings.notes:
        log.info(note)
    for problem in findings.problems:
        log.info(f"problem: {problem}")
