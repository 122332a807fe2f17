"""Step 10: every drbd storage entry points at the VM's controller, changed with `pvesm set` only.

`pvesm set` makes Proxmox write the whole file anew: comments and keys it does not know are dropped
(proxmox.md section 3). The file as it was before the deploy is kept in the step 6 backup, and the
plan says when comments will go.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from builder.deploy import storagecfg
from builder.deploy.context import Context
from builder.deploy.options import Strategy
from builder.deploy.steps.base import Action, Step

CONFIG = "etc/pve/storage.cfg"


def original(root: Path) -> str | None:
    """storage.cfg as it is now, for the deploy's backup before the first `pvesm set`."""
    try:
        return (root / CONFIG).read_text()
    except FileNotFoundError:
        return None


def rewrite_note(ctx: Context) -> list[Action]:
    """A plan line when `pvesm set` will drop comments from storage.cfg."""
    text = original(ctx.options.root) or ""
    count = sum(1 for line in text.splitlines() if re.match(r"^\s*#", line))
    if not count:
        return []
    return [Action(ctx.f.local.name, f"note: pvesm set rewrites /{CONFIG} without its {count} comment line"
                                     f"{'s' if count != 1 else ''} (Proxmox keeps none); the file as it was before "
                                     "the deploy is kept in the journal and the step 6 backup")]  # fmt: skip


class Storage(Step):
    key = "storage"
    title = "Point the Proxmox storage plugin at the VM's controller"

    def _ip(self, ctx: Context) -> str:
        assert ctx.options.address is not None
        return str(ctx.options.address.ip)

    def describe(self, ctx: Context) -> list[Action]:
        actions = [Action(ctx.f.local.name, f"pvesm set {e.id} --controller {self._ip(ctx)}"
                                             f"   (now: {e.options.get('controller', 'unset')})")
                   for e in ctx.f.drbd_entries]  # fmt: skip
        # With controllervm, step 1 rewrites the file first and says so there.
        return actions + (rewrite_note(ctx) if ctx.options.strategy is Strategy.device_path else [])

    def still_done(self, ctx: Context) -> bool:
        entries = storagecfg.drbd_entries(storagecfg.read(ctx.options.root))
        return all(e.options.get("controller") == self._ip(ctx) for e in entries)

    def apply(self, ctx: Context) -> dict[str, Any]:
        ip = self._ip(ctx)
        previous: dict[str, str | None] = dict(ctx.j.record(self.key).get("previous", {}))
        for entry in storagecfg.drbd_entries(storagecfg.read(ctx.options.root)):
            if entry.id not in previous:
                # Recorded before the change, so a kill in between still knows what to restore.
                previous[entry.id] = entry.options.get("controller")
                ctx.j.note(self.key, previous=previous)
            if entry.options.get("controller") != ip:
                ctx.pve.pvesm_set(entry.id, {"controller": ip})
        return {"previous": previous, "controller": ip}

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"storage {storage}: controller {old or '(unset)'} -> {record.get('controller')}"
                for storage, old in record.get("previous", {}).items()]

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        lines = []
        for storage, old in record.get("previous", {}).items():
            if old:
                ctx.pve.pvesm_set(storage, {"controller": old})
            else:
                ctx.pve.pvesm_set(storage, {}, delete=("controller",))
            lines.append(f"storage {storage}: controller {old or '(unset)'} again")
        return lines
