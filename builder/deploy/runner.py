"""The order of a deploy: journal state, preflight, plan, the steps, and the rollback when it fails."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NoReturn

from builder import log, slots, testpoint
from builder import run as commands
from builder.deploy import inject, plan, preflight, rollback, signals, stepper, vmdatabase
from builder.deploy import journal as journals
from builder.deploy.context import Context
from builder.deploy.controller import Directory
from builder.deploy.journal import Journal
from builder.deploy.options import Mode, Options, merge_with_journal
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps import ALL, Step
from builder.deploy.steps.storage import original as original_storage_cfg
from builder.errors import ApplianceError, die


def run(options: Options, directory: Directory | None = None, explicit: Iterable[str] = ()) -> int:
    """The deploy, with SIGHUP, SIGTERM and SIGINT turned into a stop the failure path handles (see signals)."""
    commands.own_process_group(True)
    try:
        with signals.interruptible():
            return _run(options, directory, explicit)
    finally:
        commands.own_process_group(False)


def _run(options: Options, directory: Directory | None, explicit: Iterable[str]) -> int:
    directory = directory or Directory()
    transport = Transport(options.root, options.ssh_options)
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    path = journals.path_for(options.state_dir, options.vmid)
    recorded = Journal.load(path)
    vmid = options.vmid

    if options.mode is Mode.rollback:
        if recorded is None:
            die(f"no deploy of VM {vmid} is recorded in {path}", hint="check --vmid")
        if recorded.status == "rolled-back":
            log.info(f"the deploy of VM {vmid} was already rolled back")
            return 0
        recorded_options = Options.from_json(recorded.options, options.root)
        ctx = Context(merge_with_journal(options, recorded_options, set()), pve, transport, directory, recorded)
        # A rollback asked for runs to its end: signals are only noted (see signals).
        with signals.deferred() as received, journals.exclusive(options.state_dir, vmid):
            _learn_local_node(ctx)
            _refuse_after_upgrade(ctx)
            release_device(ctx)  # what a killed deploy left mounted
            _rollback(ctx)
        _report_rollback(ctx, received)
        return 0

    if options.mode is Mode.resume:
        if recorded is None:
            die(f"there is no deploy of VM {vmid} to resume", hint="start one without --resume")
        if recorded.status == "completed":
            die(f"the deploy of VM {vmid} already completed", hint="nothing to resume")
        if recorded.status == "rolled-back":
            die(f"the deploy of VM {vmid} was rolled back", hint="start a new deploy without --resume")
        options = merge_with_journal(options, Options.from_json(recorded.options, options.root), set(explicit))
    elif recorded is not None and recorded.status in ("running", "failed", "rollback-failed"):
        die(f"an earlier deploy of VM {vmid} did not finish ({recorded.status})",
            hint=f"continue it with --resume or undo it with --rollback (journal: {path})")
    elif recorded is not None and recorded.status == "completed":
        die(f"VM {vmid} was already deployed ({recorded.data.get('completed_at')})",
            hint="to deploy again, roll back first with --rollback")

    ctx = Context(options, pve, transport, directory, recorded if options.mode is Mode.resume else None)
    with log.step("Preflight"):
        findings, facts = preflight.Preflight(options, pve, transport, directory, ctx.journal).run()
        preflight.report(findings)
    if facts is None:
        count = len(findings.problems)
        die(f"preflight found {count} problem{'s' if count != 1 else ''} (listed above); nothing was changed",
            hint="fix them and run the deploy again")
    ctx.facts = facts
    # A new deploy writes its image over the VM disk an earlier one may have left with a newer database.
    at_risk = vmdatabase.check_redeploy(ctx) if options.mode is not Mode.resume else None
    steps = [step for step in ALL if step.applies(ctx)]
    plan.show(ctx, steps)
    if options.mode is Mode.dry_run:
        log.info("dry run: nothing was changed")
        return 0

    with journals.exclusive(options.state_dir, vmid):
        if options.mode is Mode.resume:
            ctx.journal = recorded
            ctx.j.new_attempt()
        else:
            # Kept (and verified) before anything changes, so a failure here leaves no journal behind.
            kept = vmdatabase.keep_replaced(ctx, at_risk) if at_risk is not None else None
            if recorded is not None:
                # A rolled-back earlier deploy: keep its journal beside the new one.
                os.replace(path, path.with_name(f"{path.stem}.rolled-back-{recorded.data.get('rolled-back_at', 'x')}"
                                                f".json".replace(":", "")))  # fmt: skip
            ctx.journal = Journal.create(path, options.to_json())
            ctx.j.set_fact("linstor_version", facts.linstor_version)
            ctx.j.set_fact("storage_cfg", original_storage_cfg(options.root))
            if kept is not None:
                ctx.j.set_fact("replaced_vm_database", str(kept))
        stepper.run_steps(ctx, steps, failed)
    report(ctx, steps)
    return 0


def _learn_local_node(ctx: Context) -> None:
    """The rollback's name for this node, if the cluster answers (the undo steps work without it)."""
    try:
        status = ctx.pve.cluster_status()
    except ApplianceError:
        return
    ctx.pve.local = Node(status.local.name, status.local.ip, local=True)


