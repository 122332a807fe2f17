"""The restore's own steps; the rest of its step lists are the deploy's (builder/restore/runner.py)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from builder import log
from builder.deploy import controller, inject, wait
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step
from builder.deploy.steps.storage import Storage
from builder.deploy.versions import release
from builder.errors import ApplianceError, die
from builder.restore import database, source

UNIT = "linstor-controller.service"


def chosen(ctx: Context) -> source.Chosen:
    return source.verified(Path(str(ctx.j.fact("backup"))))


def vm_running(ctx: Context) -> bool:
    vm = ctx.pve.vm(ctx.options.vmid)
    return bool(vm and vm.get("status") == "running")


def stop_vm(ctx: Context, leave_ha: bool) -> dict[str, Any]:
    """The VM stopped (through HA when HA manages it), so its controller never runs beside another."""
    o = ctx.options
    sid = f"vm:{o.vmid}"
    managed = sid in ctx.pve.ha_resources()
    if managed:
        ctx.transport.run(ctx.pve.local, ["ha-manager", "set", sid, "--state", "stopped"])
    elif vm_running(ctx):
        ctx.pve.qm(o.vmid, "stop")
    wait.until(lambda: not vm_running(ctx), timeout=max(o.wait_timeout, 60), what=f"VM {o.vmid} stopping",
               hint=f"stop it by hand: qm stop {o.vmid} on its node", interval=0.5)  # fmt: skip
    if managed and leave_ha:
        ctx.transport.run(ctx.pve.local, ["ha-manager", "remove", sid])
    return {"was_in_ha": managed, "left_ha": managed and leave_ha}


def save_vm_database(ctx: Context) -> str | None:
    """The database on the VM disk, if the disk still has one, kept (with its SHA-256) before it is replaced."""
    o, f = ctx.options, ctx.f
    device = o.host_path(o.device)
    path = f"{f.db_base}.mv.db"
    if not device.exists():
        return None
    try:
        data = inject.read(device, [path]).get(path)
    except ApplianceError as error:
        log.info(f"the VM disk has no readable database ({error.message}): nothing of it to back up")
        return None
    if not data:
        return None
    folder = o.state_dir / f"replaced-{o.vmid}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    name = Path(path).name
    (folder / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  {name}\n")
    if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
        die(f"the copy of the VM's database in {folder} does not read back", hint="check the disk space on this node")
    log.info(f"backed up the database on the VM disk to {folder}")
    return str(folder)


def start_host_controller(ctx: Context, enable: bool) -> str:
    local = ctx.pve.local
    if enable:
        ctx.pve.systemctl(local, "enable", UNIT)
    ctx.pve.systemctl(local, "start", UNIT)
    endpoint = ctx.f.host_endpoint
    version = wait.until(lambda: controller.probe(ctx.directory, endpoint), timeout=ctx.options.wait_timeout,
                         what=f"the LINSTOR controller on {local.name} answering at {endpoint}",
                         hint="check 'systemctl status linstor-controller' and its log", interval=0.5)  # fmt: skip
    if release(version) != ctx.f.linstor_version:
        # Fail closed: a controller of another release would only see its satellites as VERSION_MISMATCH.
        ctx.pve.systemctl(local, "disable" if enable else "stop", *(["--now"] if enable else []), UNIT, check=False)
        die(f"the controller on {local.name} runs LINSTOR {version}, the satellites {ctx.f.linstor_version}",
            hint="install the satellites' linstor-controller version on this node; it was stopped again")
    return version


class Stage(Step):
    """Step 1 of a restore: the VM stopped, what will be replaced backed up, a controller here on the backup."""

    key = "stage"
    title = "Stop the VM, back up what is replaced, run a controller on this node from the backup"

    def describe(self, ctx: Context) -> list[Action]:
        o, here = ctx.options, ctx.f.local.name
        return [
            Action(here, f"check {ctx.j.fact('backup')} against its .sha256"),
            Action(here, f"ha-manager set vm:{o.vmid} --state stopped (or qm stop); wait until it is off"),
            Action(here, f"copy the database on {o.device} (if readable) and /var/lib/linstor, /etc/linstor to "
                         f"{o.state_dir.relative_to(o.root)} with SHA256SUMS"),
            Action(here, f"write the backup's database to {ctx.f.db_base}.mv.db; systemctl start {UNIT} "
                         "(not enabled)"),
        ]  # fmt: skip

    def still_done(self, ctx: Context) -> bool:
        # The temporary controller is what the next steps talk to; after a reboot it is gone (it is not
        # enabled), so the step runs again, reusing the backups it already made.
        return ctx.j.state("handover") == "done" or ctx.pve.unit_active(ctx.pve.local, UNIT)

    def apply(self, ctx: Context) -> dict[str, Any]:
        o = ctx.options
        backup = chosen(ctx)
        record: dict[str, Any] = dict(ctx.j.record(self.key))
        record.update(stop_vm(ctx, leave_ha=False))
        if "vm_database" not in record:
            record["vm_database"] = save_vm_database(ctx)
            ctx.j.note(self.key, **record)
        if "host_backup" not in record:
            # The controller here must not run while its files are copied or replaced.
            ctx.pve.systemctl(ctx.pve.local, "stop", UNIT)
            saved = database.save_current(o.root, o.state_dir, o.vmid)
            record["host_backup"] = str(saved) if saved else None
            ctx.j.note(self.key, **record)
        else:
            ctx.pve.systemctl(ctx.pve.local, "stop", UNIT)
        database.install(ctx.transport, ctx.pve.local, o.root, backup, ctx.f.db_base)
        record["controller_version"] = start_host_controller(ctx, enable=False)
        record["backup"] = str(backup.path)
        return record

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = [f"restored from {record.get('backup')}"]
        if record.get("vm_database"):
            lines.append(f"the VM's previous database: {record['vm_database']}")
        if record.get("host_backup"):
            lines.append(f"this node's previous controller files: {record['host_backup']}")
        return lines


class Park(Step):
    """--to-host, step 1: the VM stopped and out of HA, so nothing starts it beside this node's controller."""

    key = "park"
    title = "Stop the controller VM and take it out of HA"

    def describe(self, ctx: Context) -> list[Action]:
        o = ctx.options
        return [Action(ctx.f.local.name, f"ha-manager set vm:{o.vmid} --state stopped; wait; "
                                         f"ha-manager remove vm:{o.vmid}")]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        if ctx.pve.vm(ctx.options.vmid) is None:
            return {"vm": "absent"}
        return stop_vm(ctx, leave_ha=True)

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"VM {ctx.options.vmid} stopped" + (" and removed from HA" if record.get("left_ha") else "")]


