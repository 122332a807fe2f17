"""Proxmox VE HA (CRM + LRM), simulated as a state machine advanced by `tick()`.

Config: /etc/pve/ha/resources.cfg and groups.cfg (SectionConfig). Runtime: sim/ha.json, mirrored
into /etc/pve/ha/manager_status. Timing follows proxmox.md section 6.4 on the simulated clock:
requests are seen after `ha_delay`; a dead node's services show `fence` after 40 s and are
recovered 120 s after the node died (lock expiry); a node without quorum self-fences after 60 s.
Start failures: `max_restart` restarts on the node, then `max_relocate` other nodes, then `error`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from . import sectionconfig as sc
from . import vmconf, vms
from .sectionconfig import Opt, Prop
from .state import SimState

HA_FILE = "ha.json"
FENCE_AFTER = 40.0
RECOVER_AFTER = 120.0
SELF_FENCE_AFTER = 60.0

RESOURCES_SCHEMA = sc.Schema(
    properties={
        "state": Prop(enum=("started", "stopped", "enabled", "disabled", "ignored")),
        "group": Prop(),
        "max_restart": Prop("integer", 0),
        "max_relocate": Prop("integer", 0),
        "comment": Prop(),
    },
    options={
        kind: {key: Opt() for key in ("state", "group", "max_restart", "max_relocate", "comment")}
        for kind in ("vm", "ct")
    },
)
GROUPS_SCHEMA = sc.Schema(
    properties={"nodes": Prop(), "restricted": Prop("boolean"), "nofailback": Prop("boolean"), "comment": Prop()},
    options={"group": {"nodes": Opt(optional=False), "restricted": Opt(), "nofailback": Opt(), "comment": Opt()}},
)


def perl_localtime(epoch: float) -> str:
    """Perl's scalar localtime: 'Mon Jun  3 10:00:00 2024'."""
    return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(epoch))


def parse_sid(sid: str) -> tuple[str, int]:
    if ":" in sid:
        kind, _, vmid = sid.partition(":")
    else:
        kind, vmid = "vm", sid
    if kind not in ("vm", "ct") or not vmid.isdigit():
        raise ValueError(f"unable to parse service id '{sid}'")
    return kind, int(vmid)


def read_resources(pve: Path) -> sc.Parsed:
    path = pve / "ha" / "resources.cfg"
    raw = path.read_text() if path.exists() else ""
    parsed = sc.parse(RESOURCES_SCHEMA, "/etc/pve/ha/resources.cfg", raw)
    # The section id is "100"; the service id is "vm:100".
    renamed = sc.Parsed(warnings=parsed.warnings, errors=parsed.errors)
    for sid in parsed.ordered_ids():
        cfg = parsed.ids[sid]
        renamed.ids[f"{cfg['type']}:{sid}"] = cfg
        renamed.order[f"{cfg['type']}:{sid}"] = parsed.order[sid]
    return renamed


def write_resources(parsed: sc.Parsed) -> str:
    plain = sc.Parsed()
    for sid in parsed.ordered_ids():
        cfg = parsed.ids[sid]
        _, vmid = parse_sid(sid)
        plain.ids[str(vmid)] = cfg
        plain.order[str(vmid)] = parsed.order.get(sid, 0)
    return sc.write(RESOURCES_SCHEMA, plain)


def read_groups(pve: Path) -> sc.Parsed:
    path = pve / "ha" / "groups.cfg"
    raw = path.read_text() if path.exists() else ""
    return sc.parse(GROUPS_SCHEMA, "/etc/pve/ha/groups.cfg", raw)


def _load(state: SimState) -> dict[str, Any]:
    data = dict(state.read(HA_FILE, {}))
    data.setdefault("services", {})
    data.setdefault("commands", [])
    data.setdefault("dead_since", {})
    data.setdefault("noquorum_since", {})
    return data


def services(state: SimState) -> dict[str, dict[str, Any]]:
    return dict(_load(state)["services"])


def queue_command(state: SimState, command: list[str]) -> None:
    with state.locked():
        data = _load(state)
        data["commands"].append(command)
        state.write(HA_FILE, data)


def is_managed(pve: Path, vmid: int) -> bool:
    """vm_is_ha_managed: any configured state except `ignored` (inferred)."""
    cfg = read_resources(pve).ids.get(f"vm:{vmid}")
    return cfg is not None and cfg.get("state", "started") != "ignored"


