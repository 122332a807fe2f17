"""The order of a restore: the deploy's journal for the VM's settings, the backup checked, the cluster as it
is now, then a step list run under its own journal (`restore-<vmid>.json`), resumable like a deploy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from builder import log
from builder.deploy import journal as journals
from builder.deploy import stepper
from builder.deploy.context import Context
from builder.deploy.controller import Directory
from builder.deploy.journal import Journal
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps import Step
from builder.deploy.steps.disk import Disk
from builder.deploy.steps.handover import Handover
from builder.deploy.steps.image import Image
from builder.deploy.steps.inject import Inject
from builder.deploy.steps.start import Start
from builder.deploy.steps.storage import Storage
from builder.deploy.steps.units import Units
from builder.deploy.steps.verify import Verify
from builder.deploy.steps.vm import Vm
from builder.errors import die
from builder.restore import facts, source
from builder.restore.options import Mode, Options
from builder.restore.steps import HostController, HostStorage, Park, Stage

# The VM back: a controller here on the backup makes the disk resource whole again, then the deploy's own
# steps rebuild the VM around it and hand the database over, as on the first deploy.
FULL: tuple[Step, ...] = (Stage(), Disk(), Vm(), Image(), Units(), Handover(), Inject(), Start(), Verify(), Storage())
TO_HOST: tuple[Step, ...] = (Park(), HostController(), HostStorage())


def path_for(state_dir: Path, vmid: int) -> Path:
    return state_dir / f"restore-{vmid}.json"


def run(options: Options, directory: Directory | None = None) -> int:
    directory = directory or Directory()
    vmid = options.vmid
    deployed = Journal.load(journals.path_for(options.state_dir, vmid))
    if deployed is None:
        die(f"no deploy of VM {vmid} is recorded on this node ({journals.path_for(options.state_dir, vmid)})",
            hint="restore on the node the deploy ran on, or copy its deploy journal to this node first")
    path = path_for(options.state_dir, vmid)
    recorded = Journal.load(path)
    if options.mode is Mode.resume:
        if recorded is None or recorded.status == "completed":
            die(f"there is no unfinished restore of VM {vmid} to resume", hint="start one without --resume")
        given = options
        options = replace(Options.from_json(recorded.options, options.root), wait_timeout=given.wait_timeout,
                          ssh_options=given.ssh_options, mode=Mode.resume)  # fmt: skip
        chosen = source.verified(Path(str(recorded.fact("backup"))))
    else:
        if recorded is not None and recorded.status in ("running", "failed"):
            die(f"an earlier restore of VM {vmid} did not finish ({recorded.status})",
                hint=f"continue it with --resume (journal: {path})")
        chosen = source.choose(options)
    log.info(f"backup: {chosen.path} (SHA-256 {chosen.sha256[:12]}, checked)")
    transport = Transport(options.root, options.ssh_options)
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    deploy_options = facts.deploy_options(deployed.options, options.root, options.image, options.wait_timeout,
                                          options.ssh_options)  # fmt: skip
    ctx = Context(deploy_options, pve, transport, directory)
    with log.step("Preflight"):
        ctx.facts = facts.gather(deploy_options, pve, transport, directory, vm_disk=not options.to_host)
    steps = list(TO_HOST if options.to_host else FULL)
    if deploy_options.image is None:
        steps = [step for step in steps if not isinstance(step, Image)]
    with journals.exclusive(options.state_dir, vmid):
        if options.mode is Mode.resume and recorded is not None:
            ctx.journal = recorded
            ctx.j.new_attempt()
        else:
            if recorded is not None:
                recorded.path.replace(path.with_name(f"{path.stem}.{str(recorded.data.get('started_at', 'x'))}.json"
                                                     .replace(":", "")))  # fmt: skip
            ctx.journal = Journal.create(path, options.to_json())
            ctx.j.set_fact("backup", str(chosen.path))
        show_plan(ctx, steps)
        stepper.run_steps(ctx, steps, failed)
    report(ctx, steps, options)
    return 0


def show_plan(ctx: Context, steps: list[Step]) -> None:
    lines = [f"Plan: restore VM {ctx.options.vmid} from {ctx.j.fact('backup')}"]
    for number, step in enumerate(steps, 1):
        state = ctx.j.state(step.key)
        note = {"done": " (done)", "started": " (interrupted; repeated)"}.get(state or "", "")
        lines.append(f"{number:>2}. {step.title}{note}")
        lines += [f"      [{action.node}] {action.text}" for action in step.describe(ctx)]
    print("\n".join(lines), flush=True)


def failed(ctx: Context, number: int, step: Step, error: BaseException) -> NoReturn:
    message, hint = stepper.describe(error)
    ctx.j.set_status("failed", error=message, failed_step=step.key)
    die(f"restore step {number} ({step.title}) failed: {message}",
        hint=(f"{hint}; then " if hint else "") + f"continue with 'linstor-appliance restore --vmid "
             f"{ctx.options.vmid} --resume' (journal: {ctx.j.path})")  # fmt: skip


def report(ctx: Context, steps: list[Step], options: Options) -> None:
    o = ctx.options
    if options.to_host:
        head = (f"The LINSTOR controller runs on {ctx.f.local.name} again; VM {o.vmid} is stopped and out of HA. "
                "What changed:")  # fmt: skip
    else:
        head = f"VM {o.vmid} ({o.name}) runs the LINSTOR controller at {ctx.f.appliance_endpoint} again. What changed:"
    lines = [head]
    for step in steps:
        lines += [f"  - {line}" for line in step.summary(ctx, ctx.j.record(step.key))]
    lines.append(f"Journal: {ctx.j.path}")
    print("\n".join(lines), flush=True)
