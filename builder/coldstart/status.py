"""coldstart status: per guest, what it is waiting for before it can run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.coldstart import guests, layout, probe, pveconf
from builder.coldstart.record import ClusterRecord, NodeRecord
from builder.coldstart.settings import Settings
from builder.run import run


@dataclass
class View:
    """Everything the explanations need, gathered once."""

    node: str
    settings: Settings
    installed_here: bool
    cluster: ClusterRecord | None
    drbd: dict[str, pveconf.Storage]
    answering: dict[str, str | None]
    ha: dict[int, dict[str, str]]
    runtime: dict[int, dict[str, object]]
    refused_here: dict[int, float] = field(default_factory=dict)

    @property
    def hook(self) -> str:
        return guests.volid(self.cluster.snippets_storage if self.cluster else self.settings.snippets_storage)

    def silent(self, stores: list[str]) -> list[str]:
        return [s for s in stores if not self.answering.get(s)]

    def describe(self, stores: list[str]) -> str:
        return "; ".join(f"{s} ({', '.join(self.drbd[s].controllers)})" for s in stores)


def gather(root: Path) -> View:
    record = NodeRecord.load(root)
    settings = Settings.from_json(record.settings) if record else Settings()
    drbd = pveconf.drbd_storages(root)
    answering = {sid: probe.answering(root, storage, settings.probe_timeout) for sid, storage in drbd.items()}
    runtime: dict[int, dict[str, object]] = {}
    result = run(["pvesh", "get", "/cluster/resources", "--type", "vm", "--output-format", "json"], check=False,
                 capture=True)  # fmt: skip
    if result.returncode == 0 and result.stdout.strip():
        runtime = {int(e["vmid"]): e for e in json.loads(result.stdout) if e.get("type") == "qemu"}
    refused: dict[int, float] = {}
    for marker in sorted(layout.at(root, layout.RUN_DIR + "/refused").glob("*")):
        if marker.name.isdigit():
            words = marker.read_text().split()
            refused[int(marker.name)] = float(words[0]) if words and words[0].isdigit() else marker.stat().st_mtime
    return View(node=pveconf.local_node(root), settings=settings, installed_here=record is not None,
                cluster=ClusterRecord.load(root), drbd=drbd, answering=answering, ha=pveconf.ha_resources(root),
                runtime=runtime, refused_here=refused)  # fmt: skip


def explain(guest: pveconf.Guest, view: View, controller_vmid: int | None) -> str:
    status = str(view.runtime.get(guest.vmid, {}).get("status", "unknown"))
    if guest.vmid == controller_vmid:
        warning = f" - but it carries the hookscript {guest.hookscript}!" if guest.hookscript else ""
        disks = ", ".join(f"/dev/drbd/by-res/{r}/0" for r in guest.drbd_paths())
        return (f"nothing: the controller VM (disk {disks} by path, up at boot from its kept .res file; "
                f"no hook){warning}")
    stores = sorted(guest.storage_ids() & set(view.drbd))
    if not stores:
        return "nothing: no disk on DRBD storage"
    if status == "running":
        return "nothing: running"
    silent = view.silent(stores)
    gated = guest.hookscript == view.hook
    refused = view.refused_here.get(guest.vmid)
    note = f" (refused at {time.strftime('%H:%M:%S', time.localtime(refused))} on {view.node})" if refused else ""
    interval = view.settings.retry_interval
    if guest.vmid in view.ha:
        state = str(view.runtime.get(guest.vmid, {}).get("hastate", "unknown"))
        if state in ("stopped", "disabled"):
            return f"nothing: HA state {state}, not requested to run"
        if not gated:
            reason = f"a controller of {view.describe(silent)}" if silent else f"HA (state {state})"
            return f"{reason}; NOT gated: HA gives up after max_restart/max_relocate and leaves it in error"
        if silent:
            return (f"a controller of {view.describe(silent)} to answer /health; until then the hook refuses it "
                    f"(HA state {state}), then linstor-coldstart-retry on {guest.node} clears a HA error{note}")
        if state == "error":
            return (f"linstor-coldstart-retry on {guest.node} to clear the HA error (every {interval}s) if the hook "
                    f"caused it; otherwise: ha-manager set vm:{guest.vmid} --state disabled, then --state "
                    f"started{note}")  # fmt: skip
        return f"HA to start it (state {state}); a controller answers{note}"
    if not guest.onboot:
        refusal = f"; its start is refused until {view.describe(silent)} answers" if gated and silent else ""
        return f"nothing: not started at boot (onboot 0){refusal}{note}"
    if not gated:
        return f"pve-guests on {guest.node} at boot; NOT gated, so it fails while no controller answers"
    if silent:
        return (f"a controller of {view.describe(silent)}: pve-guests on {guest.node} waits up to "
                f"{view.settings.boot_wait}s at boot, then linstor-coldstart-retry starts it once one answers{note}")
    if refused:
        return f"linstor-coldstart-retry on {guest.node} to start it (every {interval}s){note}"
    return f"nothing: a controller answers; pve-guests on {guest.node} starts it at boot"


def report(root: Path) -> list[str]:
    view = gather(root)
    nodes = pveconf.cluster_nodes(root)
    cluster = view.cluster
    controller_vmid = cluster.controller_vmid if cluster else view.settings.controller_vmid
    if controller_vmid is None:
        # Not installed yet: the one guest with a disk attached by DRBD device path, if there is one.
        by_path = [g.vmid for g in pveconf.guests(root).values() if g.drbd_paths()]
        controller_vmid = by_path[0] if len(by_path) == 1 else None
    lines = []
    if view.installed_here:
        s = view.settings
        lines.append(f"node {view.node}: installed (boot wait {s.boot_wait}s, hook wait {s.hook_wait}s, "
                     f"retry every {s.retry_interval}s)")  # fmt: skip
    else:
        lines.append(f"node {view.node}: not installed (linstor-appliance coldstart install)")
    if cluster is None:
        lines.append("cluster: not installed on any node; no guest is gated")
    else:
        missing = [n for n in nodes if n not in cluster.nodes]
        todo = f"; missing on {', '.join(missing)}, so no guest is gated yet" if missing and not cluster.hooks else ""
        lines.append(f"cluster: installed on {', '.join(sorted(cluster.nodes)) or 'no node'}{todo}; "
                     f"{len(cluster.hooks)} guests carry the hook {view.hook}")  # fmt: skip
    for sid, storage in view.drbd.items():
        answer = view.answering[sid]
        state = f"{answer} answers /health" if answer else "no controller answers /health"
        lines.append(f"storage {sid}: controllers {', '.join(storage.controllers)}: {state}")
    rows = [("VMID", "NAME", "NODE", "STATUS", "HA", "WAITS FOR")]
    for guest in pveconf.guests(root).values():
        runtime = view.runtime.get(guest.vmid, {})
        ha_state = str(runtime.get("hastate", "managed")) if guest.vmid in view.ha else "-"
        rows.append((str(guest.vmid), guest.name, guest.node, str(runtime.get("status", "unknown")), ha_state,
                     explain(guest, view, controller_vmid)))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines.append("")
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return lines
