"""The checks of `linstor-appliance status`: each reads one thing and returns its lines; none changes anything.

Every remote read has a time limit, and a check that fails to read (a node or the VM not answering)
becomes a line of its own, so the whole report finishes within a bound.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder import allowlist
from builder import slots as disks
from builder.coldstart import remote as coldstart_remote
from builder.deploy import controller, storagecfg
from builder.deploy.controller import Directory, Endpoint
from builder.deploy.journal import Journal
from builder.deploy.pve import ClusterNode, Pve
from builder.deploy.remote import Node, Transport
from builder.deployment import Deployment
from builder.errors import ApplianceError
from builder.status import backups
from builder.status.report import Level, Line

COLDSTART_MARKER = "/var/lib/linstor-coldstart/installed.json"


@dataclass
class Status:
    deployment: Deployment
    pve: Pve
    transport: Transport
    directory: Directory
    redundancy: int
    timeout: float
    now: float = field(default_factory=time.time)
    members: tuple[ClusterNode, ...] = ()
    controller_version: str | None = None

    @property
    def vmid(self) -> int:
        return self.deployment.options.vmid

    # The disk resource the VM boots from (an upgrade moves it to the other slot); read by the slots check.
    booted: str | None = None
    # The disk an upgrade pending commit keeps (the slots check): commit installs the cold-start helper again.
    kept: str | None = None

    @property
    def resource(self) -> str:
        return self.booted or self.deployment.options.resource

    def node(self, member: ClusterNode) -> Node:
        return Node(member.name, member.ip, local=member.local)

    def endpoint(self) -> Endpoint | None:
        address = self.deployment.options.address
        if address is None:
            return None
        return Endpoint(str(address.ip), http_port(self.deployment.options.root))


def http_port(root: Path) -> int:
    path = root / "etc/linstor/linstor.toml"
    return controller.http_settings(path.read_text() if path.exists() else "")[1]


def journal(s: Status) -> list[Line]:
    j, vmid = s.deployment.journal, s.vmid
    if j.status == "completed":
        return [Line("deploy", Level.ok, f"VM {vmid} deployed {j.data.get('completed_at', '')}".strip())]
    if j.status == "rolled-back":
        return [Line("deploy", Level.critical, f"the deploy of VM {vmid} was rolled back; no appliance runs",
                     f"deploy again: linstor-appliance deploy --vmid {vmid} ...")]  # fmt: skip
    step = j.data.get("failed_step")
    where = f" at step {step}" if step else ""
    return [Line("deploy", Level.critical, f"the deploy of VM {vmid} did not finish ({j.status}{where})",
                 f"finish it: linstor-appliance deploy --vmid {vmid} --resume, or undo it: "
                 f"linstor-appliance deploy --vmid {vmid} --rollback")]  # fmt: skip


def vm(s: Status) -> list[Line]:
    entry = s.pve.vm(s.vmid)
    if entry is None:
        return [Line("vm", Level.critical, f"VM {s.vmid} does not exist",
                     f"undo the deploy: linstor-appliance deploy --vmid {s.vmid} --rollback")]
    node, state = entry.get("node"), entry.get("status")
    lines = []
    if state == "running":
        lines.append(Line("vm", Level.ok, f"VM {s.vmid} runs on {node}"))
    else:
        lines.append(Line("vm", Level.critical, f"VM {s.vmid} is {state} on {node}",
                          f"start it: ha-manager set vm:{s.vmid} --state started"))
    service = s.pve.ha_services().get(f"vm:{s.vmid}")
    ha_state = str(service.get("state")) if service else None
    if ha_state == "started":
        lines.append(Line("ha", Level.ok, f"vm:{s.vmid} is managed by HA (started)"))
    elif ha_state is None:
        lines.append(Line("ha", Level.critical, f"vm:{s.vmid} is not managed by HA",
                          f"ha-manager add vm:{s.vmid} --state started"))
    else:
        lines.append(Line("ha", Level.critical, f"vm:{s.vmid} is in HA state {ha_state}",
                          f"see 'ha-manager status'; then ha-manager set vm:{s.vmid} --state started"))
    config = s.pve.vm_config(s.vmid, entry) or {}
    if str(config.get("protection", "0")) == "1":
        lines.append(Line("protection", Level.ok, f"VM {s.vmid} is protected from removal"))
    else:
        lines.append(Line("protection", Level.warning, f"VM {s.vmid} is not protected from removal",
                          f"qm set {s.vmid} --protection 1"))
    return lines


def slots(s: Status) -> list[Line]:
    """Which of the VM's two disks it boots, the LINSTOR release on each, and whether an upgrade awaits commit."""
    config = s.pve.vm_config(s.vmid)
    if config is None:
        return []  # vm() reports the missing VM
    booted = disks.booted(config)
    vmid = s.vmid
    if booted is None or disks.slot_of(vmid, booted) is None:
        return [Line("slot", Level.critical, f"VM {vmid} boots from {config.get(disks.BOOT_DISK)}, no disk of the "
                     "appliance", f"qm set {vmid} --{disks.BOOT_DISK} "
                     f"{disks.disk_value(disks.resource(vmid, 'a'))}")]  # fmt: skip
    s.booted = booted
    slot = disks.slot_of(vmid, booted)
    upgrade = Journal.load(disks.journal_path(s.deployment.options.state_dir, vmid))
    target = dict(upgrade.fact("target") or {}) if upgrade is not None else {}
    versions = {target.get("old_resource"): target.get("from_version"),
                target.get("new_resource"): target.get("to_version")}  # fmt: skip
    if upgrade is None:
        versions[booted] = s.deployment.journal.fact("linstor_version")
    running = f"VM {vmid} boots slot {slot} ({booted}, LINSTOR {versions.get(booted) or 'unknown'})"
    other = target.get("new_resource") if booted == target.get("old_resource") else target.get("old_resource")
    other_slot = disks.slot_of(vmid, str(other)) if other else None
    status = upgrade.status if upgrade is not None else None
    if status in ("running", "failed", "rollback-failed"):
        step = upgrade.data.get("failed_step") if upgrade is not None else None
        return [Line("slot", Level.critical, f"{running}; an upgrade did not finish ({status}"
                     f"{f' at step {step}' if step else ''})",
                     f"linstor-appliance upgrade --vmid {vmid} --resume, or --rollback")]  # fmt: skip
    if status == "completed":
        s.kept = str(other) if other else None
        return [Line("slot", Level.warning, f"{running}; slot {other_slot} ({other}, LINSTOR "
                     f"{versions.get(other)}) is kept: the upgrade is pending commit",
                     f"keep it: linstor-appliance upgrade --vmid {vmid} --commit (or undo it: --rollback)")]
    if status == "rolled-back":
        return [Line("slot", Level.ok, f"{running}; slot {other_slot} ({other}) holds a rolled-back upgrade and is "
                     "written over by the next")]  # fmt: skip
    return [Line("slot", Level.ok, f"{running}; no other slot is kept")]