def _quorate_nodes(state: SimState) -> list[str]:
    return [n for n in state.node_names() if state.node_quorate(n)]


def _node_alive_for_ha(state: SimState, data: dict[str, Any], node: str) -> bool:
    return node not in data["dead_since"]


def _choose_node(state: SimState, data: dict[str, Any], cfg: dict[str, Any], exclude: set[str]) -> str | None:
    candidates = [n for n in _quorate_nodes(state) if n not in exclude and _node_alive_for_ha(state, data, n)]
    group = cfg.get("group")
    if group:
        gcfg = read_groups(state.pve).ids.get(group)
        if gcfg:
            prio: dict[str, int] = {}
            for item in str(gcfg["nodes"]).split(","):
                name, _, pri = item.partition(":")
                prio[name.strip()] = int(pri or 0)
            members = [n for n in candidates if n in prio]
            if members:
                best = max(prio[n] for n in members)
                candidates = [n for n in members if prio[n] == best]
            elif gcfg.get("restricted"):
                return None
    if not candidates:
        return None
    load = {n: 0 for n in candidates}
    for entry in data["services"].values():
        if entry.get("node") in load and entry.get("state") == "started":
            load[entry["node"]] += 1
    return min(candidates, key=lambda n: (load[n], n))


def _update_node_health(state: SimState, data: dict[str, Any], now: float) -> None:
    for node in state.node_names():
        if not state.node_online(node):
            data["dead_since"].setdefault(node, now)
            data["noquorum_since"].pop(node, None)
            continue
        if state.node_quorate(node):
            data["noquorum_since"].pop(node, None)
            if node in data["dead_since"] and not vms_on(state, node):
                data["dead_since"].pop(node, None)
            continue
        since = data["noquorum_since"].setdefault(node, now)
        has_ha = any(s.get("node") == node and s.get("state") == "started" for s in data["services"].values())
        if has_ha and now - since >= SELF_FENCE_AFTER and node not in data["dead_since"]:
            # The watchdog resets the node: its guests are gone.
            vms.kill_on_node(state, node)
            data["dead_since"][node] = now


def vms_on(state: SimState, node: str) -> list[int]:
    return [int(v) for v, e in vms.runtime(state).items() if e.get("node") == node]


def tick(state: SimState) -> None:
    """Advance HA by whatever is due on the simulated clock."""
    now = state.now()
    delay = float(state.scenario_json().get("ha_delay", 0.3))
    plugin_version = str(state.scenario_json().get("plugin_version", "8.3.0"))
    with state.locked():
        data = _load(state)
        _update_node_health(state, data, now)
        if not _quorate_nodes(state):
            state.write(HA_FILE, data)
            return
        _run_commands(state, data, plugin_version)
        config = read_resources(state.pve)
        for sid in list(data["services"]):
            if sid not in config.ids:
                del data["services"][sid]
        for sid, cfg in config.ids.items():
            _step(state, data, sid, cfg, now, delay, plugin_version)
        state.write(HA_FILE, data)
        _write_manager_status(state, data, now)


def _step(state: SimState, data: dict[str, Any], sid: str, cfg: dict[str, Any], now: float, delay: float,
          plugin_version: str) -> None:  # fmt: skip
    _, vmid = parse_sid(sid)
    requested = cfg.get("state", "started")
    requested = "started" if requested == "enabled" else requested
    owner = vmconf.find_owner(state.pve, vmid)
    svc = data["services"].get(sid)
    if svc is None:
        data["services"][sid] = {"state": "queued", "node": owner, "since": now, "restarts": 0, "relocates": 0,
                                 "tried": [], "due": now + delay}  # fmt: skip
        return
    if now < float(svc.get("due", 0)) or owner is None:
        return
    svc["node"] = owner
    if requested == "ignored":
        svc["state"] = "ignored"
        return
    if svc["state"] == "error" and requested == "started":
        return
    owner_dead = owner in data["dead_since"]
    running = vms.running_node(state, vmid)
    if requested in ("stopped", "disabled"):
        if running:
            vms.stop(state, vmid)
        svc.update(state=requested, restarts=0, relocates=0, tried=[])
        return
    if owner_dead:
        died = float(data["dead_since"][owner])
        if now - died < FENCE_AFTER:
            return
        if now - died < RECOVER_AFTER:
            svc["state"] = "fence"
            return
        target = _choose_node(state, data, cfg, exclude={owner})
        if target is None:
            svc["state"] = "fence"
            return
        vms.move_config(state, vmid, owner, target)
        svc.update(state="recovery", node=target, due=now + delay, tried=[], restarts=0)
        return
    if running == owner:
        svc["state"] = "started"
        return
    if svc["state"] not in ("starting", "recovery") and svc["state"] != "started":
        svc.update(state="starting", due=now + delay)
        return
    # Start (or restart after a crash) on the owner node.
    try:
        vms.start(state, owner, vmid, plugin_version)
    except vms.VmError as err:
        svc["last_error"] = str(err)
        svc["tried"] = sorted(set(svc.get("tried", [])) | {owner})
        if svc["restarts"] < int(cfg.get("max_restart", 1)):
            svc.update(restarts=svc["restarts"] + 1, due=now + delay, state="starting")
            return
        if svc["relocates"] < int(cfg.get("max_relocate", 1)):
            target = _choose_node(state, data, cfg, exclude=set(svc["tried"]))
            if target is not None:
                vms.move_config(state, vmid, owner, target)
                svc.update(relocates=svc["relocates"] + 1, restarts=0, node=target, state="relocate",
                           due=now + delay)  # fmt: skip
                return
        svc["state"] = "error"
        return
    svc.update(state="started", node=owner, restarts=0, relocates=0, tried=[])


