"""The order of an upgrade: the deploy's journal for the VM's settings, preflight, plan, the steps under their
own journal (`upgrade-<vmid>.json`, resumable like a deploy), and the switch back when the new controller fails.

Journal status: `running`/`failed` (continue with --resume), `completed` (the new disk runs; the old one is
kept until --commit), `rolled-back` (the old disk runs again), `committed` (the old disk is freed).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from builder import log, slots, testpoint
from builder import run as commands
from builder.backup import take as backups
from builder.backup.options import DEFAULT_KEEP
from builder.backup.options import Mode as BackupMode
from builder.backup.options import Options as BackupOptions
from builder.coldstart import remote as coldstart
from builder.deploy import controller, signals, stepper, wait
from builder.deploy import journal as journals
from builder.deploy.controller import Directory
from builder.deploy.journal import Journal
from builder.deploy.options import Options as DeployOptions
from builder.deploy.preflight import report as report_findings
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps import Step
from builder.errors import ApplianceError, die
from builder.status.checks import COLDSTART_MARKER
from builder.upgrade import rollback
from builder.upgrade.context import Target, UpgradeContext
from builder.upgrade.options import Mode, Options
from builder.upgrade.preflight import UpgradePreflight, deploy_options
from builder.upgrade.steps import ALL, STOPS, Disk


def path_for(state_dir: Path, vmid: int) -> Path:
    return slots.journal_path(state_dir, vmid)


def run(options: Options, directory: Directory | None = None) -> int:
    """The upgrade, with SIGHUP, SIGTERM and SIGINT turned into a stop the failure path handles (as the deploy)."""
    commands.own_process_group(True)
    try:
        with signals.interruptible():
            return _run(options, directory or Directory())
    finally:
        commands.own_process_group(False)


def _run(options: Options, directory: Directory) -> int:
    vmid = options.vmid
    deployed = Journal.load(journals.path_for(options.state_dir, vmid))
    if deployed is None or deployed.status != "completed":
        die(f"no completed deploy of VM {vmid} is recorded in {journals.path_for(options.state_dir, vmid)}",
            hint="upgrade on the node the deploy ran on")  # fmt: skip
    path = path_for(options.state_dir, vmid)
    recorded = Journal.load(path)
    unfinished = recorded is not None and recorded.status in ("running", "failed")
    if options.mode in (Mode.rollback, Mode.commit, Mode.resume):
        if recorded is None:
            die(f"no upgrade of VM {vmid} is recorded in {path}", hint="check --vmid")
        if options.mode is Mode.resume and not unfinished:
            die(f"the upgrade of VM {vmid} is not unfinished ({recorded.status})", hint="nothing to resume")
        if recorded.status in ("rolled-back", "committed") and options.mode is not Mode.resume:
            log.info(f"the upgrade of VM {vmid} was already {recorded.status.replace('-', ' ')}")
            return 0
        given = options
        options = replace(Options.from_json(recorded.options, options.root), timeout=given.timeout,
                          ssh_options=given.ssh_options, mode=given.mode)  # fmt: skip
    elif unfinished or (recorded is not None and recorded.status == "rollback-failed"):
        assert recorded is not None
        die(f"an earlier upgrade of VM {vmid} did not finish ({recorded.status})",
            hint=f"continue it with --resume or switch back with --rollback (journal: {path})")
    elif recorded is not None and recorded.status == "completed":
        die(f"the upgrade of VM {vmid} to LINSTOR {recorded.fact('target', {}).get('to_version')} is pending commit",
            hint="keep it with 'linstor-appliance upgrade --vmid {vmid} --commit' (or undo it with --rollback) first"
                 .replace("{vmid}", str(vmid)))  # fmt: skip
    transport = Transport(options.root, options.ssh_options)
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    base = deploy_options(DeployOptions.from_json(deployed.options, options.root), options)
    fresh = options.mode in (Mode.upgrade, Mode.dry_run, Mode.prepare)
    if options.mode in (Mode.rollback, Mode.commit):
        base = replace(base, image=None)
    ctx = UpgradeContext(base, pve, transport, directory, recorded if not fresh else None,
                         satellites=options.satellites, timeout=options.timeout)  # fmt: skip
    with log.step("Preflight"):
        check = UpgradePreflight(options, base, pve, transport, directory, ctx.journal)
        facts, target = check.run(live=fresh)
        report_findings(check.found)
    if facts is None:
        count = len(check.found.problems)
        die(f"preflight found {count} problem{'s' if count != 1 else ''} (listed above); nothing was changed",
            hint="fix them and run the upgrade again")
    ctx.facts = facts
    if not fresh:
        assert recorded is not None
        ctx.target = Target.from_json(dict(recorded.fact("target")))
        with journals.exclusive(options.state_dir, vmid):
            if options.mode is Mode.rollback:
                return _on_request(ctx)
            if options.mode is Mode.commit:
                return commit(ctx, options)
            ctx.j.new_attempt()
            steps = [step for step in ALL if step.applies(ctx)]
            show_plan(ctx, steps)
            stepper.run_steps(ctx, steps, failed)
        report(ctx, steps)
        return 0
    assert target is not None
    ctx.target = target
    if options.mode is Mode.prepare:
        return prepare(ctx)
    steps = [step for step in ALL if step.applies(ctx)]
    show_plan(ctx, steps)
    if options.mode is Mode.dry_run:
        log.info("dry run: nothing was changed")
        return 0
    with journals.exclusive(options.state_dir, vmid):
        if recorded is not None:
            # A rolled-back or committed earlier upgrade: keep its journal beside the new one.
            recorded.path.replace(path.with_name(f"{path.stem}.{recorded.data.get('started_at', 'x')}.json"
                                                 .replace(":", "")))  # fmt: skip
        ctx.journal = Journal.create(path, options.to_json())
        ctx.j.set_fact("target", target.to_json())
        stepper.run_steps(ctx, steps, failed)
    report(ctx, steps)
    return 0


def prepare(ctx: UpgradeContext) -> int:
    """Only the second disk (step 2, which changes nothing the appliance uses), so no journal is needed."""
    disk = Disk()
    with journals.exclusive(ctx.options.state_dir, ctx.options.vmid), log.step(disk.title):
        record = disk.apply(ctx)
    o = ctx.options
    log.write(sys.stdout, f"Prepared: {record['resource']} (diskful on {', '.join(record['diskful'])}) waits for the "
                          f"new image; upgrade the satellites to LINSTOR {ctx.t.to_version}, then run "
                          f"'linstor-appliance upgrade --vmid {o.vmid} --image {o.image}'")  # fmt: skip
    return 0


def show_plan(ctx: UpgradeContext, steps: list[Step]) -> None:
    t = ctx.t
    lines = [f"Plan: upgrade VM {ctx.options.vmid} from LINSTOR {t.from_version} ({t.old_resource}) to "
             f"{t.to_version} ({t.new_resource}){', with the satellites on ' + ', '.join(t.pins) if t.pins else ''}"]
    for number, step in enumerate(steps, 1):
        state = ctx.journal.state(step.key) if ctx.journal else None
        note = {"done": " (done)", "started": " (interrupted; repeated)"}.get(state or "", "")
        lines.append(f"{number:>2}. {step.title}{note}")
        lines += [f"      [{action.node}] {action.text}" for action in step.describe(ctx)]
    lines.append(f"{len(steps) + 1:>2}. Report; keep the old disk until 'upgrade --commit'")
    print("\n".join(lines), flush=True)


def failed(ctx: UpgradeContext, number: int, step: Step, error: BaseException) -> NoReturn:
    # From here on signals stop nothing: the journal and a switch back run to their end.
    with signals.deferred() as received:
        _failed(ctx, number, step, error, received)


def _failed(ctx: UpgradeContext, number: int, step: Step, error: BaseException, received: list[str]) -> NoReturn:
    message, hint = stepper.describe(error)
    what = f"upgrade step {number} ({step.title}) failed: {message}"
    ctx.j.set_status("failed", error=message, failed_step=step.key)
    vmid = ctx.options.vmid
    if not ctx.j.touched(STOPS) or ctx.j.record("satellites").get("upgraded"):
        # The old controller still runs (or the new one runs with upgraded satellites): nothing to switch back.
        die(what, hint=(f"{hint}; then " if hint else "") + f"continue with 'linstor-appliance upgrade --vmid {vmid} "
            "--resume'" + ("" if ctx.j.touched(STOPS) else ", or give it up with --rollback"))  # fmt: skip
    log.warn(what)
    log.warn(f"switching VM {vmid} back to the old disk {ctx.t.old_resource}")
    testpoint.reached("rollback")
    try:
        version = rollback.switch_back(ctx, message)
    except ApplianceError as again:
        ctx.j.set_status("rollback-failed", error=f"{message}; switching back failed: {again.message}")
        die(f"{what}; switching back failed too: {again.message}",
            hint=(again.hint or "fix that") + f"; then 'linstor-appliance upgrade --vmid {vmid} --rollback'")
    if received:
        log.info(f"(ignored {', '.join(received)} while switching back)")
    die(f"{what}; rolled back: VM {vmid} runs LINSTOR {version} from {ctx.t.old_resource} with its database "
        "unchanged", hint=(f"{hint}; " if hint else "") + f"the new disk {ctx.t.new_resource} is kept for inspection")


def _on_request(ctx: UpgradeContext) -> int:
    rollback.refuse_after_satellites(ctx)
    with signals.deferred() as received:
        version = rollback.switch_back(ctx, "asked for (--rollback)")
    lines = [f"Rolled back: VM {ctx.options.vmid} runs LINSTOR {version} from {ctx.t.old_resource} again.",
             f"  - the new disk {ctx.t.new_resource} is kept; the next upgrade writes over it",
             f"Journal: {ctx.j.path}"]  # fmt: skip
    if received:
        lines.append(f"(ignored {', '.join(received)} while rolling back)")
    log.write(sys.stdout, "\n".join(lines))
    return 0


def commit(ctx: UpgradeContext, options: Options) -> int:
    """Keep the upgrade: a verified backup of the new controller's database, then the old disk freed."""
    o, t = ctx.options, ctx.t
    if ctx.j.status != "completed":
        die(f"the upgrade of VM {o.vmid} did not complete ({ctx.j.status})",
            hint="finish it with --resume first, or switch back with --rollback")
    if slots.booted(ctx.pve.vm_config(o.vmid)) != t.new_resource:
        die(f"VM {o.vmid} does not boot from {t.new_resource}", hint=f"check 'qm config {o.vmid}'")
    with log.step("Backing up the new controller's database"):
        # take.run stores the backup and reads it back (checked against its .sha256) in every place.
        backups.run(BackupOptions(vmid=o.vmid, storage=None, keep=DEFAULT_KEEP, max_age=24, mode=BackupMode.now,
                                  ssh_options=options.ssh_options, root=o.root), ctx.directory)  # fmt: skip
    with log.step(f"Freeing the old disk {t.old_resource}"), controller.connect(ctx.directory, ctx.endpoint) as ctrl:
        if ctrl.resource_definition(t.old_resource) is not None:
            ctrl.delete_definition(t.old_resource)
        # The old disk's boot unit would only fail at the next boot now.
        for facts in ctx.f.nodes:
            ctx.pve.systemctl(facts.node, "disable", f"drbd@{t.old_resource}.target", check=False)
        device = o.host_path(slots.device(t.old_resource))
        wait.until(lambda: not device.exists(), timeout=max(ctx.timeout, 60),
                   what=f"{slots.device(t.old_resource)} going away",
                   hint=f"check 'linstor resource list -r {t.old_resource}'", interval=0.5)  # fmt: skip
    # Before the status: a commit interrupted here is run again, and so is this.
    reinstalled, problems = reinstall_coldstart(ctx)
    ctx.j.set_status("committed")
    lines = [f"Committed: VM {o.vmid} runs LINSTOR {t.to_version} from {t.new_resource}; the old disk "
             f"{t.old_resource} was deleted after a verified backup."]  # fmt: skip
    if reinstalled:
        lines.append(f"The cold-start helper was installed again for {t.new_resource} on {', '.join(reinstalled)}.")
    log.write(sys.stdout, "\n".join(lines))
    # The commit stands (the old disk is gone); what is left is one command on each of these nodes.
    for problem in problems:
        log.warn(problem)
    return 0


