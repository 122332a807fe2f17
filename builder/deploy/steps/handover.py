"""Step 6: the controller on this node stops for good, and its files are backed up.

From here on the cluster has no running controller until the VM's starts, so a failure in this or any
later step rolls back automatically. The node list is recorded first: the VM's controller must come
up with exactly these nodes. The database files are only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder import log
from builder.deploy import backup, controller, vmdatabase, wait
from builder.deploy.context import Context
from builder.deploy.steps import storage
from builder.deploy.steps.base import Action, Step
from builder.errors import die

UNIT = "linstor-controller.service"
DATABASE_TOOL = "usr/share/linstor-server/bin/linstor-database"


class Handover(Step):
    key = "handover"
    title = "Stop the controller on this node and back up its files"

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        here = f.local.name
        folder = f"/{o.state_dir.relative_to(o.root)}/backup-{o.vmid}-<time>"
        actions = [
            Action(here, f"LINSTOR API at {f.host_endpoint}: record the node list"),
            Action(here, f"systemctl disable --now {UNIT}"),
            Action(here, f"copy /var/lib/linstor and /etc/linstor to {folder} with SHA256SUMS, and "
                         f"/{storage.CONFIG} as it was before the deploy"),
        ]
        if o.host_path(DATABASE_TOOL).exists():
            actions.append(Action(here, f"/{DATABASE_TOOL} export-db {folder}/linstor-database-export.json"))
        return actions

    def still_done(self, ctx: Context) -> bool:
        folder = ctx.j.record(self.key).get("backup")
        return bool(folder) and backup.complete(Path(str(folder))) and not ctx.pve.unit_active(ctx.f.local, UNIT)

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        local = f.local
        states = ctx.transport.script(local, 'systemctl is-active "$1"; systemctl is-enabled "$1"', UNIT,
                                      check=False).stdout.split()  # fmt: skip
        active, enabled = (states + ["", ""])[:2]
        if active == "active":
            with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
                nodes = [{"name": n.name, "type": n.type} for n in ctrl.nodes()]
                version = ctrl.version()
            ctx.j.set_fact("nodes_before", nodes)
            ctx.j.set_fact("controller_version", version)
        elif ctx.j.fact("nodes_before") is None:
            die("the LINSTOR controller on this node is not running, so the node list cannot be recorded",
                hint="start it with 'systemctl start linstor-controller' and run the deploy again")
        was_enabled = ctx.j.record(self.key).get("was_enabled", enabled == "enabled")
        # Noted before the stop: a kill right after it must still lead a rollback to start the controller.
        ctx.j.note(self.key, was_enabled=was_enabled, stopped=True)
        ctx.pve.systemctl(local, "disable", "--now", UNIT)
        # storage.cfg as the journal took it before the deploy's first `pvesm set` (which drops comments).
        before = ctx.j.fact("storage_cfg", storage.original(o.root))
        extra = {storage.CONFIG: str(before).encode()} if before is not None else {}
        folder = backup.create(o.root, o.state_dir, o.vmid, extra)
        ctx.j.note(self.key, backup=str(folder))
        log.info(f"backed up /var/lib/linstor and /etc/linstor to {folder}")
        record: dict[str, Any] = {"was_enabled": was_enabled, "stopped": True, "backup": str(folder)}
        tool = o.host_path(DATABASE_TOOL)
        if tool.exists():
            export = folder / "linstor-database-export.json"
            ctx.transport.run(local, [str(tool), "export-db", str(export)])
            record["export"] = str(export)
        return record

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = [f"{ctx.f.local.name}: linstor-controller stopped and disabled"]
        if record.get("export"):
            lines.append(f"database exported to {record['export']}")
        return lines

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        local = ctx.pve.local
        carried = ctx.j.fact("vm_database")
        lines = [vmdatabase.put_on_host(ctx, carried, record)] if carried else []
        if record.get("was_enabled", True):
            ctx.pve.systemctl(local, "enable", UNIT, check=False)
        ctx.pve.systemctl(local, "start", UNIT)
        endpoint = controller.host_endpoint(ctx.options.root)
        wait.until(lambda: controller.probe(ctx.directory, endpoint), timeout=120,
                   what=f"the LINSTOR controller on {local.name} answering at {endpoint}",
                   hint="check 'systemctl status linstor-controller' and its log", interval=0.5)  # fmt: skip
        which = "the VM's database" if carried else "its own database"
        return [*lines, f"{local.name}: linstor-controller enabled and running again on {which}"]