def linstor(s: Status) -> list[Line]:
    endpoint = s.endpoint()
    if endpoint is None:
        return [Line("controller", Level.critical, "the deploy recorded no address of the VM",
                     "check the deploy journal")]
    try:
        with controller.connect(s.directory, endpoint, timeout=s.timeout) as c:
            version = c.version()
            s.controller_version = version
            nodes = c.nodes()
            placements = c.placements(s.resource)
    except ApplianceError as error:
        return [Line("controller", Level.critical, f"no answer from the REST API at {endpoint}: {error.message}",
                     "check the VM's console and 'systemctl status linstor-controller' in it")]  # fmt: skip
    lines = [Line("controller", Level.ok, f"REST API at {endpoint} answers, LINSTOR {version}, "
                                          f"database {database_backend(s.deployment.options.root)}")]  # fmt: skip
    for info in nodes:
        if info.type not in controller.SATELLITE_TYPES:
            continue
        lines.append(satellite(s, info, version))
    diskful = [p.node for p in placements if not p.diskless]
    if len(diskful) >= s.redundancy:
        lines.append(Line("replicas", Level.ok, f"{s.resource}: {len(diskful)} diskful ({', '.join(diskful)}), "
                                                f"--redundancy {s.redundancy}"))  # fmt: skip
    else:
        lines.append(Line("replicas", Level.warning if diskful else Level.critical,
                          f"{s.resource}: {len(diskful)} diskful replicas, fewer than --redundancy {s.redundancy}",
                          "add nodes, then linstor-appliance sync"))  # fmt: skip
    placed = {p.node for p in placements}
    for member in s.members:
        if member.name not in placed:
            lines.append(Line("replicas", Level.critical, f"{member.name} has no replica of {s.resource}, so HA "
                              "cannot run the VM there", "linstor-appliance sync"))  # fmt: skip
    return lines


