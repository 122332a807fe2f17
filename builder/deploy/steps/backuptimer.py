"""Step 12: every node runs the hourly backup timer of the appliance's database (builder/backup/timer.py).

The units come with the linstor-appliance package; a node without them (the tool run from the zipapp) is
named in the report rather than given copies, since its timer would find no tool to run.
"""

from __future__ import annotations

from typing import Any

from builder import log
from builder.backup import timer
from builder.deploy.context import Context
from builder.deploy.remote import Node
from builder.deploy.steps.base import Action, Step

PROBE = 'systemctl show -p LoadState --value "$1"; systemctl is-enabled "$1" 2>/dev/null || true'


class BackupTimer(Step):
    key = "backup_timer"
    title = "Back up the VM's database from the nodes every hour (when it changed)"

    def describe(self, ctx: Context) -> list[Action]:
        actions = []
        for facts in ctx.f.nodes:
            name = facts.node.name
            actions.append(Action(name, f"write {timer.CONFIG} (--vmid {ctx.options.vmid})"))
            actions.append(Action(name, f"systemctl enable --now {timer.TIMER} (where the package installed it)"))
        return actions

    def apply(self, ctx: Context) -> dict[str, Any]:
        done: dict[str, Any] = dict(ctx.j.record(self.key).get("nodes", {}))
        missing: list[str] = []
        for facts in ctx.f.nodes:
            node = facts.node
            states = ctx.transport.script(node, PROBE, timer.TIMER, check=False).stdout.split()
            if not states or states[0] != "loaded":
                missing.append(node.name)
                continue
            entry = done.get(node.name) or {"address": node.address, "local": node.local,
                                            "was_enabled": len(states) > 1 and states[1] == "enabled"}  # fmt: skip
            done[node.name] = entry
            ctx.j.note(self.key, nodes=done)
            ctx.transport.write_file(node, timer.CONFIG, timer.config_text(ctx.options.vmid))
            ctx.pve.systemctl(node, "enable", "--now", timer.TIMER)
        if missing:
            log.warn(f"no {timer.TIMER} on {', '.join(missing)}: install the linstor-appliance package there")
        return {"nodes": done, "missing": missing}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = [f"{name}: {timer.TIMER} enabled" for name in record.get("nodes", {})]
        if record.get("missing"):
            lines.append(f"no backup timer on {', '.join(record['missing'])} (the linstor-appliance package is not "
                         "installed there)")  # fmt: skip
        return lines

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = []
        for name, entry in record.get("nodes", {}).items():
            node = Node(name, entry["address"], bool(entry.get("local")))
            if not entry.get("was_enabled"):
                ctx.pve.systemctl(node, "disable", "--now", timer.TIMER, check=False)
            ctx.transport.remove_file(node, timer.CONFIG)
            lines.append(f"{name}: {timer.TIMER} " + ("left enabled" if entry.get("was_enabled") else "disabled"))
        return lines
