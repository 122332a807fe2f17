"""Switching the VM back to the old disk: the old controller on the database it had, unchanged.

The old disk was only read by the upgrade, so booting from it again is the state before the upgrade. The
new disk is kept for inspection until the next upgrade writes over it. Once a satellite was upgraded the
old controller would see it as VERSION_MISMATCH, so a rollback on request is refused from then on.
"""

from __future__ import annotations

from builder import log, slots
from builder.deploy import controller, inject, wait
from builder.deploy.context import Context
from builder.deploy.steps.image import primaries
from builder.deploy.steps.start import running, start_vm, stop_vm
from builder.errors import ApplianceError, die
from builder.upgrade.context import of
from builder.upgrade.steps import device_path


def switch_back(ctx: Context, reason: str) -> str:
    """Stop the VM, boot it from the old disk, wait for the old controller; returns its version."""
    u = of(ctx)
    o, t = ctx.options, u.t
    for name in (t.old_resource, t.new_resource):
        inject.release_stale(device_path(ctx, name))
    with log.step(f"Switching VM {o.vmid} back to {t.old_resource}"):
        if running(ctx) or slots.booted(ctx.pve.vm_config(o.vmid)) != t.old_resource:
            stop_vm(ctx)

            def released() -> bool:
                try:
                    return not primaries(ctx, t.new_resource)
                except ApplianceError:
                    return True  # not up on this node (a controller that lost it may have taken it down)

            wait.until(released, timeout=max(o.wait_timeout, 60),
                       what=f"{t.new_resource} released on every node",
                       hint=f"see which node holds it: drbdsetup status {t.new_resource}", interval=0.5)  # fmt: skip
        bring_up_old_disk(ctx)
        if slots.booted(ctx.pve.vm_config(o.vmid)) != t.old_resource:
            ctx.pve.qm(o.vmid, "set", f"--{slots.BOOT_DISK}", t.old_disk)
        start_vm(ctx)
        version = wait.until(lambda: controller.probe(ctx.directory, u.endpoint, timeout=3), timeout=u.timeout,
                             what=f"the old controller in VM {o.vmid} answering at {u.endpoint}",
                             hint=f"look at the VM's console (qm terminal {o.vmid})", interval=1.0)  # fmt: skip
    if version != t.from_version:
        die(f"after switching back, the controller in VM {o.vmid} runs LINSTOR {version}, not {t.from_version}",
            hint=f"check which disk VM {o.vmid} boots ('qm config {o.vmid}')")
    ctx.j.set_status("rolled-back", rolled_back_because=reason)
    return version


def bring_up_old_disk(ctx: Context) -> None:
    """The old disk up on every node again, from its .res file as kept before the stop, where a new controller
    that lost its definition made the satellite take it down (the data stays on the backing storage)."""
    t = of(ctx).t
    saved: dict[str, str] = dict(ctx.j.fact("old_res_files") or {})
    device = slots.device(t.old_resource)
    for facts in ctx.f.nodes:
        node = facts.node
        if node.local:
            present = ctx.options.host_path(device).exists()
        else:
            present = ctx.transport.run(node, ["test", "-e", device], check=False).returncode == 0
        if present or node.name not in saved:
            continue
        log.warn(f"{t.old_resource} is down on {node.name}: bringing it up from its kept .res file")
        ctx.transport.write_file(node, slots.res_file(t.old_resource), saved[node.name])
        ctx.pve.systemctl(node, "start", f"drbd@{t.old_resource}.target", check=False)
    local = ctx.options.host_path(device)
    wait.until(local.exists, timeout=60, what=f"{device} coming up on {ctx.f.local.name}",
               hint=f"bring it up: drbdadm up {t.old_resource}", interval=0.5)  # fmt: skip


def refuse_after_satellites(ctx: Context) -> None:
    upgraded = ctx.j.record("satellites").get("upgraded", [])
    if upgraded:
        die(f"the satellites on {', '.join(upgraded)} already run LINSTOR {of(ctx).t.to_version}: the old controller "
            "would refuse them (VERSION_MISMATCH)",
            hint="finish the upgrade with --resume, then --commit")  # fmt: skip