def satellite(s: Status, info: controller.NodeInfo, version: str) -> Line:
    name = f"satellite {info.name}"
    if info.status != "ONLINE":
        hint = ("upgrade it to the controller's version" if info.status == "VERSION_MISMATCH"
                else f"check 'systemctl status linstor-satellite' on {info.name}")  # fmt: skip
        return Line(name, Level.critical, f"{info.status.lower()}", hint)
    member = next((m for m in s.members if m.name == info.name), None)
    installed = None
    if member is not None:
        try:
            installed = s.pve.package_version(s.node(member), "linstor-satellite")
        except ApplianceError:
            installed = None
    if installed is not None and not _same_release(installed, version):
        return Line(name, Level.critical, f"online, version {installed}, controller {version}",
                    "LINSTOR has no mixed-version operation: upgrade satellites and controller together")
    return Line(name, Level.ok, f"online, version {installed or 'unknown'}")


def _same_release(package: str, version: str) -> bool:
    # A Debian version such as 1.33.1-1 names the release 1.33.1.
    return package.split("-", 1)[0].split("~", 1)[0] == version


def database_backend(root: Path) -> str:
    path = root / "etc/linstor/linstor.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return "unknown"
    db = data.get("db", {}) if isinstance(data.get("db"), dict) else {}
    url = str(db.get("connection_url", "jdbc:h2:"))
    for prefix, name in (("jdbc:h2", "H2"), ("jdbc:postgresql", "PostgreSQL"), ("jdbc:mariadb", "MariaDB"),
                         ("jdbc:mysql", "MySQL"), ("etcd", "etcd")):  # fmt: skip
        if url.startswith(prefix):
            return name
    return url.split(":", 2)[1] if ":" in url else url


def drbd(s: Status) -> list[Line]:
    lines = []
    for member in s.members:
        name = f"drbd {member.name}"
        if not member.online:
            lines.append(Line(name, Level.warning, "node is offline", f"bring {member.name} back"))
            continue
        try:
            result = s.transport.run(s.node(member), ["drbdsetup", "status", s.resource, "--json"], check=False,
                                     timeout=s.timeout)  # fmt: skip
        except ApplianceError as error:
            lines.append(Line(name, Level.critical, f"no answer: {error.message}", f"check {member.name}"))
            continue
        if result.returncode != 0:
            lines.append(Line(name, Level.critical, f"{s.resource} is not up",
                              f"linstor-appliance sync; or drbdadm up {s.resource} on {member.name}"))
            continue
        try:
            item = json.loads(result.stdout)[0]
        except (json.JSONDecodeError, IndexError, KeyError):
            lines.append(Line(name, Level.warning, "drbdsetup printed no status",
                              f"drbdsetup status on {member.name}"))
            continue
        device = (item.get("devices") or [{}])[0]
        disk = str(device.get("disk-state", "unknown"))
        quorum = device.get("quorum", item.get("quorum"))
        text = f"{item.get('role', '?').lower()}, disk {disk}" + ("" if quorum is None else
                                                                     f", quorum {'yes' if quorum else 'no'}")
        if quorum is False:
            lines.append(Line(name, Level.critical, text, "check the DRBD connections: drbdsetup status"))
        elif disk not in ("UpToDate", "Diskless"):
            lines.append(Line(name, Level.warning, text, "wait for the resync, or check drbdsetup status"))
        else:
            lines.append(Line(name, Level.ok, text))
    return lines


