"""Rolling a deploy back: the host's controller runs again on its own, untouched database.

Steps are undone in reverse order, so the VM (and its controller) is stopped before the controller on
this node starts again: two controllers must never run at once. The VM, its disk resource, the
Controller node registration and the database backup stay for inspection; the report says how to
remove them. The rollback stops at the first undo that fails, because continuing could start a second
controller; it can be repeated once the cause is fixed.
"""

from __future__ import annotations

from builder import log
from builder.deploy.context import Context
from builder.deploy.steps import ALL
from builder.errors import ApplianceError, die


def run(ctx: Context) -> list[str]:
    journal = ctx.j
    if journal.status == "completed":
        log.warn("this deploy completed: changes made through the controller in the VM since then are not "
                 "carried back to this node's database")  # fmt: skip
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
    return lines
