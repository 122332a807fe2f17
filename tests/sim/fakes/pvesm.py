"""Fake `pvesm` (libpve-storage-perl 8.3): path, alloc, free, list, status, set, apiinfo
(proxmox.md section 2, storage.cfg rules of section 3)."""

from __future__ import annotations

import re
import sys

from .. import plugin, pmxcfs, reactor, storage
from ..sectionconfig import ConfigError, check_config, check_prop
from ._cli import Context, Fail, parse_options, run, warn

VOLID = re.compile(r"^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$", re.I)
APIVER = {"8.4": (11, 2)}


def _version(ctx: Context) -> str:
    return str(ctx.state.scenario_json().get("plugin_version", "8.3.0"))


def _config(ctx: Context) -> storage.sc.Parsed:
    parsed = storage.read_storage_cfg(ctx.pve, _version(ctx))
    # PVE prints the parser's warnings on every read of storage.cfg.
    for line in parsed.warnings:
        warn(line)
    return parsed


def _storage(parsed: storage.sc.Parsed, storeid: str) -> dict[str, object]:
    scfg = parsed.ids.get(storeid)
    if scfg is None:
        raise Fail(f"storage '{storeid}' does not exist")
    return scfg


def _split_volid(volid: str) -> tuple[str, str]:
    match = VOLID.match(volid)
    if not match:
        raise Fail(f"unable to parse volume ID '{volid}'")
    return match.group(1), match.group(2)


def cmd_path(ctx: Context, argv: list[str]) -> int:
    positional, _ = parse_options(argv, {}, "pvesm path <volume>")
    if len(positional) != 1:
        raise Fail("400 not enough arguments\npvesm path <volume>")
    storeid, volname = _split_volid(positional[0])
    parsed = _config(ctx)
    scfg = _storage(parsed, storeid)
    backend = plugin.lookup(ctx.state, ctx.node, storeid, scfg)
    if backend is None:
        print(f"{scfg.get('path', '/dev')}/images/{volname}")
        return 0
    try:
        print(backend.path(volname))
    except plugin.StorageError as err:
        raise Fail(str(err)) from err
    return 0


def _size_kib(text: str) -> int:
    if re.fullmatch(r"\d+", text):
        return int(text)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([MG])", text)
    if not match:
        raise Fail(f"400 Parameter verification failed.\nsize: unable to parse size '{text}'")
    factor = 1024 if match.group(2) == "M" else 1024 * 1024
    return int(float(match.group(1)) * factor)


def cmd_alloc(ctx: Context, argv: list[str]) -> int:
    usage = "pvesm alloc <storage> <vmid> <filename> <size> [OPTIONS]"
    positional, opts = parse_options(argv, {"format": True}, usage)
    if len(positional) != 4:
        raise Fail(f"400 not enough arguments\n{usage}")
    storeid, vmid, name, size = positional
    if not ctx.state.node_quorate(ctx.node):
        raise Fail(pmxcfs.NO_QUORUM)
    parsed = _config(ctx)
    scfg = _storage(parsed, storeid)
    backend = plugin.lookup(ctx.state, ctx.node, storeid, scfg)
    if backend is None:
        raise Fail("sim: pvesm alloc is only simulated for drbd storages", 2)
    try:
        volname = backend.alloc(int(vmid), opts.get("format", "raw"), name or None, _size_kib(size))
    except plugin.StorageError as err:
        raise Fail(str(err)) from err
    print(f"successfully created '{storeid}:{volname}'")
    return 0


def cmd_free(ctx: Context, argv: list[str]) -> int:
    positional, _ = parse_options(argv, {"storage": True, "delay": True}, "pvesm free <volume> [OPTIONS]")
    if len(positional) != 1:
        raise Fail("400 not enough arguments\npvesm free <volume> [OPTIONS]")
    storeid, volname = _split_volid(positional[0])
    backend = plugin.lookup(ctx.state, ctx.node, storeid, _storage(_config(ctx), storeid))
    if backend is not None:
        try:
            backend.free(volname)
        except plugin.StorageError as err:
            raise Fail(str(err)) from err
    return 0


