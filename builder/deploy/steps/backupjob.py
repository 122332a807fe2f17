"""Step 11 (optional): a scheduled vzdump job for the controller VM (proxmox.md section 7)."""

from __future__ import annotations

import shlex
from typing import Any

from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step


def job_id(ctx: Context) -> str:
    return f"linstor-appliance-{ctx.options.vmid}"


def arguments(ctx: Context) -> list[str]:
    o = ctx.options
    assert o.backup_storage is not None
    return ["--id", job_id(ctx), "--schedule", o.backup_schedule, "--vmid", str(o.vmid), "--storage",
            o.backup_storage, "--mode", "snapshot", "--compress", "zstd", "--enabled", "1",
            "--comment", "LINSTOR controller VM (linstor-appliance)", "--prune-backups", "keep-last=7"]  # fmt: skip


class BackupJob(Step):
    key = "backupjob"
    title = "Schedule backups of the VM"

    def applies(self, ctx: Context) -> bool:
        return ctx.options.backup_storage is not None

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(ctx.f.local.name, shlex.join(["pvesh", "create", "/cluster/backup", *arguments(ctx)]))]

    def still_done(self, ctx: Context) -> bool:
        return job_id(ctx) in ctx.pve.backup_jobs()

    def apply(self, ctx: Context) -> dict[str, Any]:
        if job_id(ctx) not in ctx.pve.backup_jobs():
            ctx.pve.pvesh("create", "/cluster/backup", *arguments(ctx))
        return {"job": job_id(ctx)}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"backup job {record.get('job')}: {ctx.options.backup_schedule} to {ctx.options.backup_storage}"]

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        job = record.get("job") or job_id(ctx)
        if job in ctx.pve.backup_jobs():
            ctx.pve.pvesh("delete", f"/cluster/backup/{job}")
        return [f"backup job {job} deleted"]
