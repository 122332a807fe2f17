"""Step 8: protection on, then the VM started by Proxmox VE HA, which restarts or moves it when a node fails."""

from __future__ import annotations

from typing import Any

from builder.deploy import wait
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step
from builder.errors import die

HA_OPTIONS = ("--max_restart", "3", "--max_relocate", "3", "--comment", "LINSTOR controller (linstor-appliance)")


def running(ctx: Context) -> bool:
    vm = ctx.pve.vm(ctx.options.vmid)
    return bool(vm and vm.get("status") == "running")


def stop_vm(ctx: Context) -> None:
    """Stop the VM through HA when HA manages it (HA would start it again after a plain qm stop)."""
    o = ctx.options
    sid = f"vm:{o.vmid}"
    if sid in ctx.pve.ha_resources():
        ctx.pve.transport.run(ctx.pve.local, ["ha-manager", "set", sid, "--state", "stopped"])
    elif running(ctx):
        ctx.pve.qm(o.vmid, "stop")
    wait.until(lambda: not running(ctx), timeout=max(o.wait_timeout, 60), what=f"VM {o.vmid} stopping",
               hint=f"stop it by hand: qm stop {o.vmid} on its node", interval=0.5)  # fmt: skip


def start_vm(ctx: Context) -> None:
    """Start the VM again after stop_vm(), the same way, and wait until it runs."""
    o = ctx.options
    sid = f"vm:{o.vmid}"
    if sid in ctx.pve.ha_resources():
        ctx.pve.transport.run(ctx.pve.local, ["ha-manager", "set", sid, "--state", "started"])
    elif not running(ctx):
        ctx.pve.qm(o.vmid, "start")
    wait.until(lambda: running(ctx) or Start._failed(ctx, sid), timeout=o.wait_timeout, what=f"VM {o.vmid} starting",
               hint=f"start it: ha-manager set {sid} --state started", interval=0.5)  # fmt: skip


class Start(Step):
    key = "start"
    title = "Start the VM through HA"

    def describe(self, ctx: Context) -> list[Action]:
        o, here = ctx.options, ctx.f.local.name
        return [
            Action(f"owner of VM {o.vmid}", f"qm set {o.vmid} --protection 1"),
            Action(here, f"ha-manager add vm:{o.vmid} --state started " + " ".join(HA_OPTIONS[:4])
                   + f" --comment '{HA_OPTIONS[5]}'"),
            Action(here, f"wait until VM {o.vmid} runs (at most {o.wait_timeout:.0f}s)"),
        ]

    def still_done(self, ctx: Context) -> bool:
        sid = f"vm:{ctx.options.vmid}"
        resource = ctx.pve.ha_resources().get(sid)
        return bool(resource and resource.get("state", "started") == "started" and running(ctx))

    def apply(self, ctx: Context) -> dict[str, Any]:
        o = ctx.options
        sid = f"vm:{o.vmid}"
        ctx.pve.qm(o.vmid, "set", "--protection", "1")
        if sid in ctx.pve.ha_resources():
            ctx.pve.transport.run(ctx.pve.local, ["ha-manager", "set", sid, "--state", "started"])
        else:
            ctx.j.note(self.key, ha_added=True)
            ctx.pve.transport.run(ctx.pve.local, ["ha-manager", "add", sid, "--state", "started", *HA_OPTIONS])
        wait.until(lambda: running(ctx) or self._failed(ctx, sid), timeout=o.wait_timeout,
                   what=f"HA starting VM {o.vmid}", hint=f"see 'ha-manager status' and the task log of VM {o.vmid}",
                   interval=0.5)  # fmt: skip
        vm = ctx.pve.vm(o.vmid) or {}
        return {"ha_added": True, "protection": True, "node": vm.get("node")}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"HA resource vm:{ctx.options.vmid} (started, max_restart 3, max_relocate 3), protection on; "
                f"running on {record.get('node')}"]

    @staticmethod
    def _failed(ctx: Context, sid: str) -> bool:
        service = ctx.pve.ha_services().get(sid, {})
        if service.get("state") == "error":
            die(f"HA could not start {sid} (state error)", hint="see 'ha-manager status' and the VM's task log")
        return False

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        sid = f"vm:{ctx.options.vmid}"
        stop_vm(ctx)
        if sid in ctx.pve.ha_resources():
            ctx.pve.transport.run(ctx.pve.local, ["ha-manager", "remove", sid])
        return [f"VM {ctx.options.vmid} stopped through HA and removed from HA; kept (protected) for inspection"]