class HostController(Step):
    """--to-host, step 2: this node's files backed up, the backup's database in place, the controller enabled."""

    key = "host_controller"
    title = "Run the controller on this node from the backup"

    def describe(self, ctx: Context) -> list[Action]:
        here = ctx.f.local.name
        return [
            Action(here, f"check {ctx.j.fact('backup')} against its .sha256"),
            Action(here, "copy /var/lib/linstor and /etc/linstor with SHA256SUMS (if there is anything)"),
            Action(here, f"write the backup's database to {ctx.f.db_base}.mv.db; systemctl enable --now {UNIT}"),
            Action(here, "wait until every satellite is ONLINE with it"),
        ]

    def still_done(self, ctx: Context) -> bool:
        return ctx.pve.unit_active(ctx.pve.local, UNIT)

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        backup = chosen(ctx)
        record: dict[str, Any] = dict(ctx.j.record(self.key))
        ctx.pve.systemctl(ctx.pve.local, "stop", UNIT)
        if "host_backup" not in record:
            saved = database.save_current(o.root, o.state_dir, o.vmid)
            record["host_backup"] = str(saved) if saved else None
            ctx.j.note(self.key, **record)
        database.install(ctx.transport, ctx.pve.local, o.root, backup, f.db_base)
        version = start_host_controller(ctx, enable=True)
        with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
            names = {n.name.casefold() for n in ctrl.nodes() if n.type in controller.SATELLITE_TYPES}
            missing = [n.node.name for n in f.nodes if n.node.name.casefold() not in names]
            if missing:
                die(f"the backup's database does not know the nodes {', '.join(missing)}",
                    hint="choose a newer backup with --backup FILE")

            def online() -> bool:
                states = {n.name.casefold(): n.status for n in ctrl.nodes()}
                return all(states.get(name) == "ONLINE" for name in names)

            wait.until(online, timeout=o.wait_timeout, what="every satellite connecting to this node's controller",
                       hint="check 'linstor node list' and the satellites' logs", interval=0.5)  # fmt: skip
            nodes = sorted(n.name for n in ctrl.nodes())
        record.update(version=version, nodes=nodes, backup=str(backup.path))
        return record

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = [f"{ctx.f.local.name}: linstor-controller enabled and running LINSTOR {record.get('version')} on "
                 f"{record.get('backup')}; nodes {', '.join(record.get('nodes', []))}, satellites online"]  # fmt: skip
        if record.get("host_backup"):
            lines.append(f"this node's previous controller files: {record['host_backup']}")
        return lines


class HostStorage(Storage):
    """--to-host, step 3: the drbd storage entries point at this node again."""

    key = "host_storage"
    title = "Point the Proxmox storage plugin at this node's controller"

    def _ip(self, ctx: Context) -> str:
        return ctx.f.local.address
