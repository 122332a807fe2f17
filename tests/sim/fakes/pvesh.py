"""Fake `pvesh get|create|set|delete <path> [--opts] [--output-format json|json-pretty]` (pve-manager 8.4).

Paths: /cluster/resources, /cluster/status, /cluster/ha/status/current, /cluster/ha/resources[/<sid>],
/cluster/ha/groups, /cluster/backup[/<id>], /nodes, /nodes/<n>/network, /nodes/<n>/qemu, /nodes/<n>/qemu/<id>/config,
/nodes/<n>/qemu/<id>/status/current, /nodes/<n>/startall, /storage[/<id>], /version.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

from .. import ha, pmxcfs, reactor, services, storage, vmconf, vms
from .. import sectionconfig as sc
from ..sectionconfig import Opt, Prop
from ._cli import Context, Fail, run, warn

JOBS_SCHEMA = sc.Schema(
    properties={
        "schedule": Prop(), "starttime": Prop(), "dow": Prop(), "storage": Prop(), "mode": Prop(), "compress": Prop(),
        "enabled": Prop("boolean"), "vmid": Prop(), "all": Prop("boolean"), "comment": Prop(), "node": Prop(),
        "prune-backups": Prop(), "mailto": Prop(), "mailnotification": Prop(), "notes-template": Prop(),
        "exclude": Prop(), "pool": Prop(), "repeat-missed": Prop("boolean"), "protected": Prop("boolean"),
        "bwlimit": Prop("integer", 0), "zstd": Prop("integer", 0), "notification-mode": Prop(),
    },
    options={"vzdump": {}},
)  # fmt: skip
JOBS_SCHEMA.options["vzdump"] = {key: Opt() for key in JOBS_SCHEMA.properties}
JOB_ID = re.compile(r"^[a-z][a-z0-9_-]+$", re.I)
FLAGS = {"noproxy", "human-readable", "noborder", "noheader", "quiet", "nooutput"}


def _parse(argv: list[str]) -> tuple[list[str], dict[str, str], str, set[str]]:
    positional: list[str] = []
    opts: dict[str, str] = {}
    flags: set[str] = set()
    fmt = "text"
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("-") and len(arg) > 1:
            name = arg.lstrip("-")
            value = None
            if "=" in name:
                name, value = name.split("=", 1)
            if name in FLAGS:
                flags.add(name)
                continue
            if value is None:
                if index >= len(argv):
                    raise Fail(f"Option {name} requires an argument\n400 unable to parse option")
                value = argv[index]
                index += 1
            if name == "output-format":
                fmt = value
            else:
                opts[name] = value
        else:
            positional.append(arg)
    return positional, opts, fmt, flags


def _emit(result: Any, fmt: str, flags: set[str]) -> None:
    if result is None or "nooutput" in flags:
        return
    if fmt == "json":
        print(json.dumps(result, sort_keys=True, separators=(",", ":")))
    elif fmt == "json-pretty":
        print(json.dumps(result, sort_keys=True, indent=3))
    elif isinstance(result, (str, int, float)):
        print(result)
    else:
        raise Fail("sim: only --output-format json/json-pretty are simulated for structured results", 2)


def _vm_entry(ctx: Context, vmid: int, node: str) -> dict[str, Any]:
    conf = vmconf.parse(vmconf.conf_path(ctx.state.pve, node, vmid).read_text())
    status = vms.status(ctx.state, vmid)
    entry: dict[str, Any] = {
        "id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "node": node, "status": status,
        "name": conf.values.get("name", f"VM {vmid}"), "template": 0,
        "maxmem": int(conf.values.get("memory", "512")) * 1024 * 1024, "maxcpu": int(conf.values.get("cores", "1")),
        "uptime": 0,
    }  # fmt: skip
    svc = ha.read_resources(ctx.pve).ids.get(f"vm:{vmid}")
    if svc is not None:
        entry["hastate"] = ha.services(ctx.state).get(f"vm:{vmid}", {}).get("state", "queued")
    return entry


def _node_entries(ctx: Context) -> list[dict[str, Any]]:
    return [{"id": f"node/{n}", "type": "node", "node": n, "status": "online" if ctx.state.node_online(n) else
             "offline", "level": ""} for n in ctx.state.node_names()]  # fmt: skip


def _check_node(ctx: Context, node: str) -> None:
    if node == "localhost":
        return
    if node not in ctx.state.nodes():
        raise Fail(f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                   "Name or service not known")
    if not ctx.state.node_online(node):
        raise Fail(f"500 Can't connect to {ctx.state.nodes()[node]['ip']}:8006 (No route to host)")


def _local(ctx: Context, node: str) -> str:
    return ctx.node if node == "localhost" else node


def _jobs(ctx: Context) -> sc.Parsed:
    path = ctx.pve / "jobs.cfg"
    parsed = sc.parse(JOBS_SCHEMA, "/etc/pve/jobs.cfg", path.read_text() if path.exists() else "")
    for line in parsed.warnings:
        warn(line)
    return parsed


def _job_view(ctx: Context, jid: str, cfg: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in cfg.items()}
    view["id"] = jid
    view.setdefault("enabled", 1)
    view["next-run"] = int(ctx.state.now()) + 3600
    if "vmid" in view:
        view["vmid"] = str(view["vmid"])
    return view


def _write_jobs(ctx: Context, parsed: sc.Parsed) -> None:
    try:
        pmxcfs.set_contents(ctx.pve, "jobs.cfg", sc.write(JOBS_SCHEMA, parsed))
    except pmxcfs.PmxcfsError as err:
        raise Fail(str(err)) from err


def _with_jobs_lock(ctx: Context) -> Any:
    timeout = float(ctx.state.scenario_json().get("cfs_lock_timeout", pmxcfs.LOCK_ACQUIRE_TIMEOUT))
    return pmxcfs.cfs_lock(ctx.pve, "file-jobs_cfg", ctx.state.now(), ctx.state.node_quorate(ctx.node), timeout)


def _create_backup(ctx: Context, opts: dict[str, str]) -> None:
    jid = opts.pop("id", None)
    if jid is None:
        raise Fail("sim: pass --id; a generated backup job id cannot be read back (proxmox.md section 7)", 2)
    if not JOB_ID.match(jid):
        raise Fail("400 Parameter verification failed.\nid: value does not match the regex pattern")
    if "starttime" in opts and "schedule" in opts:
        raise Fail("'starttime' and 'schedule' cannot both be set")
    if "starttime" not in opts and "schedule" not in opts:
        raise Fail("neither 'starttime' nor 'schedule' were set")
    values: dict[str, Any] = {}
    for key, value in opts.items():
        try:
            values[key] = JOBS_SCHEMA.check_value("vzdump", key, value)
        except sc.ConfigError as err:
            raise Fail(f"400 Parameter verification failed.\n{key}: property is not defined in schema and the "
                       f"schema does not allow additional properties" if "unexpected" in str(err) else
                       f"400 Parameter verification failed.\n{key}: {err}") from err  # fmt: skip
    try:
        with _with_jobs_lock(ctx):
            parsed = _jobs(ctx)
            if jid in parsed.ids:
                raise Fail(f"Job '{jid}' already exists")
            values["type"] = "vzdump"
            values.setdefault("enabled", 1)
            parsed.ids[jid] = values
            _write_jobs(ctx, parsed)
    except pmxcfs.PmxcfsError as err:
        raise Fail(str(err)) from err


def handle(ctx: Context, method: str, path: str, opts: dict[str, str]) -> Any:
    parts = [p for p in path.split("/") if p]
    if method == "get" and parts == ["version"]:
        version = str(ctx.state.scenario_json().get("pve_version", "8.4.1"))
        return {"release": ".".join(version.split(".")[:2]), "repoid": "2a5fa54a8503f96d", "version": version}
    if method == "get" and parts == ["cluster", "resources"]:
        kind = opts.get("type")
        out: list[dict[str, Any]] = []
        if kind in (None, "vm"):
            out += [_vm_entry(ctx, vmid, node) for vmid, node in sorted(vmconf.all_vms(ctx.pve).items())]
        if kind in (None, "node"):
            out += _node_entries(ctx)
        if kind in (None, "storage"):
            parsed = storage.read_storage_cfg(ctx.pve, str(ctx.state.scenario_json().get("plugin_version")))
            for node in ctx.state.node_names():
                for sid in parsed.ordered_ids():
                    cfg = parsed.ids[sid]
                    out.append({"id": f"storage/{node}/{sid}", "type": "storage", "storage": sid, "node": node,
                                "status": "available" if ctx.state.node_online(node) else "unknown",
                                "plugintype": cfg["type"], "shared": int(cfg.get("shared", 0)),
                                "content": ",".join(sorted(cfg.get("content", {})))})  # fmt: skip
        return out
    if method == "get" and parts == ["cluster", "status"]:
        quorate = ctx.state.node_quorate(ctx.node)
        nodes = ctx.state.nodes()
        out = [{"id": "cluster", "type": "cluster", "name": "pve-sim", "nodes": len(nodes), "quorate": int(quorate),
                "version": 3}]  # fmt: skip
        for name, info in nodes.items():
            out.append({"id": f"node/{name}", "type": "node", "name": name, "ip": info["ip"], "nodeid": info["nodeid"],
                        "online": int(info["online"]), "local": int(name == ctx.node), "level": ""})  # fmt: skip
        return out
    if method == "get" and parts == ["nodes"]:
        return _node_entries(ctx)
    if parts[:1] == ["nodes"] and len(parts) >= 2:
        node = _local(ctx, parts[1])
        _check_node(ctx, parts[1])
        if method == "create" and parts[2:] == ["startall"]:
            for line in services.startall(ctx.state, node):
                print(line)
            return None
        if method == "get" and parts[2:] == ["network"]:
            return _network(ctx, node, opts.get("type"))
        if method == "get" and parts[2:] == ["qemu"]:
            return [_vm_entry(ctx, vmid, n) for vmid, n in sorted(vmconf.all_vms(ctx.pve).items()) if n == node]
        if len(parts) >= 4 and parts[2] == "qemu" and parts[3].isdigit():
            vmid = int(parts[3])
            path_conf = vmconf.conf_path(ctx.pve, node, vmid)
            if not path_conf.exists():
                raise Fail(f"500 Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
            conf = vmconf.parse(path_conf.read_text())
            if method == "get" and parts[4:] == ["config"]:
                values: dict[str, Any] = dict(conf.values)
                values["digest"] = hashlib.sha1(path_conf.read_bytes()).hexdigest()
                for key in ("memory", "cores", "sockets", "onboot", "protection"):
                    if key in values and str(values[key]).isdigit():
                        values[key] = int(values[key])
                return values
            if method == "get" and parts[4:] == ["status", "current"]:
                status = vms.status(ctx.state, vmid)
                result: dict[str, Any] = {"status": status, "vmid": vmid, "qmpstatus": status,
                                          "name": conf.values.get("name", f"VM {vmid}")}  # fmt: skip
                svc = ha.read_resources(ctx.pve).ids.get(f"vm:{vmid}")
                if svc is None:
                    result["ha"] = {"managed": 0}
                else:
                    result["ha"] = {"managed": 1, "state": svc.get("state", "started")}
                    if svc.get("group"):
                        result["ha"]["group"] = svc["group"]
                return result
    if parts[:2] == ["cluster", "ha"]:
        if method == "get" and parts[2:] == ["status", "current"]:
            return _ha_status(ctx)
        if method == "get" and parts[2:] == ["resources"]:
            return [{"sid": sid, **{k: v for k, v in cfg.items()}} for sid, cfg in
                    sorted(ha.read_resources(ctx.pve).ids.items())]  # fmt: skip
        if method == "get" and len(parts) == 4 and parts[2] == "resources":
            found = ha.read_resources(ctx.pve).ids.get(parts[3])
            if found is None:
                raise Fail(f"500 no such resource '{parts[3]}'")
            return {"sid": parts[3], **found}
        if method == "get" and parts[2:] == ["groups"]:
            return [{"group": gid, **cfg} for gid, cfg in sorted(ha.read_groups(ctx.pve).ids.items())]
    if parts[:2] == ["cluster", "backup"]:
        if method == "create" and len(parts) == 2:
            _create_backup(ctx, dict(opts))
            return None
        if method == "get" and len(parts) == 2:
            parsed = _jobs(ctx)
            return [_job_view(ctx, jid, cfg) for jid, cfg in sorted(parsed.ids.items())]
        if len(parts) == 3:
            jid = parts[2]
            with _with_jobs_lock(ctx) if method != "get" else _null():
                parsed = _jobs(ctx)
                if jid not in parsed.ids:
                    raise Fail(f"job '{jid}' does not exist")
                if method == "get":
                    return _job_view(ctx, jid, parsed.ids[jid])
                if method == "delete":
                    del parsed.ids[jid]
                elif method == "set":
                    for key in [k for k in opts.pop("delete", "").split(",") if k]:
                        parsed.ids[jid].pop(key, None)
                    for key, value in opts.items():
                        parsed.ids[jid][key] = JOBS_SCHEMA.check_value("vzdump", key, value)
                _write_jobs(ctx, parsed)
                return None
    if method == "get" and parts == ["storage"]:
        parsed = storage.read_storage_cfg(ctx.pve, str(ctx.state.scenario_json().get("plugin_version")))
        return [_storage_view(sid, parsed.ids[sid]) for sid in parsed.ordered_ids()]
    if method == "get" and len(parts) == 2 and parts[0] == "storage":
        parsed = storage.read_storage_cfg(ctx.pve, str(ctx.state.scenario_json().get("plugin_version")))
        if parts[1] not in parsed.ids:
            raise Fail(f"storage '{parts[1]}' does not exist")
        return _storage_view(parts[1], parsed.ids[parts[1]])
    raise Fail(f"No '{method}' handler defined for '{path}'")


def _network(ctx: Context, node: str, kind: str | None) -> list[dict[str, Any]]:
    """GET /nodes/<n>/network: the node's /etc/network/interfaces, as PVE's INotify parser reads it."""
    path = ctx.state.node_root(node) / "etc" / "network" / "interfaces"
    text = path.read_text() if path.exists() else ""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        words = line.split()
        if words[:1] == ["iface"] and len(words) >= 2:
            current = {"iface": words[1], "type": "loopback" if words[1] == "lo" else "eth", "active": 1,
                       "method": words[3] if len(words) > 3 else "manual", "families": ["inet"]}  # fmt: skip
            found.append(current)
        elif current is not None and words[:1] in (["bridge-ports"], ["bridge_ports"]):
            current["type"] = "bridge"
            current["bridge_ports"] = " ".join(words[1:])
        elif current is not None and words[:2] == ["ovs_type", "OVSBridge"]:
            current["type"] = "OVSBridge"
    if kind == "any_bridge":
        return [e for e in found if e["type"] in ("bridge", "OVSBridge")]
    if kind:
        return [e for e in found if e["type"] == kind]
    return found


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _storage_view(sid: str, cfg: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"storage": sid}
    for key, value in cfg.items():
        view[key] = ",".join(sorted(value)) if isinstance(value, dict) else value
    return view


def _ha_status(ctx: Context) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    quorate = ctx.state.node_quorate(ctx.node)
    out.append({"id": "quorum", "type": "quorum", "node": ctx.node, "quorate": int(quorate),
                "status": "OK" if quorate else "No quorum on node '" + ctx.node + "'!"})  # fmt: skip
    for line in ha.status_lines(ctx.state, ctx.node)[1:]:
        kind, rest = line.split(" ", 1)
        name, _, detail = rest.partition(" (")
        detail = detail.rstrip(")")
        if kind == "service":
            node, _, state = detail.partition(", ")
            cfg = ha.read_resources(ctx.pve).ids.get(name, {})
            svc = ha.services(ctx.state).get(name, {})
            out.append({"id": f"service:{name}", "type": "service", "sid": name, "node": node, "state": state,
                        "status": f"{state}", "crm_state": svc.get("state", "queued"),
                        "request_state": cfg.get("state", "started"), "max_restart": cfg.get("max_restart", 1),
                        "max_relocate": cfg.get("max_relocate", 1)})  # fmt: skip
        else:
            out.append({"id": f"{kind}:{name}", "type": kind, "node": name, "status": detail})
    return out


def main(ctx: Context, argv: list[str]) -> int:
    reactor.tick(ctx.state)
    positional, opts, fmt, flags = _parse(argv)
    if len(positional) < 2 or positional[0] not in ("get", "create", "set", "delete", "ls", "usage"):
        raise Fail("ERROR: no command specified\nUSAGE: pvesh <COMMAND> [ARGS] [OPTIONS]")
    method, path = positional[0], positional[1]
    if method in ("create", "set", "delete") and not ctx.state.node_quorate(ctx.node) and path.startswith("/cluster"):
        raise Fail(f"500 {pmxcfs.NO_QUORUM}")
    result = handle(ctx, method, path, opts)
    _emit(result, fmt, flags)
    reactor.tick(ctx.state)
    return 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
