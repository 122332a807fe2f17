"""Step 1: the controller VM's disk, a LINSTOR resource replicated `redundancy` times and present on every node.

device-path: created through the REST API under a name no plugin pattern matches, so Proxmox never
lists, activates or deletes it. controllervm (plugin <= 5.2.2, the seed's way): the legacy volume
vm-<id>-disk-1 made with `pvesm alloc`, then `controllervm <id>` in storage.cfg so the plugin leaves
it alone; that is set here, right after the volume exists, because the VM must start later while no
controller runs (the plugin's activation would otherwise need one).
"""

from __future__ import annotations

from typing import Any

from builder import log
from builder.deploy import controller, storagecfg, wait
from builder.deploy.context import Context
from builder.deploy.options import Strategy
from builder.deploy.steps.base import Action, Step
from builder.deploy.steps.storage import rewrite_note
from builder.errors import die


def props(ctx: Context) -> dict[str, str]:
    # One Primary at a time until step 3 has written and verified the image (the plugin may have allowed two);
    # step 3 then allows the second one live migration needs.
    written = ctx.journal is not None and ctx.j.state("image") == "done"
    two_primaries = controller.MIGRATION_PROPS if written else controller.SINGLE_PRIMARY_PROPS
    return {controller.PROP_VMID: str(ctx.options.vmid), **controller.QUORUM_PROPS, **two_primaries}


def ours(definition: Any, vmid: int) -> bool:
    return bool(definition is not None and definition.properties.get(controller.PROP_VMID) == str(vmid))


class Disk(Step):
    key = "disk"
    title = "Controller VM disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        size = f"{f.disk_size // 2**20} MiB"
        here, api = f.local.name, f"LINSTOR API at {f.host_endpoint}"
        keys = ", ".join(f"{k}={v}" for k, v in props(ctx).items())
        if o.strategy is Strategy.device_path:
            actions = [
                Action(here, f"{api}: spawn {o.resource} ({size}) from resource group {f.resource_group}, "
                             f"place count {o.redundancy}, diskless on the remaining nodes"),
            ]  # fmt: skip
        else:
            actions = [
                Action(here, f"pvesm alloc {f.storage.id} {o.vmid} {o.resource} {f.disk_size // 1024}"),
                Action(here, f"{api}: autoplace {o.resource}, place count {o.redundancy}, diskless on the "
                             "remaining nodes"),
            ]  # fmt: skip
        actions.append(Action(here, f"{api}: set {keys} on {o.resource}"))
        actions.append(Action(here, f"wait for {o.device}"))
        if o.strategy is Strategy.controllervm:
            actions.append(Action(here, f"pvesm set {f.storage.id} --controllervm {o.vmid}"))
            actions += rewrite_note(ctx)
        return actions

    def still_done(self, ctx: Context) -> bool:
        return ctx.options.host_path(ctx.options.device).exists()

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        created = False
        with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
            definition = ctrl.resource_definition(o.resource)
            allocating = ctx.j.record(self.key).get("allocating")
            if definition is not None and not ours(definition, o.vmid) and not allocating:
                die(f"a LINSTOR resource {o.resource} exists and was not made by this deploy",
                    hint="remove it, or deploy with another --vmid")
            if definition is None:
                log.info(f"creating {o.resource} from resource group {f.resource_group}")
                if o.strategy is Strategy.device_path:
                    ctrl.spawn(f.resource_group, o.resource, f.disk_size // 1024, o.redundancy, props(ctx))
                else:
                    ctx.j.note(self.key, allocating=True)
                    ctx.pve.pvesm_alloc(f.storage.id, o.vmid, o.resource, f.disk_size // 1024)
                created = True
            ctrl.set_props(o.resource, props(ctx))
            placed = ctrl.placements(o.resource)
            if sum(1 for p in placed if not p.diskless) < o.redundancy:
                ctrl.autoplace(o.resource, o.redundancy)
                placed = ctrl.placements(o.resource)
            # Every node must have the device, diskless at least: HA may start the VM anywhere.
            have = {p.node.casefold() for p in placed}
            for node in f.nodes:
                if node.node.name.casefold() not in have:
                    ctrl.make_available(node.node.name, o.resource)
            placed = ctrl.placements(o.resource)
        device = o.host_path(o.device)
        wait.until(device.exists, timeout=120, what=f"{o.device} appearing on {f.local.name}",
                   hint="check 'linstor resource list' and the satellite on this node", interval=0.2)  # fmt: skip
        record: dict[str, Any] = {
            "resource": o.resource, "created": created,
            "diskful": sorted(p.node for p in placed if not p.diskless),
            "diskless": sorted(p.node for p in placed if p.diskless),
        }  # fmt: skip
        if o.strategy is Strategy.controllervm:
            entry = storagecfg.read(o.root).get(f.storage.id)
            previous = entry.options.get("controllervm") if entry else None
            if previous != str(o.vmid):
                ctx.j.note(self.key, controllervm_previous=previous, controllervm_set=f.storage.id)
                ctx.pve.pvesm_set(f.storage.id, {"controllervm": str(o.vmid)})
            record.update(controllervm_previous=previous, controllervm_set=f.storage.id)
        return record

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = [f"LINSTOR resource {record.get('resource')} ({ctx.options.device}): diskful on "
                 f"{', '.join(record.get('diskful', []))}"
                 + (f", diskless on {', '.join(record['diskless'])}" if record.get("diskless") else "")]
        if record.get("controllervm_set"):
            lines.append(f"storage {record['controllervm_set']}: controllervm {ctx.options.vmid}")
        return lines

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        storage = record.get("controllervm_set")
        lines = [f"left the LINSTOR resource {ctx.options.resource} (the VM disk) for inspection"]
        if storage:
            previous = record.get("controllervm_previous")
            if previous:
                ctx.pve.pvesm_set(storage, {"controllervm": str(previous)})
            else:
                ctx.pve.pvesm_set(storage, {}, delete=("controllervm",))
            lines.insert(0, f"storage {storage}: controllervm restored")
        return lines
