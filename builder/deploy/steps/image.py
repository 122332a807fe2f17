"""Step 3: the image onto the VM disk, through this node's DRBD device.

Only what the image holds is written: runs of zeros become zero-out requests, which DRBD replicates
as small messages, where the seed's `qemu-img dd` sends every byte of the disk to every peer. The
device is read back and compared before anything boots from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder import log
from builder.deploy import controller
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step
from builder.errors import die
from builder.imagewrite import WriteResult, verify, write_image


def refuse_if_in_use(ctx: Context) -> None:
    """The disk must be offline everywhere: no VM running from it, no node holding it Primary."""
    o = ctx.options
    vm = ctx.pve.vm(o.vmid)
    if vm is not None and vm.get("status") == "running":
        die(f"VM {o.vmid} is running on {vm.get('node')}, so its disk is in use",
            hint=f"stop it first: ha-manager set vm:{o.vmid} --state stopped (or qm stop {o.vmid})")
    holders = primaries(ctx)
    if holders:
        die(f"{o.resource} is Primary on {', '.join(holders)}: something there has the disk open",
            hint=f"find it with 'drbdsetup status {o.resource} --verbose' on that node and close it")
    if ctx.journal is None or not ctx.j.touched("handover"):
        # This node's DRBD only knows the peers it is connected to; LINSTOR hears from every satellite. (After
        # step 6 no controller runs until the VM's, so then the local view is all there is.)
        refuse_if_used_elsewhere(ctx)


def refuse_if_used_elsewhere(ctx: Context) -> None:
    o = ctx.options
    with controller.connect(ctx.directory, ctx.f.host_endpoint) as ctrl:
        states = ctrl.in_use(o.resource)
    used = sorted(node for node, in_use in states.items() if in_use)
    if used:
        die(f"LINSTOR reports {o.resource} in use (DRBD Primary) on {', '.join(used)}: something there has the "
            "disk open", hint=f"check 'linstor resource list -r {o.resource}' and close it on that node")  # fmt: skip
    unknown = sorted(node for node, in_use in states.items() if in_use is None)
    if unknown:
        die(f"LINSTOR cannot tell whether {o.resource} is in use on {', '.join(unknown)}",
            hint="bring the satellites there online ('linstor node list') and run the deploy again with --resume")


def primaries(ctx: Context, resource: str | None = None) -> list[str]:
    """Nodes where the resource (the VM disk unless named) is Primary, as this node's DRBD sees itself and its
    peers."""
    name = resource or ctx.options.resource
    local = ctx.pve.local  # this node, as preflight (or a rollback) learned its name
    result = ctx.transport.run(local, ["drbdsetup", "status", name, "--json"], check=False)
    if result.returncode != 0:
        die(f"cannot read the DRBD state of {name}: {result.stderr.strip() or result.stdout.strip()}",
            hint=f"check 'drbdsetup status {name}' on this node")
    try:
        resources = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        die(f"drbdsetup printed no JSON for {name}", hint="drbd-utils 9.x is needed")
    found = []
    for entry in resources:
        if str(entry.get("role", "")).lower() == "primary":
            found.append(local.name)
        for peer in entry.get("connections", []):
            if str(peer.get("peer-role", "")).lower() == "primary":
                found.append(str(peer.get("name", "?")))
    return sorted(set(found))


def write_checked(ctx: Context, target: Path, shown: str) -> WriteResult:
    """The image onto target (a DRBD device, shown by its /dev path): what it decompressed to must match
    SHA256SUMS, and the device read back must match that."""
    o, f = ctx.options, ctx.f
    assert o.image is not None
    result = write_image(o.image, target, label=f"Writing {o.image.name}")
    if f.raw_sha256 and result.sha256 != f.raw_sha256:
        die(f"{o.image.name} decompressed to data that does not match SHA256SUMS",
            hint="copy the image again and check it with 'sha256sum -c SHA256SUMS'")
    verify(target, result.size, result.sha256, label=f"Reading back {shown}")
    return result


class Image(Step):
    key = "image"
    title = "Write the image to the VM disk"

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        here = f.local.name
        return [
            Action(here, f"check that VM {o.vmid} runs nowhere and no node holds {o.resource} Primary "
                         f"(drbdsetup status {o.resource} --json; LINSTOR API at {f.host_endpoint}: resource list)"),
            Action(here, f"write {o.image} to {o.device}: only the image's data, zero runs as zero-out requests "
                         f"({f.image_size // 2**20} MiB image)"),
            Action(here, f"read {o.device} back and compare its SHA-256 with the image"),
            Action(here, f"LINSTOR API at {f.host_endpoint}: set "
                         f"{', '.join(f'{k}={v}' for k, v in controller.MIGRATION_PROPS.items())} on {o.resource}"),
        ]  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"image written: {record.get('data_bytes', 0) / 2**20:.0f} MiB of data, "
                f"{record.get('zeroed_bytes', 0) / 2**20:.0f} MiB zeroed without sending them, in "
                f"{record.get('seconds', 0):.1f}s (qemu-img dd: all {record.get('size', 0) / 2**20:.0f} MiB), "
                "verified by reading back"]

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        assert o.image is not None
        refuse_if_in_use(ctx)
        target = o.host_path(o.device)
        if not target.exists():
            die(f"{o.device} does not exist on {f.local.name}", hint="run the deploy again with --resume")
        result = write_checked(ctx, target, o.device)
        # Only now may two nodes be Primary at once (for live migration): before, a second writer could have
        # gone unnoticed while the image was written.
        with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
            ctrl.set_props(o.resource, controller.MIGRATION_PROPS)
        rate = result.data_bytes / result.seconds if result.seconds > 0 else 0.0
        seed_estimate = result.size / rate if rate else 0.0
        log.info(f"wrote {result.data_bytes / 2**20:.0f} MiB of data and zeroed {result.zeroed_bytes / 2**20:.0f} MiB "
                 f"in {result.seconds:.1f}s; qemu-img dd would have written all {result.size / 2**20:.0f} MiB "
                 f"to every replica (about {seed_estimate:.0f}s at this rate)")  # fmt: skip
        return {"size": result.size, "data_bytes": result.data_bytes, "zeroed_bytes": result.zeroed_bytes,
                "seconds": round(result.seconds, 3), "sha256": result.sha256,
                "qemu_img_dd_bytes": result.size, "qemu_img_dd_seconds_estimate": round(seed_estimate, 1)}  # fmt: skip