def reinstall_coldstart(ctx: UpgradeContext) -> tuple[list[str], list[str]]:
    """Install the cold-start helper again where it is: it brings up, and waits for, the disk it was installed
    for, which is gone now. Install reads the VM's configuration (the new disk) and drops what named the old one.
    Returns the nodes where that worked, and a line for each node where it did not."""
    t = ctx.t
    found: list[tuple[Node, str]] = []
    problems: list[str] = []
    for facts in ctx.f.nodes:
        try:
            marker = ctx.transport.read_file(facts.node, COLDSTART_MARKER)
        except ApplianceError as error:
            problems.append(f"{facts.node.name}: cannot tell whether the cold-start helper is installed there "
                            f"({error.message}); if it is, run '{shlex.join(coldstart.COMMAND)}' on "
                            f"{facts.node.name}")  # fmt: skip
            continue
        if marker is not None:
            found.append((facts.node, marker))
    if not found:
        return [], problems
    done: list[str] = []
    with log.step(f"Installing the cold-start helper again for {t.new_resource}"):
        for node, marker in found:
            options = coldstart.recorded_options(marker)
            log.info(f"{node.name}: {shlex.join([*coldstart.COMMAND, *options])}")
            outcome = coldstart.install(ctx.transport, node, options)
            if outcome.ok:
                done.append(node.name)
                continue
            problems.append(f"{node.name}: the cold-start helper there may still wait for the deleted disk "
                            f"{t.old_resource} at boot, installing it again failed ({outcome.detail}); run "
                            f"'{outcome.command}' on {node.name}")  # fmt: skip
    return done, problems


def report(ctx: UpgradeContext, steps: list[Step]) -> None:
    o, t = ctx.options, ctx.t
    lines = [f"VM {o.vmid} runs LINSTOR {t.to_version} from {t.new_resource}. What changed:"]
    for step in steps:
        lines += [f"  - {line}" for line in step.summary(ctx, ctx.j.record(step.key))]
    lines.append(f"The old disk {t.old_resource} (LINSTOR {t.from_version}) is kept.")
    lines.append(f"To keep the upgrade: linstor-appliance upgrade --vmid {o.vmid} --commit")
    lines.append(f"To switch back:      linstor-appliance upgrade --vmid {o.vmid} --rollback")
    lines.append(f"Journal: {ctx.j.path}")
    log.write(sys.stdout, "\n".join(lines))