def _refuse_after_upgrade(ctx: Context) -> None:
    """An upgrade may have moved the VM to its second disk; this rollback knows the deploy's disk only, which then
    holds an older database (or nothing)."""
    try:
        config = ctx.pve.vm_config(ctx.options.vmid)
    except ApplianceError:
        return
    booted = slots.booted(config)
    if booted is not None and booted != ctx.options.resource:
        die(f"VM {ctx.options.vmid} boots from {booted} since an upgrade, not from the deploy's disk "
            f"{ctx.options.resource}, whose database is older; nothing was rolled back",
            hint=f"switch back first with 'linstor-appliance upgrade --vmid {ctx.options.vmid} --rollback' (before "
                 "--commit), or move the controller with 'linstor-appliance restore --to-host'")  # fmt: skip


def failed(ctx: Context, number: int, step: Step, error: BaseException) -> NoReturn:
    # From here to the end, signals no longer stop anything: the journal, the cleanup and a rollback run to the end.
    with signals.deferred() as received:
        _failed(ctx, number, step, error, received)


def _failed(ctx: Context, number: int, step: Step, error: BaseException, received: list[str]) -> NoReturn:
    message, hint = stepper.describe(error)
    verb = "was" if isinstance(error, KeyboardInterrupt) else "failed:"
    what = f"step {number} ({step.title}) {verb} {message}"
    ctx.j.set_status("failed", error=message, failed_step=step.key)
    release_device(ctx)
    if not ctx.j.touched("handover"):
        die(what, hint=(f"{hint}; then " if hint else "") + f"continue with 'linstor-appliance deploy --vmid "
            f"{ctx.options.vmid} --resume', or undo with --rollback")  # fmt: skip
    log.warn(what)
    log.warn("the controller on this node is stopped, so the deploy rolls back now")
    testpoint.reached("rollback")
    try:
        _rollback(ctx)
    except ApplianceError as rollback_error:
        die(f"{what}; the rollback failed too: {rollback_error.message}", hint=rollback_error.hint)
    _report_rollback(ctx, received)
    which = "the database taken out of the VM" if ctx.j.fact("vm_database") else "its own database"
    die(f"{what}; rolled back: the LINSTOR controller on this node runs again on {which}",
        hint=(f"{hint}; " if hint else "") + "the VM and its disk were kept for inspection (see above)")


def release_device(ctx: Context) -> None:
    """Loop devices and mounts of the VM disk that a stopped step left (it also ends this node's auto-promoted
    DRBD Primary role, which lasts as long as something holds the device open)."""
    device = ctx.options.host_path(ctx.options.device)
    try:
        released = inject.release_stale(device)
    except Exception as error:  # noqa: BLE001 - a cleanup that fails must not hide the failure being handled
        log.warn(f"could not check {ctx.options.device} for loop devices: {error}")
        return
    if released:
        log.info(f"released {', '.join(released)} (attached to {ctx.options.device})")


def _rollback(ctx: Context) -> None:
    """rollback.run, with any error the undo steps did not foresee recorded in the journal as well."""
    try:
        rollback.run(ctx)
    except ApplianceError:
        raise
    except Exception as error:
        ctx.j.set_status("rollback-failed", error=f"{type(error).__name__}: {error}")
        die(f"the rollback stopped on an unexpected error: {type(error).__name__}: {error}",
            hint=f"run 'linstor-appliance --debug deploy --vmid {ctx.options.vmid} --rollback' to see where, and "
                 "report it")  # fmt: skip


def report(ctx: Context, steps: list[Step]) -> None:
    o = ctx.options
    lines = [f"VM {o.vmid} ({o.name}) runs the LINSTOR controller at {ctx.f.appliance_endpoint}, "
             f"LINSTOR {ctx.f.linstor_version}. What changed:"]  # fmt: skip
    for step in steps:
        for line in step.summary(ctx, ctx.j.record(step.key)):
            lines.append(f"  - {line}")
    backup = ctx.j.record("handover").get("backup")
    lines.append(f"Backup of the old controller's files: {backup}")
    lines.append(f"Journal: {ctx.j.path}")
    lines.append(f"To roll back: linstor-appliance deploy --vmid {o.vmid} --rollback")
    # After a total outage Proxmox starts guests before this VM's controller answers; the cold-start
    # helper is a separate, reversible change to every node, so it is offered rather than done here.
    lines.append("Next, on every node: linstor-appliance coldstart install (guests on DRBD storage then wait for "
                 "this controller after a cluster-wide outage; see docs/coldstart.md)")
    log.write(sys.stdout, "\n".join(lines))


def _report_rollback(ctx: Context, received: list[str] | None = None) -> None:
    lines = ["Rolled back. Kept for inspection, and how to remove it:"]
    lines += [f"  - {line}" for line in rollback.leftovers(ctx)]
    if received:
        lines.append(f"(ignored {', '.join(received)} while rolling back)")
    log.write(sys.stdout, "\n".join(lines))