def storage(s: Status) -> list[Line]:
    address = s.deployment.options.address
    want = str(address.ip) if address is not None else None
    lines = []
    for entry in storagecfg.drbd_entries(storagecfg.read(s.deployment.options.root)):
        name = f"storage {entry.id}"
        if want is not None and want in entry.controllers:
            lines.append(Line(name, Level.ok, f"controller {entry.options.get('controller')}"))
        else:
            lines.append(Line(name, Level.critical, f"controller {entry.options.get('controller', '(none)')} is not "
                              f"the appliance {want}", f"pvesm set {entry.id} --controller {want}"))  # fmt: skip
    return lines


def firewall(s: Status) -> list[Line]:
    read = allowlist.read(s.pve, s.vmid)
    if not read.ok:
        return [Line("firewall", Level.warning, f"cannot read the allowlist in VM {s.vmid}: {read.why()}",
                     "check that qemu-guest-agent runs in the VM")]
    expected = allowlist.expected(s.deployment.options, [m.ip for m in s.members])
    if read.out == expected:
        return [Line("firewall", Level.ok, "allowlist matches the cluster's nodes")]
    return [Line("firewall", Level.critical, "allowlist differs from the cluster's current nodes",
                 "linstor-appliance sync")]


def coldstart(s: Status) -> list[Line]:
    have: list[str] = []
    missing: list[str] = []
    # resource -> nodes whose helper waits at boot for that disk while the VM boots another (after an upgrade).
    elsewhere: dict[str, list[str]] = {}
    for member in s.members:
        if not member.online:
            continue
        try:
            marker = s.transport.read_file(s.node(member), COLDSTART_MARKER)
        except ApplianceError:
            marker = None
        (have if marker is not None else missing).append(member.name)
        resource = coldstart_remote.recorded_resource(marker) if marker is not None else None
        if resource is not None and s.booted is not None and resource != s.booted:
            elsewhere.setdefault(resource, []).append(member.name)
    lines = [Line("coldstart", Level.warning, f"installed for {resource} on {', '.join(names)}, but VM {s.vmid} "
                  f"boots from {s.booted}", f"linstor-appliance upgrade --vmid {s.vmid} --commit installs it again"
                  if resource == s.kept else "run 'linstor-appliance coldstart install' there")
             for resource, names in elsewhere.items()]  # fmt: skip
    if missing:
        lines.append(Line("coldstart", Level.warning, f"not installed on {', '.join(missing)}",
                          "run 'linstor-appliance coldstart install' there, or linstor-appliance sync"))
    return lines or [Line("coldstart", Level.ok, f"installed on {', '.join(have)}")]


def backup(s: Status) -> list[Line]:
    folder = backups.folder(s.vmid)
    best: tuple[float, str] | None = None
    for member in s.members:
        if not member.online:
            continue
        try:
            result = s.transport.run(s.node(member), ["ls", "-1", folder], check=False, timeout=s.timeout)
        except ApplianceError:
            continue
        when = backups.newest(result.stdout.split()) if result.returncode == 0 else None
        if when is not None and (best is None or when > best[0]):
            best = (when, member.name)
    hint = f"linstor-appliance backup --vmid {s.vmid}"
    if best is None:
        return [Line("backup", Level.critical, f"no off-VM backup in {folder} on any node", hint)]
    age = max(s.now - best[0], 0)
    text = f"newest off-VM backup {age / 3600:.1f} h old, on {best[1]}:{folder}"
    if age > backups.CRITICAL_AFTER:
        return [Line("backup", Level.critical, text, hint)]
    if age > backups.WARN_AFTER:
        return [Line("backup", Level.warning, text, hint)]
    return [Line("backup", Level.ok, text)]


CHECKS: tuple[Callable[[Status], list[Line]], ...] = (journal, vm, slots, linstor, drbd, storage, firewall, coldstart,
                                                       backup)  # fmt: skip


def run_all(s: Status) -> list[Line]:
    try:
        s.members = s.pve.cluster_status().nodes
    except ApplianceError as error:
        return [Line("cluster", Level.critical, error.message, error.hint)]
    lines = []
    for check in CHECKS:
        try:
            lines += check(s)
        except ApplianceError as error:
            lines.append(Line(check.__name__, Level.critical, error.message, error.hint))
    return lines
