"""Fake `ha-manager` (pve-ha-manager 4.0): add, set, remove, config, status, groupadd, groupset,
groupremove, groupconfig, crm-command migrate|relocate|stop, migrate, relocate (proxmox.md section 6)."""

from __future__ import annotations

import sys

from .. import ha, pmxcfs, reactor, vmconf
from .. import sectionconfig as sc
from ._cli import Context, Fail, parse_options, run, warn

RESOURCE_OPTS = {"state": True, "max_restart": True, "max_relocate": True, "group": True, "comment": True,
                 "type": True}  # fmt: skip


def _sid(value: str) -> str:
    try:
        kind, vmid = ha.parse_sid(value)
    except ValueError as err:
        raise Fail(f"400 Parameter verification failed.\nsid: {err}") from err
    return f"{kind}:{vmid}"


def _check_values(opts: dict[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, value in opts.items():
        try:
            values[key] = ha.RESOURCES_SCHEMA.check_value("vm", key, value)
        except sc.ConfigError as err:
            raise Fail(f"400 Parameter verification failed.\n{key}: {err}") from err
    return values


def _locked_write(ctx: Context, change: object) -> None:
    timeout = float(ctx.state.scenario_json().get("cfs_lock_timeout", pmxcfs.LOCK_ACQUIRE_TIMEOUT))
    try:
        with pmxcfs.cfs_lock(ctx.pve, "domain-ha", ctx.state.now(), ctx.state.node_quorate(ctx.node), timeout):
            change()  # type: ignore[operator]
    except pmxcfs.PmxcfsError as err:
        raise Fail(str(err)) from err


def cmd_add(ctx: Context, argv: list[str]) -> int:
    usage = "ha-manager add <sid> [OPTIONS]"
    positional, opts = parse_options(argv, RESOURCE_OPTS, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    sid = _sid(positional[0])
    opts.pop("type", None)
    values = _check_values(opts)

    def change() -> None:
        parsed = ha.read_resources(ctx.pve)
        if sid in parsed.ids:
            raise Fail(f"resource ID '{sid}' already defined")
        _, vmid = ha.parse_sid(sid)
        if vmconf.find_owner(ctx.pve, vmid) is None:
            raise Fail(f"resource '{sid}' does not exist in cluster")
        parsed.ids[sid] = {"type": sid.split(":")[0], **values}
        pmxcfs.set_contents(ctx.pve, "ha/resources.cfg", ha.write_resources(parsed))

    _locked_write(ctx, change)
    return 0


def cmd_set(ctx: Context, argv: list[str]) -> int:
    usage = "ha-manager set <sid> [OPTIONS]"
    positional, opts = parse_options(argv, {**RESOURCE_OPTS, "delete": True, "digest": True}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    sid = _sid(positional[0])
    delete = [k for k in opts.pop("delete", "").split(",") if k]
    opts.pop("digest", None)
    opts.pop("type", None)
    values = _check_values(opts)
    if "group" in values and values["group"] not in ha.read_groups(ctx.pve).ids:
        raise Fail(f"HA group '{values['group']}' does not exist")

    def change() -> None:
        parsed = ha.read_resources(ctx.pve)
        if sid not in parsed.ids:
            raise Fail(f"service '{sid}' is not configured (does not exist)")
        for key in delete:
            parsed.ids[sid].pop(key, None)
        parsed.ids[sid].update(values)
        pmxcfs.set_contents(ctx.pve, "ha/resources.cfg", ha.write_resources(parsed))

    _locked_write(ctx, change)
    return 0


def cmd_remove(ctx: Context, argv: list[str]) -> int:
    usage = "ha-manager remove <sid>"
    positional, _ = parse_options(argv, {"purge": True}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    sid = _sid(positional[0])

    def change() -> None:
        parsed = ha.read_resources(ctx.pve)
        if sid not in parsed.ids:
            raise Fail(f"cannot delete service '{sid}', not HA managed!")
        del parsed.ids[sid]
        pmxcfs.set_contents(ctx.pve, "ha/resources.cfg", ha.write_resources(parsed))

    _locked_write(ctx, change)
    return 0


def cmd_config(ctx: Context, argv: list[str]) -> int:
    _, opts = parse_options(argv, {"type": True}, "ha-manager config [OPTIONS]")
    parsed = ha.read_resources(ctx.pve)
    groups = ha.read_groups(ctx.pve).ids
    for sid in sorted(parsed.ids):
        cfg = parsed.ids[sid]
        if opts.get("type") and cfg["type"] != opts["type"]:
            continue
        print(sid)
        for key in sorted(cfg):
            if key != "type":
                print(f"\t{key} {cfg[key]}")
        print()
        group = cfg.get("group")
        if group and group not in groups:
            warn(f"error: property 'group' - group '{group}' does not exist")
    return 0


def cmd_status(ctx: Context, argv: list[str]) -> int:
    _, opts = parse_options(argv, {"verbose": False}, "ha-manager status [OPTIONS]")
    for line in ha.status_lines(ctx.state, ctx.node):
        print(line)
    if opts.get("verbose") == "1":
        print("full cluster state:")
        print((ctx.pve / "ha" / "manager_status").read_text() if (ctx.pve / "ha" / "manager_status").exists()
              else "{}")  # fmt: skip
    return 0


def cmd_groupadd(ctx: Context, argv: list[str], update: bool = False) -> int:
    usage = f"ha-manager {'groupset' if update else 'groupadd'} <group> [OPTIONS]"
    positional, opts = parse_options(argv, {"nodes": True, "restricted": True, "nofailback": True, "comment": True,
                                            "type": True, "delete": True, "digest": True}, usage)  # fmt: skip
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    group = positional[0]
    for key in ("type", "digest"):
        opts.pop(key, None)
    delete = [k for k in opts.pop("delete", "").split(",") if k]

    def change() -> None:
        path = ctx.pve / "ha" / "groups.cfg"
        parsed = sc.parse(ha.GROUPS_SCHEMA, "/etc/pve/ha/groups.cfg", path.read_text() if path.exists() else "")
        if update and group not in parsed.ids:
            raise Fail(f"no such ha group '{group}'")
        if not update and group in parsed.ids:
            raise Fail(f"ha group '{group}' already defined")
        if not update and "nodes" not in opts:
            raise Fail("400 Parameter verification failed.\nnodes: property is missing and it is not optional\n\n"
                       + usage)
        cfg = parsed.ids.setdefault(group, {"type": "group"})
        for key in delete:
            cfg.pop(key, None)
        for key, value in opts.items():
            cfg[key] = ha.GROUPS_SCHEMA.check_value("group", key, value)
        pmxcfs.set_contents(ctx.pve, "ha/groups.cfg", sc.write(ha.GROUPS_SCHEMA, parsed))

    _locked_write(ctx, change)
    return 0


def cmd_groupremove(ctx: Context, argv: list[str]) -> int:
    positional, _ = parse_options(argv, {}, "ha-manager groupremove <group>")
    group = positional[0] if positional else ""

    def change() -> None:
        parsed = ha.read_groups(ctx.pve)
        if group not in parsed.ids:
            raise Fail(f"no such ha group '{group}'")
        del parsed.ids[group]
        pmxcfs.set_contents(ctx.pve, "ha/groups.cfg", sc.write(ha.GROUPS_SCHEMA, parsed))

    _locked_write(ctx, change)
    return 0


def cmd_groupconfig(ctx: Context, argv: list[str]) -> int:
    parsed = ha.read_groups(ctx.pve)
    for group in sorted(parsed.ids):
        print(f"group: {group}")
        for key in sorted(parsed.ids[group]):
            if key != "type":
                print(f"\t{key} {parsed.ids[group][key]}")
        print()
    return 0


def cmd_crm(ctx: Context, argv: list[str]) -> int:
    if not argv:
        raise Fail("400 not enough arguments\nha-manager crm-command <COMMAND> [ARGS] [OPTIONS]")
    verb, rest = argv[0], argv[1:]
    if verb in ("migrate", "relocate"):
        if len(rest) != 2:
            raise Fail(f"400 not enough arguments\nha-manager crm-command {verb} <sid> <node>")
        sid, node = _sid(rest[0]), rest[1]
        if sid not in ha.read_resources(ctx.pve).ids:
            raise Fail(f"service '{sid}' is not configured (does not exist)")
        if node not in ctx.state.nodes():
            raise Fail(f"400 Parameter verification failed.\nnode: no such cluster node '{node}'")
        print(f"requesting {'migration' if verb == 'migrate' else 'relocation'} of {sid} to {node}", flush=True)
        ha.queue_command(ctx.state, [verb, sid, node])
        return 0
    if verb == "stop":
        if len(rest) != 2:
            raise Fail("400 not enough arguments\nha-manager crm-command stop <sid> <timeout>")
        ha.queue_command(ctx.state, ["stop", _sid(rest[0])])
        return 0
    raise Fail(f"sim: ha-manager crm-command {verb} is not simulated", 2)


def main(ctx: Context, argv: list[str]) -> int:
    reactor.tick(ctx.state)
    if not argv:
        raise Fail("ERROR: no command specified\nUSAGE: ha-manager <COMMAND> [ARGS] [OPTIONS]")
    command, rest = argv[0], argv[1:]
    handlers = {
        "add": cmd_add, "set": cmd_set, "remove": cmd_remove, "config": cmd_config, "status": cmd_status,
        "groupadd": cmd_groupadd, "groupset": lambda c, a: cmd_groupadd(c, a, update=True),
        "groupremove": cmd_groupremove, "groupconfig": cmd_groupconfig, "crm-command": cmd_crm,
        "migrate": lambda c, a: cmd_crm(c, ["migrate", *a]), "relocate": lambda c, a: cmd_crm(c, ["relocate", *a]),
    }  # fmt: skip
    handler = handlers.get(command)
    if handler is None:
        raise Fail(f"ERROR: unknown command 'ha-manager {' '.join(argv)}'\n"
                   "USAGE: ha-manager <COMMAND> [ARGS] [OPTIONS]")
    code = handler(ctx, rest)
    reactor.tick(ctx.state)
    return code


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
