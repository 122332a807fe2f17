"""The upgrade's steps, in the deploy's Step form (describe, apply, still_done, summary), run by upgrade.runner.

Until step 4 stops the VM nothing the running appliance uses has changed (only a second disk was made and
written). From step 4 on, a failure switches the VM back to the old disk (builder.upgrade.rollback).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from builder import __version__, log, slots
from builder.backup import store
from builder.backup import take as backups
from builder.backup.options import DEFAULT_KEEP
from builder.backup.options import Mode as BackupMode
from builder.backup.options import Options as BackupOptions
from builder.deploy import backup, controller, inject, wait
from builder.deploy.context import Context, NodeFacts
from builder.deploy.steps.base import Action, Step
from builder.deploy.steps.image import primaries, write_checked
from builder.deploy.steps.inject import DEPLOY_MANIFEST, H2_SUFFIXES, IMAGE_MANIFEST
from builder.deploy.steps.start import running, start_vm, stop_vm
from builder.deploy.steps.units import ENABLE, SATELLITE
from builder.deploy.versions import needs_keep_res
from builder.errors import die
from builder.resources import render
from builder.upgrade import apt
from builder.upgrade.context import of

# The appliance's settings the deploy (and sync) put into the VM disk; the new disk gets them as they are now.
CARRIED = ("/etc/linstor/linstor.toml", "/etc/netplan/config.yaml", "/etc/nftables.conf", "/etc/hostname",
           "/etc/hosts", DEPLOY_MANIFEST)  # fmt: skip
DATA_SUFFIXES = (".mv.db", ".h2.db")


def device_path(ctx: Context, name: str) -> Path:
    return ctx.options.host_path(slots.device(name))


def refuse_if_held(ctx: Context, name: str) -> None:
    holders = primaries(ctx, name)
    if holders:
        die(f"{name} is Primary on {', '.join(holders)}: something there has the disk open",
            hint=f"find it with 'drbdsetup status {name} --verbose' on that node and close it")


def snapshot(ctx: Context) -> dict[str, list[Any]]:
    """What the controller in the VM knows: nodes, resource definitions and resources."""
    with controller.connect(ctx.directory, of(ctx).endpoint) as ctrl:
        return {"nodes": [n.name for n in ctrl.nodes()], "definitions": ctrl.resource_definitions(),
                "resources": [list(pair) for pair in ctrl.resources()]}  # fmt: skip


def lost(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    """What the new controller does not have of what the old one had, as readable items."""
    missing = []
    for key in ("nodes", "definitions", "resources"):
        have = {json.dumps(item) for item in after.get(key, [])}
        for item in before.get(key, []):
            if json.dumps(item) not in have:
                missing.append(f"{key[:-1]} {'/'.join(item) if isinstance(item, list) else item}")
    return missing


class Backup(Step):
    key = "backup"
    title = "An off-VM backup of the database younger than the upgrade"

    def describe(self, ctx: Context) -> list[Action]:
        t = of(ctx).t
        if t.backup:
            return [Action(ctx.f.local.name, f"use {t.backup} (taken within the last 15 minutes)")]
        return [Action(ctx.f.local.name, f"linstor-appliance backup --vmid {ctx.options.vmid} (export in the VM, "
                                         "stored with its .sha256 on every node)")]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, t = ctx.options, of(ctx).t
        if t.backup:
            return {"backup": t.backup, "taken": False}
        backups.run(BackupOptions(vmid=o.vmid, storage=None, keep=DEFAULT_KEEP, max_age=24, mode=BackupMode.now,
                                  ssh_options=o.ssh_options, root=o.root), ctx.directory)  # fmt: skip
        place = store.node_places([ctx.f.local], o.vmid)[0]
        names = store.Store(ctx.transport).names(place)
        if not names:
            die("the backup taken for the upgrade is not on this node", hint="see the backup's messages above")
        return {"backup": f"{place}/{names[-1]}", "taken": True}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"off-VM backup {'taken' if record.get('taken') else 'found'}: {record.get('backup')}"]


class Disk(Step):
    key = "disk"
    title = "A second disk resource for the VM"

    def describe(self, ctx: Context) -> list[Action]:
        o, f, t = ctx.options, ctx.f, of(ctx).t
        return [
            Action(f.local.name, f"LINSTOR API at {f.appliance_endpoint}: spawn {t.new_resource} "
                                 f"({f.disk_size // 2**20} MiB) from resource group {f.resource_group}, place count "
                                 f"{o.redundancy}, diskless on the remaining nodes; {t.old_resource} is not touched"),
            Action(f.local.name, f"wait for {slots.device(t.new_resource)}"),
        ]  # fmt: skip

    def still_done(self, ctx: Context) -> bool:
        return device_path(ctx, of(ctx).t.new_resource).exists()

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f, t = ctx.options, ctx.f, of(ctx).t
        if slots.booted(ctx.pve.vm_config(o.vmid)) == t.new_resource:
            die(f"VM {o.vmid} boots from {t.new_resource}, the disk the new image would go to",
                hint="see 'qm config' of the VM; run the upgrade with --rollback or --resume")
        props = {controller.PROP_VMID: str(o.vmid), **controller.QUORUM_PROPS, **controller.SINGLE_PRIMARY_PROPS}
        with controller.connect(ctx.directory, f.appliance_endpoint) as ctrl:
            definition = ctrl.resource_definition(t.new_resource)
            if definition is not None and definition.properties.get(controller.PROP_VMID) != str(o.vmid):
                die(f"a LINSTOR resource {t.new_resource} exists and was not made for VM {o.vmid}",
                    hint="remove it, or rename it out of the way")
            created = definition is None
            if created:
                log.info(f"creating {t.new_resource} from resource group {f.resource_group}")
                ctrl.spawn(f.resource_group, t.new_resource, f.disk_size // 1024, o.redundancy, props)
            else:
                log.info(f"{t.new_resource} exists (prepared, or made by an earlier attempt): the image is written "
                         "over it")  # fmt: skip
            placed = ctrl.placements(t.new_resource)
            if sum(1 for p in placed if not p.diskless) < o.redundancy:
                ctrl.autoplace(t.new_resource, o.redundancy)
            have = {p.node.casefold() for p in ctrl.placements(t.new_resource)}
            for node in f.nodes:
                if node.node.name.casefold() not in have:
                    ctrl.make_available(node.node.name, t.new_resource)
            placed = ctrl.placements(t.new_resource)
        target = device_path(ctx, t.new_resource)
        wait.until(target.exists, timeout=120, what=f"{slots.device(t.new_resource)} appearing on {f.local.name}",
                   hint="check 'linstor resource list' and the satellite on this node", interval=0.2)  # fmt: skip
        return {"resource": t.new_resource, "created": created,
                "diskful": sorted(p.node for p in placed if not p.diskless)}  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"LINSTOR resource {record.get('resource')}: diskful on {', '.join(record.get('diskful', []))}"]


class Image(Step):
    key = "image"
    title = "Write the new image to the second disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, t = ctx.options, of(ctx).t
        return [Action(ctx.f.local.name, f"write {o.image} to {slots.device(t.new_resource)} (only its data, zero "
                                         "runs as zero-out requests), read it back and compare")]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        t = of(ctx).t
        refuse_if_held(ctx, t.new_resource)
        result = write_checked(ctx, device_path(ctx, t.new_resource), slots.device(t.new_resource))
        with controller.connect(ctx.directory, ctx.f.appliance_endpoint) as ctrl:
            definition = ctrl.resource_definition(t.new_resource)
            if definition is None or any(definition.properties.get(k) != v
                                         for k, v in controller.MIGRATION_PROPS.items()):  # fmt: skip
                ctrl.set_props(t.new_resource, controller.MIGRATION_PROPS)
        return {"size": result.size, "sha256": result.sha256, "seconds": round(result.seconds, 3)}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"{ctx.options.image}: {record.get('size', 0) / 2**20:.0f} MiB written to {of(ctx).t.new_resource} "
                "and verified"]


class BootUnits(Step):
    """As the deploy's step 5 for the first disk: after a cluster-wide outage the VM must start from the new disk
    before any controller runs, so every node brings it up from its .res file at boot."""

    key = "units"
    title = "Bring the new disk up at boot on every node, without a controller"

    def _unit(self, ctx: Context, facts: NodeFacts) -> str:
        return f"drbd@{of(ctx).t.new_resource}.target" if facts.drbd_target else "drbd.service"

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(n.node.name, f"systemctl enable {self._unit(ctx, n)}") for n in ctx.f.nodes]

    def still_done(self, ctx: Context) -> bool:
        return all(ctx.pve.unit_enabled(n.node, self._unit(ctx, n)) for n in ctx.f.nodes)

    def apply(self, ctx: Context) -> dict[str, Any]:
        t = of(ctx).t
        keep = needs_keep_res(t.to_version)
        done: dict[str, str] = {}
        for facts in ctx.f.nodes:
            unit = self._unit(ctx, facts)
            if keep:
                text = render("image/templates/deploy/satellite-keep-res.conf.j2", vmid=ctx.options.vmid,
                              resource=t.new_resource, after=unit if unit.startswith("drbd@") else None)  # fmt: skip
                ctx.transport.write_file(facts.node, keep_res_dropin(ctx.options.vmid, t.new_resource), text)
            ctx.transport.script(facts.node, ENABLE, unit, "1" if keep else "")
            done[facts.node.name] = unit
        return {"nodes": done}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"{name}: {unit} enabled" for name, unit in record.get("nodes", {}).items()]


def keep_res_dropin(vmid: int, resource: str) -> str:
    return f"/etc/systemd/system/{SATELLITE}.d/50-linstor-appliance-{vmid}-{resource}.conf"


class Stop(Step):
    key = "stop"
    title = "Stop the VM through HA and take the database out of the old disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, t = ctx.options, of(ctx).t
        here = ctx.f.local.name
        return [
            Action(here, f"LINSTOR API at {ctx.f.appliance_endpoint}: record nodes, resource definitions, resources"),
            Action(here, f"ha-manager set vm:{o.vmid} --state stopped; wait until it is off and {t.old_resource} "
                         "is Secondary everywhere"),
            Action(here, f"copy {ctx.f.db_base}.mv.db and the appliance's settings out of {t.old_resource} to "
                         f"/{o.state_dir.relative_to(o.root)}/upgrade-{o.vmid}-<digest> with SHA256SUMS, verified"),
        ]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f, t = ctx.options, ctx.f, of(ctx).t
        if running(ctx):
            # Recorded right before the stop: the new controller must come up with at least all of this.
            ctx.j.set_fact("before", snapshot(ctx))
        elif ctx.j.fact("before") is None:
            die(f"VM {o.vmid} is not running, so what its controller knows cannot be recorded",
                hint=f"start it (ha-manager set vm:{o.vmid} --state started) and run the upgrade again")
        if ctx.j.fact("old_res_files") is None:
            # Kept so a switch back can bring the old disk up even if the new controller's satellites dropped it.
            saved = {n.node.name: ctx.transport.read_file(n.node, slots.res_file(t.old_resource)) for n in f.nodes}
            ctx.j.set_fact("old_res_files", {name: text for name, text in saved.items() if text is not None})
        ctx.j.note(self.key, stopping=True)
        stop_vm(ctx)
        wait.until(lambda: not primaries(ctx, t.old_resource), timeout=max(o.wait_timeout, 60),
                   what=f"{t.old_resource} released on every node",
                   hint=f"see which node holds it: drbdsetup status {t.old_resource}", interval=0.5)  # fmt: skip
        paths = [f"{f.db_base}{suffix}" for suffix in H2_SUFFIXES] + list(CARRIED)
        found = inject.read(device_path(ctx, t.old_resource), paths)
        files = {path.lstrip("/"): data for path, data in found.items() if data is not None}
        if not any(path.endswith(DATA_SUFFIXES) for path in files):
            die(f"the old disk {t.old_resource} holds no database {f.db_base}.mv.db",
                hint="nothing was changed in it; switch back with 'linstor-appliance upgrade --rollback'")
        listing = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in sorted(files.items()))
        folder = o.state_dir / f"upgrade-{o.vmid}-{hashlib.sha256(listing.encode()).hexdigest()[:12]}"
        sums = backup.keep(folder, files)
        log.info(f"kept the database and settings of {t.old_resource} in {folder}")
        return {"stopped": True, "folder": str(folder), "files": sums}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"the old disk's database and settings, verified: {record.get('folder')}"]


class Inject(Step):
    key = "inject"
    title = "Put the database and the appliance's settings into the new disk"

    def describe(self, ctx: Context) -> list[Action]:
        t = of(ctx).t
        return [Action(ctx.f.local.name, f"mount the root partition of {slots.device(t.new_resource)}; write the "
                                         f"database, {', '.join(CARRIED[:-1])}, {IMAGE_MANIFEST} and a new "
                                         f"{DEPLOY_MANIFEST} (LINSTOR {t.to_version}); read them back")]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        t = of(ctx).t
        record = ctx.j.record("stop")
        folder = Path(str(record.get("folder", "")))
        if not backup.complete(folder) or backup.verify(folder) != record.get("files"):
            die(f"the copy of the old disk's files {folder} is missing or changed",
                hint="switch back with 'linstor-appliance upgrade --rollback'")
        refuse_if_held(ctx, t.new_resource)
        files = self.files(ctx, folder, dict(record.get("files", {})))
        target = device_path(ctx, t.new_resource)
        return {"files": inject.write_checked(target, files, t.new_resource,
                                              hint="the disk may be in use elsewhere; continue with --resume")}

    def files(self, ctx: Context, folder: Path, sums: dict[str, str]) -> list[inject.File]:
        o, f, t = ctx.options, ctx.f, of(ctx).t
        files = [inject.File(f"/{path}", (folder / path).read_bytes(), 0o640) for path in sorted(sums)
                 if path.endswith(H2_SUFFIXES)]  # fmt: skip
        carried = {f"/{path}": (folder / path).read_bytes() for path in sums if f"/{path}" in CARRIED}
        toml = carried.get("/etc/linstor/linstor.toml")
        if toml is not None:
            files.append(inject.File("/etc/linstor/linstor.toml", toml, 0o640))
        checked = {item.path: hashlib.sha256(item.data).hexdigest() for item in files}
        modes = {"/etc/netplan/config.yaml": 0o600, "/etc/nftables.conf": 0o755}
        for path, data in carried.items():
            if path not in ("/etc/linstor/linstor.toml", DEPLOY_MANIFEST):
                files.append(inject.File(path, data, modes.get(path, 0o644)))
        files.append(inject.File(IMAGE_MANIFEST, (json.dumps(f.manifest, indent=2, sort_keys=True) + "\n").encode()))
        try:
            deployed = json.loads(carried.get(DEPLOY_MANIFEST, b"{}"))
        except json.JSONDecodeError:
            deployed = {}
        # The appliance's deploy check compares these on the first boot from this disk, and the release always.
        deployed.update({
            "format": 1, "vmid": o.vmid, "name": o.name, "address": str(o.address), "linstor_version": t.to_version,
            "upgraded_by": f"linstor-appliance {__version__}",
            "upgraded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "upgraded_from": t.from_version,
            "image": {"name": o.image.name if o.image else None, "built_at": f.manifest.get("built_at"),
                      "linstor_controller": f.manifest.get("linstor_controller", {}).get("version")},
            "files": checked,
        })  # fmt: skip
        files.append(inject.File(DEPLOY_MANIFEST, (json.dumps(deployed, indent=2, sort_keys=True) + "\n").encode()))
        return files

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"in {of(ctx).t.new_resource}: {', '.join(sorted(record.get('files', {})))}"]


class Switch(Step):
    key = "switch"
    title = "Boot the VM from the new disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, t = ctx.options, of(ctx).t
        return [Action(f"owner of VM {o.vmid}", f"qm set {o.vmid} --{slots.BOOT_DISK} "
                                                f"{slots.disk_value(t.new_resource)} (was {t.old_disk}; recorded in "
                                                "the journal to switch back)")]  # fmt: skip

    def still_done(self, ctx: Context) -> bool:
        return slots.booted(ctx.pve.vm_config(ctx.options.vmid)) == of(ctx).t.new_resource

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, t = ctx.options, of(ctx).t
        if running(ctx):
            die(f"VM {o.vmid} runs, so its boot disk cannot be switched", hint="continue with --resume")
        ctx.pve.qm(o.vmid, "set", f"--{slots.BOOT_DISK}", slots.disk_value(t.new_resource))
        return {"old_disk": t.old_disk, "new_disk": slots.disk_value(t.new_resource)}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"VM {ctx.options.vmid} boots from {record.get('new_disk')} (was {record.get('old_disk')})"]


class Start(Step):
    key = "start"
    title = "Start the VM through HA"

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(ctx.f.local.name, f"ha-manager set vm:{ctx.options.vmid} --state started; wait until it runs")]

    def still_done(self, ctx: Context) -> bool:
        return running(ctx)

    def apply(self, ctx: Context) -> dict[str, Any]:
        start_vm(ctx)
        return {"node": (ctx.pve.vm(ctx.options.vmid) or {}).get("node")}


class Verify(Step):
    key = "verify"
    title = "Verify the new controller"

    def describe(self, ctx: Context) -> list[Action]:
        u = of(ctx)
        here = ctx.f.local.name
        actions = [
            Action(here, f"wait up to {u.timeout:.0f}s for the REST API at {u.endpoint}; it must report LINSTOR "
                         f"{u.t.to_version}"),
            Action(here, "compare nodes, resource definitions and resources with those recorded before the stop"),
        ]  # fmt: skip
        if not u.t.pins:
            actions.append(Action(here, "wait until every satellite is ONLINE with it"))
        return actions

    def apply(self, ctx: Context) -> dict[str, Any]:
        u = of(ctx)
        o, t = ctx.options, u.t
        started = time.monotonic()
        version = wait.until(lambda: controller.probe(ctx.directory, u.endpoint, timeout=3), timeout=u.timeout,
                             what=f"the new LINSTOR controller in VM {o.vmid} answering at {u.endpoint}",
                             hint=f"look at the VM's console (qm terminal {o.vmid}) for 'Database initialization "
                                  "error' or the deploy check's reason", interval=1.0)  # fmt: skip
        if version != t.to_version:
            die(f"the controller in the VM runs LINSTOR {version}, not {t.to_version}",
                hint="the new disk does not hold the image that was checked; build it again")
        after = snapshot(ctx)
        missing = lost(dict(ctx.j.fact("before", {})), after)
        if missing:
            die(f"the new controller's database lacks {len(missing)} item(s) the old one had: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                hint="its migration lost data; report it to LINBIT with the VM's controller log")
        waiting = [n for n in after["nodes"] if n not in t.pins]
        with controller.connect(ctx.directory, u.endpoint) as ctrl:
            satellites = [n.name for n in ctrl.nodes() if n.type in controller.SATELLITE_TYPES and n.name in waiting]

            def online() -> bool:
                states = {n.name: n.status for n in ctrl.nodes()}
                return all(states.get(name) == "ONLINE" for name in satellites)

            wait.until(online, timeout=u.timeout, what="every satellite at the new release connecting to it",
                       hint="check 'linstor node list' against the VM and the satellites' logs", interval=1.0)
        return {"version": version, "nodes": after["nodes"], "definitions": len(after["definitions"]),
                "resources": len(after["resources"]), "online": satellites,
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"new controller: LINSTOR {record.get('version')}, nodes {', '.join(record.get('nodes', []))}, "
                f"{record.get('definitions')} resource definitions and {record.get('resources')} resources as "
                f"before; online: {', '.join(record.get('online', [])) or 'none yet'}"]


class Satellites(Step):
    key = "satellites"
    title = "Upgrade the satellites node by node"

    def applies(self, ctx: Context) -> bool:
        return bool(of(ctx).t.pins)

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(node, f"{' '.join(apt.argv(pinned, '-y', '-q'))}; wait until its satellite is ONLINE")
                for node, pinned in of(ctx).t.pins.items()]  # fmt: skip

    def apply(self, ctx: Context) -> dict[str, Any]:
        u = of(ctx)
        done: list[str] = list(ctx.j.record(self.key).get("upgraded", []))
        for name, pinned in u.t.pins.items():
            node = ctx.pve.node(name)
            if name not in done or ctx.pve.package_version(node, "linstor-satellite") != pinned["linstor-satellite"]:
                log.info(f"{name}: {' '.join(apt.argv(pinned, '-y', '-q'))}")
                ctx.j.note(self.key, installing=name)
                apt.install(ctx.transport, node, pinned)
                done = sorted({*done, name})
                ctx.j.note(self.key, upgraded=done)
            with controller.connect(ctx.directory, u.endpoint) as ctrl:

                def online(ctrl: controller.Controller = ctrl, name: str = name) -> bool:
                    return any(n.name == name and n.status == "ONLINE" for n in ctrl.nodes())

                wait.until(online, timeout=u.timeout, what=f"the satellite on {name} coming ONLINE",
                           hint=f"check 'systemctl status linstor-satellite' on {name}", interval=1.0)  # fmt: skip
        return {"upgraded": done}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"satellites upgraded to LINSTOR {of(ctx).t.to_version} and online: "
                f"{', '.join(record.get('upgraded', []))}"]


ALL: tuple[Step, ...] = (Backup(), Disk(), Image(), BootUnits(), Stop(), Inject(), Switch(), Start(), Verify(),
                         Satellites())  # fmt: skip
# From this step on the old controller is stopped: a failure switches back to the old disk.
STOPS = "stop"
