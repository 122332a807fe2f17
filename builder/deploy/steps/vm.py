"""Step 2: the VM itself, as the seed describes it: 1 GiB RAM, a serial port, virtio, booting from the DRBD disk.

With device-path the disk is the absolute device path with shared=1: PVE skips storage activation
for absolute paths, so the VM starts without any controller, and shared=1 tells PVE the device is
on every node (it is: diskless at least), which HA recovery and migration check.
"""

from __future__ import annotations

import shlex
from typing import Any

from builder.deploy.context import Context
from builder.deploy.options import VM_TAG, Strategy
from builder.deploy.steps.base import Action, Step
from builder.errors import die

DESCRIPTION = "LINSTOR controller appliance, deployed by linstor-appliance. Do not delete: it holds the " \
    "LINSTOR database."


def disk_value(ctx: Context) -> str:
    o = ctx.options
    if o.strategy is Strategy.device_path:
        return f"{o.device},shared=1"
    return f"{ctx.f.storage.id}:{o.resource}"


def settings(ctx: Context) -> list[str]:
    o = ctx.options
    return [
        "--name", o.name, "--memory", "1024", "--ostype", "l26", "--serial0", "socket",
        "--net0", f"virtio,bridge={o.bridge}", "--scsihw", "virtio-scsi-pci", "--scsi0", disk_value(ctx),
        "--boot", "order=scsi0", "--agent", "enabled=1", "--tags", VM_TAG, "--description", DESCRIPTION,
    ]  # fmt: skip


def is_ours(config: dict[str, Any] | None) -> bool:
    if not config:
        return False
    return VM_TAG in str(config.get("tags", "")).replace(",", ";").split(";")


class Vm(Step):
    key = "vm"
    title = "The controller VM"

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(ctx.f.local.name, shlex.join(["qm", "create", str(ctx.options.vmid), *settings(ctx)]))]

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"VM {ctx.options.vmid} ({ctx.options.name}) " + ("created" if record.get("created") else "updated")
                + f", disk {disk_value(ctx)}"]

    def still_done(self, ctx: Context) -> bool:
        return is_ours(ctx.pve.vm_config(ctx.options.vmid))

    def apply(self, ctx: Context) -> dict[str, Any]:
        vmid = ctx.options.vmid
        config = ctx.pve.vm_config(vmid)
        if config is None:
            ctx.pve.qm_create(vmid, *settings(ctx))
            created = True
        elif is_ours(config):
            # An earlier run made it: make sure it has this run's settings (not the MAC, which stays).
            wanted = settings(ctx)
            current_net = str(config.get("net0", ""))
            if f"bridge={ctx.options.bridge}" in current_net and current_net.startswith("virtio="):
                index = wanted.index("--net0")
                wanted[index + 1] = current_net
            ctx.pve.qm(vmid, "set", *wanted)
            created = False
        else:
            die(f"VM {vmid} exists and was not made by linstor-appliance", hint="choose a free --vmid")
        return {"created": created, "node": ctx.f.local.name}
