"""Step 10: every drbd storage entry points at the VM's controller, changed with `pvesm set` only."""

from __future__ import annotations

from typing import Any

from builder.deploy import storagecfg
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step


class Storage(Step):
    key = "storage"
    title = "Point the Proxmox storage plugin at the VM's controller"

    def _ip(self, ctx: Context) -> str:
        assert ctx.options.address is not None
        return str(ctx.options.address.ip)

    def describe(self, ctx: Context) -> list[Action]:
        return [Action(ctx.f.local.name, f"pvesm set {e.id} --controller {self._ip(ctx)}"
                                         f"   (now: {e.options.get('controller', 'unset')})")
                for e in ctx.f.drbd_entries]  # fmt: skip

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
