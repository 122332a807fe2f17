"""Step 5: on every node, the VM disk's DRBD resource comes up at boot without any controller.

HA may start the controller VM on any node right after a reboot, before a controller exists to tell
the satellite about the resource. So the node brings it up itself from the satellite's .res file:
with `drbd@<res>.target` where drbd-utils has that template (what drbd-utils recommends), else with
the old `drbd.service`. Before LINSTOR 1.33 a starting satellite may delete that .res file; a drop-in
with LS_KEEP_RES keeps it (linstor.md section 5). Only drop-in files are written, never a unit file.
"""

from __future__ import annotations

from typing import Any

from builder.deploy.context import Context, NodeFacts
from builder.deploy.remote import Node
from builder.deploy.steps.base import Action, Step
from builder.deploy.versions import needs_keep_res
from builder.resources import render

SATELLITE = "linstor-satellite.service"
# $1 the unit, $2 non-empty when a drop-in was written and systemd must reload it first.
ENABLE = 'systemctl is-enabled "$1" 2>/dev/null || true; if [ -n "$2" ]; then systemctl daemon-reload; fi; ' \
    'systemctl enable "$1"'


def dropin_path(vmid: int) -> str:
    return f"/etc/systemd/system/{SATELLITE}.d/50-linstor-appliance-{vmid}.conf"


def unit_for(ctx: Context, facts: NodeFacts) -> str:
    return f"drbd@{ctx.options.resource}.target" if facts.drbd_target else "drbd.service"


def dropin_text(ctx: Context, unit: str) -> str:
    return render("image/templates/deploy/satellite-keep-res.conf.j2", vmid=ctx.options.vmid,
                  resource=ctx.options.resource, after=unit if unit.startswith("drbd@") else None)  # fmt: skip


class Units(Step):
    key = "units"
    title = "Bring the VM disk up at boot on every node, without a controller"

    def describe(self, ctx: Context) -> list[Action]:
        actions = []
        keep = needs_keep_res(ctx.f.linstor_version)
        for facts in ctx.f.nodes:
            unit = unit_for(ctx, facts)
            if keep:
                actions.append(Action(facts.node.name, f"write {dropin_path(ctx.options.vmid)} "
                                                       f"(LS_KEEP_RES for {ctx.options.resource}); "
                                                       "systemctl daemon-reload"))  # fmt: skip
            actions.append(Action(facts.node.name, f"systemctl enable {unit}"))
        return actions

    def still_done(self, ctx: Context) -> bool:
        return all(ctx.pve.unit_enabled(n.node, unit_for(ctx, n)) for n in ctx.f.nodes)

    def apply(self, ctx: Context) -> dict[str, Any]:
        keep = needs_keep_res(ctx.f.linstor_version)
        done: dict[str, Any] = dict(ctx.j.record(self.key).get("nodes", {}))
        for facts in ctx.f.nodes:
            node = facts.node
            unit = unit_for(ctx, facts)
            previous = done.get(node.name, {})
            entry = {"address": node.address, "local": node.local, "unit": unit,
                     "was_enabled": previous.get("was_enabled"), "dropin": None}  # fmt: skip
            if keep:
                # Noted before writing, so a rollback after a kill here removes it.
                entry["dropin"] = dropin_path(ctx.options.vmid)
                done[node.name] = entry
                ctx.j.note(self.key, nodes=done)
                ctx.transport.write_file(node, dropin_path(ctx.options.vmid), dropin_text(ctx, unit))
            # One round trip: whether the unit was enabled before (a rollback leaves it so), then enable it.
            result = ctx.transport.script(node, ENABLE, unit, "1" if keep else "")
            if entry["was_enabled"] is None:
                entry["was_enabled"] = result.stdout.splitlines()[0].strip() == "enabled"
            done[node.name] = entry
            ctx.j.note(self.key, nodes=done)
        return {"nodes": done}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"{name}: {entry['unit']} enabled" + (", satellite keeps its .res file (drop-in)"
                                                      if entry.get("dropin") else "")
                for name, entry in record.get("nodes", {}).items()]  # fmt: skip

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = []
        for name, entry in record.get("nodes", {}).items():
            node = Node(name, entry["address"], bool(entry.get("local")))
            if not entry.get("was_enabled"):
                ctx.pve.systemctl(node, "disable", entry["unit"], check=False)
            if entry.get("dropin"):
                ctx.transport.remove_file(node, entry["dropin"])
                ctx.pve.systemctl(node, "daemon-reload", check=False)
            lines.append(f"{name}: {entry['unit']} " + ("left enabled (it was before)" if entry.get("was_enabled")
                                                         else "disabled") +
                         (", satellite drop-in removed" if entry.get("dropin") else ""))  # fmt: skip
        return lines
