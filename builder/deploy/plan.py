"""The plan: every step with the commands or API calls it makes and the node it makes them on."""

from __future__ import annotations

from builder.deploy.context import Context
from builder.deploy.steps import Step


def lines(ctx: Context, steps: list[Step]) -> list[str]:
    o, f = ctx.options, ctx.f
    out = [
        f"Plan: VM {o.vmid} '{o.name}' at {o.address} on bridge {o.bridge}, disk {f.disk_size // 2**20} MiB on "
        f"storage {f.storage.id} (strategy {o.strategy}, LINSTOR resource {o.resource}, {o.redundancy} diskful "
        f"replicas), LINSTOR {f.linstor_version}, nodes {', '.join(n.node.name for n in f.nodes)}",
    ]  # fmt: skip
    for number, step in enumerate(steps, 1):
        state = ctx.journal.state(step.key) if ctx.journal else None
        note = {"done": " (done)", "started": " (interrupted; repeated)"}.get(state or "", "")
        out.append(f"{number:>2}. {step.title}{note}")
        for action in step.describe(ctx):
            out.append(f"      [{action.node}] {action.text}")
    out.append(f"{len(steps) + 1:>2}. Report what changed, where the backup is, and how to roll back")
    return out


def show(ctx: Context, steps: list[Step]) -> None:
    print("\n".join(lines(ctx, steps)), flush=True)
