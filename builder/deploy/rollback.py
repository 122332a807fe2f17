"""Rolling a deploy back: the host's controller runs again, on the cluster's current database.

Before the storage entries pointed at the VM's controller, that is this node's own, untouched
database. From then on (and so after every completed deploy) it is the one in the VM disk: the VM is
stopped first and its database taken out and kept (builder.deploy.vmdatabase), and the controller here
starts on exactly those bytes; if that cannot be done the rollback refuses and the VM runs on.

Steps are undone in reverse order, so the VM (and its controller) is stopped before the controller on
this node starts again: two controllers must never run at once. The VM, its disk resource, the
Controller node registration and the database backups stay for inspection; the report says how to
remove them. The rollback stops at the first undo that fails, because continuing could start a second
controller; it can be repeated once the cause is fixed.
"""

from __future__ import annotations

from builder import log
from builder.deploy import vmdatabase
from builder.deploy.context import Context
from builder.deploy.steps import ALL
from builder.errors import ApplianceError, die


def run(ctx: Context) -> list[str]:
    journal = ctx.j
    if vmdatabase.authoritative(journal) and journal.fact("vm_database") is None:
        vmdatabase.take_out(ctx)
    report: list[str] = []
    for step in reversed(ALL):
        if not journal.touched(step.key):
            continue
        try:
            with log.step(f"Undo: {step.title}"):
                lines = step.undo(ctx, journal.record(step.key))
        except Exception as error:
            # Also an error nobody foresaw (not an ApplianceError): the journal must say the rollback stopped.
            message = error.message if isinstance(error, ApplianceError) else f"{type(error).__name__}: {error}"
            hint = error.hint if isinstance(error, ApplianceError) else None
            journal.set_status("rollback-failed", error=str(error), failed_undo=step.key)
            die(f"rolling back '{step.title}' failed: {message}",
                hint=(hint + "; " if hint else "") + "then run "
                     f"'linstor-appliance deploy --vmid {ctx.options.vmid} --rollback' again")  # fmt: skip
        for line in lines:
            log.info(line)
        report += lines
        journal.mark_undone(step.key)
    journal.set_status("rolled-back")
    return report


def leftovers(ctx: Context) -> list[str]:
    """What a rollback leaves, and how to remove it once inspected."""
    o, journal = ctx.options, ctx.j
    lines = []
    if journal.touched("vm"):
        lines.append(f"VM {o.vmid}: qm set {o.vmid} --protection 0 && qm destroy {o.vmid}")
    if journal.touched("disk"):
        lines.append(f"its disk: linstor resource-definition delete {o.resource}")
    if journal.record("register").get("created"):
        lines.append(f"the Controller node: linstor node delete {o.name}")
    backup = journal.record("handover").get("backup")
    if backup:
        lines.append(f"the backup of the controller's files: {backup}")
    carried = journal.fact("vm_database") or {}
    for key, what in (("backup", "the database taken out of the VM (now this node's)"),
                      ("host_backup", "this node's files as they were before that")):  # fmt: skip
        if carried.get(key):
            lines.append(f"{what}: {carried[key]}")
    return lines
