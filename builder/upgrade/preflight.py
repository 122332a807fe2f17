"""The upgrade's preflight: read-only, and every problem at once.

It asks the new image (checksums, its controller's release), the controller in the VM (its release, each
satellite's connection), every node (the installed linstor-satellite, over SSH as the deploy does) and, with
--satellites, apt on every node (`apt-get install --simulate` of exactly the pinned packages). It refuses a
downgrade, an upgrade the new release cannot migrate, and a target the satellites cannot reach. The
answers become the deploy's Facts (so the deploy's steps and helpers work unchanged) and a Target.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace

from builder import log, slots
from builder.backup import store
from builder.deploy import controller
from builder.deploy.context import Facts, NodeFacts
from builder.deploy.controller import Directory, Endpoint, NodeInfo
from builder.deploy.journal import Journal
from builder.deploy.options import Options as DeployOptions
from builder.deploy.options import Strategy
from builder.deploy.preflight import DEFAULT_RESOURCE_GROUP, H2_URL, Findings, Preflight
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.versions import numbers, release
from builder.errors import ApplianceError
from builder.upgrade import apt
from builder.upgrade.context import Target
from builder.upgrade.options import Mode, Options

# A backup at most this old counts as taken for this upgrade; an older one is taken again in step 1.
FRESH_BACKUP = 15 * 60
# LINSTOR 1.34 dropped the migrations from before 1.21.0 (linstor.md 6.5): older databases need a release between.
OLDEST_IMPORTABLE = {(1, 34): (1, 21)}


def deploy_options(recorded: DeployOptions, options: Options) -> DeployOptions:
    """The deploy's recorded options with this upgrade's image, waiting and SSH options."""
    ssh = (*recorded.ssh_options, *options.ssh_options)
    return replace(recorded, image=options.image, manifest=options.manifest, sums=options.sums,
                   wait_timeout=options.timeout, ssh_options=ssh)


def oldest_importable(version: str) -> tuple[int, int] | None:
    have = numbers(version)[:2]
    found = [oldest for since, oldest in OLDEST_IMPORTABLE.items() if have >= since]
    return max(found) if found else None


class UpgradePreflight:
    def __init__(self, options: Options, deployed: DeployOptions, pve: Pve, transport: Transport,
                 directory: Directory, journal: Journal | None) -> None:  # fmt: skip
        self.o = options
        self.d = deployed
        self.pve = pve
        self.transport = transport
        self.directory = directory
        self.check = Preflight(deployed, pve, transport, directory, journal)
        self.found: Findings = self.check.found

    def add(self, message: str, hint: str) -> None:
        self.found.add(message, hint)

    def run(self, live: bool) -> tuple[Facts | None, Target | None]:
        """The Facts and (when `live`, asking the running controller and apt) the Target; None on any problem."""
        try:
            return self._run(live)
        except ApplianceError as error:
            self.add(error.message, error.hint or "see the message")
            return None, None

    def _run(self, live: bool) -> tuple[Facts | None, Target | None]:
        d = self.d
        if d.strategy is not Strategy.device_path:
            self.add(f"VM {d.vmid} was deployed with --strategy {d.strategy}; upgrade switches between device-path "
                     "disks only", hint="upgrade by hand as the README describes, or deploy anew with device-path")
        # A rollback or commit writes no image: it is only checked when there is one to write.
        image = self.check._check(self.check._image, default=None) if d.image else None  # noqa: SLF001
        status = self.pve.cluster_status()
        if not status.quorate:
            self.add("the Proxmox VE cluster is not quorate", hint="bring enough nodes online ('pvecm status')")
        local = Node(status.local.name, status.local.ip, local=True)
        self.pve.local = local
        nodes = [local] + [Node(n.name, n.ip) for n in status.nodes if not n.local and n.online]
        self.pve.remember(nodes)
        for member in status.nodes:
            if not member.online:
                self.add(f"node {member.name} is offline",
                         hint="bring it back: every node's satellite must follow the controller's release")
        entry, drbd_entries = self.check._check(self.check._storage, default=(None, []))  # noqa: SLF001
        plugin = self.check._check(self.check._plugin, default=None)  # noqa: SLF001
        node_facts: list[NodeFacts] = self.check._check(self.check._nodes, nodes, default=[])  # noqa: SLF001
        toml_path = d.host_path("/etc/linstor/linstor.toml")
        toml = toml_path.read_text() if toml_path.is_file() else ""
        if not toml:
            self.add("/etc/linstor/linstor.toml does not exist on this node",
                     hint="run the upgrade on the node the deploy ran on")
        _, http_port, https_port = controller.http_settings(toml)
        url = str(tomllib.loads(toml).get("db", {}).get("connection_url", "jdbc:h2:/var/lib/linstor/linstordb"))
        match = H2_URL.match(url)
        if not match:
            self.add(f"this node's linstor.toml names no H2 database ({url})", hint="the appliance carries H2 only")
        to_version = ""
        if image is not None:
            to_version = release(str(image.manifest.get("linstor_controller", {}).get("version", "")))
            if not to_version:
                self.add(f"{d.image} has no linstor_controller version in its manifest",
                         hint="use an image built by linstor-appliance build")
        if self.found.problems or (image is None and d.image) or entry is None or plugin is None or match is None:
            return None, None
        assert d.address is not None
        facts = Facts(
            local=local, nodes=tuple(node_facts), plugin=plugin, linstor_version=to_version, storage=entry,
            drbd_entries=tuple(drbd_entries),
            resource_group=entry.options.get("resourcegroup", DEFAULT_RESOURCE_GROUP),
            host_endpoint=controller.host_endpoint(d.root), appliance_endpoint=Endpoint(str(d.address.ip), http_port),
            firewall_ports=tuple(sorted({22, http_port, https_port or 3371})), host_toml=toml,
            db_base=match.group("path"), manifest=image.manifest if image else {},
            image_size=image.size if image else 0, disk_size=image.disk_size if image else 0,
            raw_sha256=image.raw_sha256 if image else None,
        )  # fmt: skip
        if not live:
            return facts, None
        target = self._target(facts, node_facts)
        if self.found.problems:
            return None, None
        return facts, target

    # --- what only a fresh upgrade asks ------------------------------------------------------------
    def _target(self, facts: Facts, node_facts: list[NodeFacts]) -> Target | None:
        d = self.d
        config = self.pve.vm_config(d.vmid)
        vm = self.pve.vm(d.vmid)
        if config is None or vm is None:
            self.add(f"VM {d.vmid} does not exist", hint="give the VMID of the deployed controller VM")
            return None
        old_resource = slots.booted(config)
        slot = slots.slot_of(d.vmid, old_resource or "")
        if old_resource is None or slot is None:
            self.add(f"VM {d.vmid} boots from {config.get(slots.BOOT_DISK)}, which is no disk of the appliance",
                     hint=f"set its {slots.BOOT_DISK} back to the appliance's disk, e.g. "
                          f"{slots.disk_value(slots.resource(d.vmid, 'a'))}")  # fmt: skip
            return None
        if vm.get("status") != "running":
            self.add(f"VM {d.vmid} is not running, so its controller cannot be asked",
                     hint=f"start it: ha-manager set vm:{d.vmid} --state started")
            return None
        endpoint = facts.appliance_endpoint
        try:
            with controller.connect(self.directory, endpoint, timeout=15) as ctrl:
                from_version = ctrl.version()
                linstor_nodes = ctrl.nodes()
        except ApplianceError as error:
            self.add(error.message, error.hint or "")
            return None
        to_version = facts.linstor_version
        self._versions(from_version, to_version)
        new_resource = slots.resource(d.vmid, slots.other(slot))
        if self.o.mode is Mode.prepare:
            refused = [n.name for n in linstor_nodes if n.type in controller.SATELLITE_TYPES and n.status != "ONLINE"]
            if refused:
                self.add(f"the satellites on {', '.join(refused)} are not online with the controller, so it cannot "
                         f"create {new_resource}", hint="prepare while they run the controller's release")
            return Target(from_version=from_version, to_version=to_version, old_resource=old_resource,
                          new_resource=new_resource, old_disk=str(config.get(slots.BOOT_DISK)))  # fmt: skip
        self._new_disk(facts, new_resource, linstor_nodes)
        pins = self._satellites(facts, node_facts, linstor_nodes, to_version)
        backup = self._backup(facts)
        return Target(from_version=from_version, to_version=to_version, old_resource=old_resource,
                      new_resource=new_resource,
                      old_disk=str(config.get(slots.BOOT_DISK)), pins=pins, backup=backup)  # fmt: skip

    def _new_disk(self, facts: Facts, new_resource: str, linstor_nodes: list[NodeInfo]) -> None:
        """The second disk must exist, or the controller must be able to create it (satellites of its release)."""
        mismatched = [n.name for n in linstor_nodes if n.status == "VERSION_MISMATCH"]
        if not mismatched:
            return
        with controller.connect(self.directory, facts.appliance_endpoint, timeout=15) as ctrl:
            exists = ctrl.resource_definition(new_resource) is not None
        if not exists:
            self.add(f"the satellites on {', '.join(mismatched)} already run another release, so the controller "
                     f"cannot create the second disk {new_resource}",
                     hint="install the controller's release of linstor-satellite on them again (apt-get install "
                          "--allow-downgrades), run 'linstor-appliance upgrade --prepare' with this image, then "
                          "upgrade them and run the upgrade (or let it upgrade them with --satellites)")  # fmt: skip

    def _versions(self, from_version: str, to_version: str) -> None:
        have, want = numbers(from_version), numbers(to_version)
        if want < have:
            self.add(f"the image has LINSTOR {to_version}, older than the running controller's {from_version}: "
                     "LINSTOR has no downgrade path for its database",
                     hint="build the image with --linstor-version of a newer release")  # fmt: skip
        elif want == have:
            self.add(f"the controller already runs LINSTOR {from_version}", hint="nothing to upgrade")
        oldest = oldest_importable(to_version)
        if oldest is not None and have[:2] < oldest:
            self.add(f"LINSTOR {to_version} cannot migrate a database of {from_version} (it imports {oldest[0]}."
                     f"{oldest[1]}.0 and newer)", hint="upgrade through a release in between first")  # fmt: skip

    def _satellites(self, facts: Facts, node_facts: list[NodeFacts], linstor_nodes: list[NodeInfo],
                    to_version: str) -> dict[str, dict[str, str]]:  # fmt: skip
        states = {n.name.casefold(): n.status for n in linstor_nodes}
        behind = []
        for item in node_facts:
            name = item.node.name
            state = states.get(name.casefold())
            if state is None:
                self.add(f"the controller does not know node {name}", hint="register it (linstor-appliance sync)")
            elif state not in ("ONLINE", "VERSION_MISMATCH"):
                self.add(f"the satellite on {name} is {state.lower()}",
                         hint=f"start it: systemctl start linstor-satellite on {name}")
            log.info(f"{name}: linstor-satellite {item.satellite_version or 'not installed'} installed, "
                     f"{(state or 'unknown').lower()} on the controller")
            if item.satellite_version is not None and item.satellite_version != to_version:
                behind.append(item)
        if not behind:
            return {}
        if not self.o.satellites:
            listing = ", ".join(f"{n.node.name} ({n.satellite_version})" for n in behind)
            self.add(f"the satellites on {listing} do not run LINSTOR {to_version}",
                     hint="upgrade them with apt first, or let the upgrade do it with --satellites")
            return {}
        pins: dict[str, dict[str, str]] = {}
        for item in behind:
            try:
                pins[item.node.name] = apt.pins(self.pve, item.node, to_version,
                                                str(facts.manifest.get("linstor_controller", {})
                                                    .get("package_version", "")))  # fmt: skip
                apt.simulate(self.transport, item.node, pins[item.node.name])
            except ApplianceError as error:
                self.add(error.message, error.hint or "")
        return pins

    def _backup(self, facts: Facts) -> str | None:
        keeper = store.Store(self.transport)
        newest: tuple[float, str] | None = None
        for place in store.node_places([n.node for n in facts.nodes], self.d.vmid):
            try:
                names = keeper.names(place)
            except ApplianceError:
                continue
            if names:
                age = store.age_seconds(names[-1])
                if newest is None or age < newest[0]:
                    newest = (age, f"{place}/{names[-1]}")
        if newest is not None and newest[0] <= FRESH_BACKUP:
            log.info(f"newest off-VM backup: {newest[1]} ({newest[0] / 60:.0f} min old)")
            return newest[1]
        log.info("no off-VM backup of the last 15 minutes: step 1 takes one")
        return None