def _run_commands(state: SimState, data: dict[str, Any], plugin_version: str) -> None:
    pending, data["commands"] = data["commands"], []
    for command in pending:
        kind, sid = command[0], command[1]
        _, vmid = parse_sid(sid)
        owner = vmconf.find_owner(state.pve, vmid)
        if owner is None:
            continue
        if kind == "stop":
            if vms.running_node(state, vmid):
                vms.stop(state, vmid)
        elif kind in ("migrate", "relocate"):
            target = command[2]
            if target == owner or not state.node_quorate(target):
                continue
            was_running = vms.running_node(state, vmid) is not None
            if was_running:
                vms.stop(state, vmid)
            vms.move_config(state, vmid, owner, target)
            if was_running:
                try:
                    vms.start(state, target, vmid, plugin_version)
                except vms.VmError:
                    pass
            svc = data["services"].get(sid)
            if svc:
                svc["node"] = target


def _write_manager_status(state: SimState, data: dict[str, Any], now: float) -> None:
    master = master_node(state, data)
    status = {
        "master_node": master,
        "node_status": {n: ("online" if n not in data["dead_since"] else "fence") for n in state.node_names()},
        "service_status": {
            sid: {"node": s.get("node"), "state": s.get("state")} for sid, s in data["services"].items()
        },
        "timestamp": int(now),
    }
    path = state.pve / "ha" / "manager_status"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(status, sort_keys=True))
    except OSError:
        pass


def master_node(state: SimState, data: dict[str, Any] | None = None) -> str | None:
    data = data if data is not None else _load(state)
    for node in state.node_names():
        if state.node_quorate(node) and node not in data["dead_since"]:
            return node
    return None


def status_lines(state: SimState, local: str) -> list[str]:
    """`ha-manager status` (proxmox.md section 6.3)."""
    data = _load(state)
    now = state.now()
    lines = ["quorum OK" if state.node_quorate(local) else f"quorum No quorum on node '{local}'!"]
    master = master_node(state, data)
    config = read_resources(state.node_pve(local))
    if master:
        lines.append(f"master {master} (active, {perl_localtime(now)})")
    for node in state.node_names():
        if not state.node_online(node) or node in data["dead_since"]:
            died = float(data["dead_since"].get(node, now))
            lines.append(f"lrm {node} (old timestamp - dead?, {perl_localtime(died)})")
            continue
        busy = any(s.get("node") == node and s.get("state") not in ("stopped", "disabled", "ignored")
                   for s in data["services"].values())  # fmt: skip
        lines.append(f"lrm {node} ({'active' if busy else 'idle'}, {perl_localtime(now)})")
    for sid in sorted(config.ids, key=lambda s: parse_sid(s)[1]):
        svc = data["services"].get(sid)
        _, vmid = parse_sid(sid)
        node = (svc or {}).get("node") or vmconf.find_owner(state.pve, vmid) or "?"
        shown = "queued" if svc is None or svc["state"] == "queued" else svc["state"]
        lines.append(f"service {sid} ({node}, {shown})")
    return lines