def cmd_list(ctx: Context, argv: list[str]) -> int:
    usage = "pvesm list <storage> [OPTIONS]"
    positional, opts = parse_options(argv, {"vmid": True, "content": True}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    storeid = positional[0]
    backend = plugin.lookup(ctx.state, ctx.node, storeid, _storage(_config(ctx), storeid))
    rows: list[tuple[str, int, int]] = []
    if backend is not None:
        try:
            rows = backend.list_images(int(opts["vmid"]) if "vmid" in opts else None)
        except plugin.StorageError as err:
            raise Fail(str(err)) from err
    width = max([len("Volid")] + [len(r[0]) for r in rows])
    size_width = max([len("Size")] + [len(str(r[1])) for r in rows])
    print(f"{'Volid':<{width}} {'Format':<7} {'Type':<9} {'Size':>{size_width}} VMID")
    for volid, size, vmid in rows:
        print(f"{volid:<{width}} {'raw':<7} {'images':<9} {size:>{size_width}d} {vmid}")
    return 0


def cmd_status(ctx: Context, argv: list[str]) -> int:
    _, opts = parse_options(argv, {"storage": True, "content": True, "enabled": False, "target": True,
                                   "format": False}, "pvesm status [OPTIONS]")  # fmt: skip
    parsed = _config(ctx)
    wanted = opts.get("storage")
    if wanted:
        _storage(parsed, wanted)
    rows = []
    for storeid in parsed.ordered_ids():
        if wanted and storeid != wanted:
            continue
        scfg = parsed.ids[storeid]
        if scfg.get("disable"):
            rows.append((storeid, scfg["type"], "disabled", 0, 0, 0, 0.0))
            continue
        backend = plugin.lookup(ctx.state, ctx.node, storeid, scfg)
        if backend is None:
            total, used = 100 * 1024**3, 10 * 1024**3
            rows.append((storeid, scfg["type"], "active", total // 1024, used // 1024, (total - used) // 1024,
                         used * 100 / total))  # fmt: skip
            continue
        try:
            total, used, avail, _ = backend.status()
        except plugin.StorageError as err:
            # storage_info: eval { $plugin->status(...) }; warn $@ if $@;
            warn(str(err))
            rows.append((storeid, scfg["type"], "inactive", 0, 0, 0, 0.0))
            continue
        rows.append((storeid, scfg["type"], "active", total // 1024, used // 1024, avail // 1024, used * 100 / total))
    width = max([len("Name")] + [len(r[0]) for r in rows])
    print(f"{'Name':<{width}} {'Type':>10} {'Status':>10} {'Total':>15} {'Used':>15} {'Available':>15} {'%':>8}")
    for name, kind, status, total, used, avail, percent in rows:
        print(f"{name:<{width}} {kind:>10} {status:>10} {total:15d} {used:15d} {avail:15d} {percent:7.2f}%")
    return 0


def cmd_set(ctx: Context, argv: list[str]) -> int:
    usage = "pvesm set <storage> [OPTIONS]"
    schema = storage.schema_for(_version(ctx))
    known = {key: True for key in schema.properties}
    known.update({"delete": True, "digest": True})
    for key in ("type", "storage"):
        known.pop(key, None)
    positional, opts = parse_options(argv, known, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    storeid = positional[0]
    for key, value in opts.items():
        prop = schema.properties.get(key)
        if prop is None:
            continue
        try:
            check_prop(prop, value)
        except ConfigError as err:
            raise Fail(f"400 Parameter verification failed.\n{key}: {err}\n\n{usage}") from err
    delete = [k.strip() for k in opts.pop("delete", "").split(",") if k.strip()]
    opts.pop("digest", None)
    now = ctx.state.now()
    try:
        timeout = float(ctx.state.scenario_json().get("cfs_lock_timeout", pmxcfs.LOCK_ACQUIRE_TIMEOUT))
        with pmxcfs.cfs_lock(ctx.pve, "file-storage_cfg", now, ctx.state.node_quorate(ctx.node), timeout):
            parsed = _config(ctx)
            scfg = parsed.ids.get(storeid)
            if scfg is None:
                raise ConfigError(f"storage '{storeid}' does not exist")
            section_type = str(scfg["type"])
            warnings: list[str] = []
            values = {k: schema.check_value(section_type, k, v) for k, v in opts.items()}
            checked = check_config(schema, section_type, values, create=False, warnings=warnings)
            checked.pop("type", None)
            options = schema.options[section_type]
            for key in delete:
                spec = options.get(key)
                if spec is None:
                    raise ConfigError(f"no such option '{key}'")
                if not spec.optional:
                    raise ConfigError(f"unable to delete required option '{key}'")
                if spec.fixed:
                    raise ConfigError(f"unable to delete fixed option '{key}'")
                if key in checked:
                    raise ConfigError(f"cannot set and delete property '{key}' at the same time!")
                scfg.pop(key, None)
            scfg.update(checked)
            with ctx.state.locked():
                count = int(ctx.state.read("names.json", {}).get("storage_rewrites", 0)) + 1
                ctx.state.write("names.json", {**ctx.state.read("names.json", {}), "storage_rewrites": count})
            text = storage.write_storage_cfg(_version(ctx), parsed, count,
                                             int(ctx.state.scenario_json().get("seed", 0)))  # fmt: skip
            pmxcfs.set_contents(ctx.pve, "storage.cfg", text)
    except ConfigError as err:
        raise Fail(f"update storage failed: {err}") from err
    except pmxcfs.PmxcfsError as err:
        raise Fail(f"update storage failed: {err}") from err
    return 0


def cmd_apiinfo(ctx: Context, argv: list[str]) -> int:
    release = ".".join(str(ctx.state.scenario_json().get("pve_version", "8.4.1")).split(".")[:2])
    apiver, apiage = APIVER.get(release, (10, 1))
    print(f"APIVER {apiver}")
    print(f"APIAGE {apiage}")
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    reactor.tick(ctx.state)
    if not argv:
        raise Fail("ERROR: no command specified\nUSAGE: pvesm <COMMAND> [ARGS] [OPTIONS]")
    handlers = {"path": cmd_path, "alloc": cmd_alloc, "free": cmd_free, "list": cmd_list, "status": cmd_status,
                "set": cmd_set, "apiinfo": cmd_apiinfo}  # fmt: skip
    handler = handlers.get(argv[0])
    if handler is None:
        raise Fail(f"ERROR: unknown command 'pvesm {' '.join(argv)}'\nUSAGE: pvesm <COMMAND> [ARGS] [OPTIONS]")
    return handler(ctx, argv[1:])


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
