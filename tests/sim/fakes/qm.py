"""Fake `qm` (qemu-server 8.4): create, set, config, status, start, stop, shutdown, destroy, list,
disk import / importdisk, migrate. Node-local like the real one (proxmox.md section 1)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

from .. import drbd, guests, ha, plugin, pmxcfs, reactor, storage, vmconf, vms
from ._cli import Context, Fail, parse_options, run, warn

QEMU_VERSION = "9.2.0"
USAGE_CREATE = "qm create <vmid> [OPTIONS]"
VM_OPTIONS = {
    "memory", "cores", "sockets", "name", "vga", "scsihw", "boot", "onboot", "startup", "protection", "ostype",
    "agent", "hookscript", "description", "cpu", "bios", "machine", "tags", "balloon", "numa", "kvm", "tablet",
    "serial0", "serial1", "serial2", "serial3", "net0", "net1", "net2", "net3", "efidisk0", "tpmstate0",
    "args", "hotplug", "localtime", "keyboard", "bootdisk", "cdrom", "citype", "ciuser", "ipconfig0", "sshkeys",
}  # fmt: skip
DRIVE = re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$")
NEW_DISK = re.compile(r"^(([^/:\s]+):)?(\d+(\.\d+)?)$")


def _known(extra: dict[str, bool]) -> dict[str, bool]:
    known = {key: True for key in VM_OPTIONS}
    for bus, count in (("ide", 4), ("sata", 6), ("scsi", 31), ("virtio", 16)):
        for index in range(count):
            known[f"{bus}{index}"] = True
    for index in range(8):
        known[f"unused{index}"] = True
    known.update(extra)
    return known


def _vmid(value: str, usage: str) -> int:
    if not re.fullmatch(r"[1-9]\d{2,8}", value):
        raise Fail(f"400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid "
                   f"VM ID\n\n{usage}")  # fmt: skip
    return int(value)


def _plugin_version(ctx: Context) -> str:
    return str(ctx.state.scenario_json().get("plugin_version", "8.3.0"))


def _storage_cfg(ctx: Context) -> storage.sc.Parsed:
    parsed = storage.read_storage_cfg(ctx.pve, _plugin_version(ctx))
    for line in parsed.warnings:
        warn(line)
    return parsed


def _load_local(ctx: Context, vmid: int) -> vmconf.VmConfig:
    path = vmconf.conf_path(ctx.pve, ctx.node, vmid)
    if not path.exists():
        raise Fail(f"Configuration file 'nodes/{ctx.node}/qemu-server/{vmid}.conf' does not exist")
    return vmconf.parse(path.read_text())


def _save(ctx: Context, vmid: int, conf: vmconf.VmConfig) -> None:
    try:
        pmxcfs.set_contents(ctx.pve, f"nodes/{ctx.node}/qemu-server/{vmid}.conf", conf.render())
    except pmxcfs.PmxcfsError as err:
        raise Fail(str(err)) from err


def _require_quorum(ctx: Context) -> None:
    if not ctx.state.node_quorate(ctx.node):
        raise Fail(pmxcfs.NO_QUORUM)


def _size_text(gib: float) -> str:
    return f"{int(gib)}G" if float(gib).is_integer() else f"{int(gib * 1024)}M"


def _alloc_disk(ctx: Context, key: str, value: str, vmid: int, parsed: storage.sc.Parsed) -> str:
    """A `STORAGE:SIZE` drive value: allocate the volume and return the config value."""
    first, _, rest = value.partition(",")
    match = NEW_DISK.match(first)
    assert match
    storeid = match.group(2)
    if storeid is None:
        raise Fail(f"unable to create VM {vmid} - missing storage ID for new disk")
    gib = float(match.group(3))
    scfg = parsed.ids.get(storeid)
    if scfg is None:
        raise Fail(f"storage '{storeid}' does not exist")
    if "images" not in scfg.get("content", {}):
        raise Fail(f"storage '{storeid}' does not support vm images")
    backend = plugin.lookup(ctx.state, ctx.node, storeid, scfg)
    if backend is not None:
        volname = backend.alloc(vmid, "raw", None, int(gib * 1024 * 1024))
    else:
        volname = _local_volume(ctx, storeid, vmid)
    volid = f"{storeid}:{volname}"
    options = ",".join(part for part in [rest] if part)
    config_value = f"{volid},size={_size_text(gib)}" + (f",{options}" if options else "")
    print(f"{key}: successfully created disk '{volid},size={_size_text(gib)}'", flush=True)
    return config_value


def _local_volume(ctx: Context, storeid: str, vmid: int) -> str:
    """Stock storages: a name like `vm-<id>-disk-<n>` is all the simulation keeps."""
    used = set()
    for path in (ctx.state.pve / "nodes").glob("*/qemu-server/*.conf"):
        used.update(re.findall(rf"{re.escape(storeid)}:(vm-{vmid}-disk-\d+)", path.read_text()))
    index = 0
    while f"vm-{vmid}-disk-{index}" in used:
        index += 1
    return f"vm-{vmid}-disk-{index}"


def _mac(ctx: Context, vmid: int, key: str) -> str:
    seed = ctx.state.scenario_json().get("seed", 0)
    rng = random.Random(f"{seed}:mac:{vmid}:{key}")
    return "BC:24:11:" + ":".join(f"{rng.randrange(256):02X}" for _ in range(3))


def _net_value(ctx: Context, vmid: int, key: str, value: str) -> str:
    parts = value.split(",")
    model, _, mac = parts[0].partition("=")
    if model in ("virtio", "e1000", "rtl8139", "vmxnet3") and not mac:
        parts[0] = f"{model}={_mac(ctx, vmid, key)}"
    return ",".join(parts)


def _uuid(ctx: Context, vmid: int, what: str) -> str:
    seed = ctx.state.scenario_json().get("seed", 0)
    return str(uuid.UUID(int=random.Random(f"{seed}:{what}:{vmid}").getrandbits(128), version=4))


# --- commands -----------------------------------------------------------------------------------
def cmd_create(ctx: Context, argv: list[str]) -> int:
    positional, opts = parse_options(argv, _known({"start": False, "unique": False, "pool": True}), USAGE_CREATE)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{USAGE_CREATE}")
    vmid = _vmid(positional[0], USAGE_CREATE)
    _require_quorum(ctx)
    owner = vmconf.find_owner(ctx.pve, vmid)
    if owner is not None:
        raise Fail(f"unable to create VM {vmid} - VM {vmid} already exists on node '{owner}'")
    parsed = _storage_cfg(ctx)
    start = opts.pop("start", "0") == "1"
    opts.pop("unique", None)
    opts.pop("pool", None)
    values: dict[str, str] = {}
    created: list[tuple[plugin.DrbdStorage | None, str]] = []
    # Reserve the VMID first, as create_vm does with an empty config under the lock.
    _save(ctx, vmid, vmconf.VmConfig())
    try:
        for key in sorted(opts):
            value = opts[key]
            if DRIVE.match(key) and NEW_DISK.match(value.split(",", 1)[0]):
                value = _alloc_disk(ctx, key, value, vmid, parsed)
                storeid, _, volname = vmconf.drive_file(value).partition(":")
                created.append((plugin.lookup(ctx.state, ctx.node, storeid, parsed.ids[storeid]), volname))
            elif re.fullmatch(r"net\d+", key):
                value = _net_value(ctx, vmid, key, value)
            values[key] = value
    except (Fail, plugin.StorageError) as err:
        for backend, volname in created:
            if backend is not None:
                try:
                    backend.free(volname)
                except plugin.StorageError as free_err:
                    warn(str(free_err))
        vmconf.conf_path(ctx.pve, ctx.node, vmid).unlink(missing_ok=True)
        message = err.message if isinstance(err, Fail) else str(err)
        if not message.startswith("unable to create VM"):
            message = f"unable to create VM {vmid} - {message}"
        raise Fail(message) from err
    values.setdefault("boot", vmconf.default_boot_order(values))
    if not values["boot"]:
        del values["boot"]
    values["meta"] = f"creation-qemu={QEMU_VERSION},ctime={int(ctx.state.now())}"
    values.setdefault("smbios1", f"uuid={_uuid(ctx, vmid, 'smbios')}")
    values["vmgenid"] = _uuid(ctx, vmid, "vmgenid")
    description = values.pop("description", "")
    _save(ctx, vmid, vmconf.VmConfig(values=values, description=description))
    if start:
        return cmd_start(ctx, [str(vmid)])
    return 0


def cmd_set(ctx: Context, argv: list[str]) -> int:
    usage = "qm set <vmid> [OPTIONS]"
    positional, opts = parse_options(
        argv, _known({"delete": True, "digest": True, "revert": True, "skiplock": False, "force": False}), usage
    )
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    conf = _load_local(ctx, vmid)
    _require_quorum(ctx)
    params = dict(opts)
    print(f"update VM {vmid}: " + " ".join(f"-{k} {params[k]}" for k in sorted(params)), flush=True)
    parsed = None
    for key in [k.strip() for k in opts.pop("delete", "").split(",") if k.strip()]:
        if key not in conf.values:
            continue
        if DRIVE.match(key) and conf.protected():
            raise Fail(f"can't remove drive '{key}' - protection mode enabled")
        value = conf.values.pop(key)
        if DRIVE.match(key) and not vmconf.is_cdrom(value) and ":" in vmconf.drive_file(value):
            index = 0
            while f"unused{index}" in conf.values:
                index += 1
            conf.values[f"unused{index}"] = vmconf.drive_file(value)
    for key in ("digest", "revert", "skiplock", "force"):
        opts.pop(key, None)
    for key in sorted(opts):
        value = opts[key]
        if DRIVE.match(key) and NEW_DISK.match(value.split(",", 1)[0]):
            parsed = parsed or _storage_cfg(ctx)
            try:
                value = _alloc_disk(ctx, key, value, vmid, parsed)
            except plugin.StorageError as err:
                raise Fail(str(err)) from err
        elif key == "hookscript":
            _check_hookscript(ctx, value)
        elif re.fullmatch(r"net\d+", key):
            value = _net_value(ctx, vmid, key, value)
        if key == "description":
            conf.description = value
        else:
            conf.values[key] = value
    _save(ctx, vmid, conf)
    return 0


def _check_hookscript(ctx: Context, volid: str) -> None:
    storeid, _, rel = volid.partition(":")
    if not rel.startswith("snippets/"):
        raise Fail(f"'{volid}' is not in the snippets directory")
    script = ctx.root / "var/lib/vz/snippets" / rel[len("snippets/") :]
    if not script.exists():
        raise Fail(f"script '{volid}' does not exist")
    if not script.stat().st_mode & 0o111:
        raise Fail(f"script '{volid}' is not executable")


def cmd_config(ctx: Context, argv: list[str]) -> int:
    usage = "qm config <vmid> [OPTIONS]"
    positional, _ = parse_options(argv, {"current": False, "snapshot": True}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    conf = _load_local(ctx, _vmid(positional[0], usage))
    for line in conf.qm_config_lines():
        print(line)
    return 0


def cmd_status(ctx: Context, argv: list[str]) -> int:
    usage = "qm status <vmid> [OPTIONS]"
    positional, opts = parse_options(argv, {"verbose": False}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    conf = _load_local(ctx, vmid)
    status = vms.status(ctx.state, vmid)
    if opts.get("verbose") == "1":
        info = {"status": status, "vmid": str(vmid), "name": conf.values.get("name", f"VM {vmid}"),
                "qmpstatus": status}  # fmt: skip
        if status == "running":
            entry = vms.runtime(ctx.state)[str(vmid)]
            info["uptime"] = str(int(ctx.state.now() - float(entry["since"])))
            info["pid"] = str(10000 + vmid)
        for key in sorted(info):
            print(f"{key}: {info[key]}")
    else:
        print(f"status: {status}")
    return 0


def cmd_start(ctx: Context, argv: list[str]) -> int:
    usage = "qm start <vmid> [OPTIONS]"
    positional, _ = parse_options(argv, {"skiplock": False, "timeout": True, "machine": True}, usage)
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    _load_local(ctx, vmid)
    _require_quorum(ctx)
    if ha.is_managed(ctx.pve, vmid):
        print(f"Requesting HA start for VM {vmid}", flush=True)
        _ha_set_state(ctx, vmid, "started")
        return 0
    try:
        for line in vms.start(ctx.state, ctx.node, vmid, _plugin_version(ctx)):
            warn(line)
    except vms.VmError as err:
        raise Fail(str(err)) from err
    return 0


def _ha_set_state(ctx: Context, vmid: int, value: str) -> None:
    with ctx.state.locked():
        parsed = ha.read_resources(ctx.pve)
        parsed.ids[f"vm:{vmid}"]["state"] = value
        try:
            pmxcfs.set_contents(ctx.pve, "ha/resources.cfg", ha.write_resources(parsed))
        except pmxcfs.PmxcfsError as err:
            raise Fail(str(err)) from err


def cmd_stop(ctx: Context, argv: list[str], verb: str = "stop") -> int:
    usage = f"qm {verb} <vmid> [OPTIONS]"
    positional, _ = parse_options(
        argv,
        {"skiplock": False, "timeout": True, "keepActive": False, "forceStop": False, "overrule-shutdown": False},
        usage,
    )  # fmt: skip
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    _load_local(ctx, vmid)
    if ha.is_managed(ctx.pve, vmid):
        print(f"Requesting HA stop for VM {vmid}", flush=True)
        _ha_set_state(ctx, vmid, "stopped")
        ha.queue_command(ctx.state, ["stop", f"vm:{vmid}"])
        return 0
    if vms.status(ctx.state, vmid) == "running":
        vms.stop(ctx.state, vmid)
    return 0


def cmd_destroy(ctx: Context, argv: list[str]) -> int:
    usage = "qm destroy <vmid> [OPTIONS]"
    positional, opts = parse_options(argv, {"purge": False, "skiplock": False, "destroy-unreferenced-disks": False},
                                     usage)  # fmt: skip
    if len(positional) != 1:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    conf = _load_local(ctx, vmid)
    _require_quorum(ctx)
    if conf.protected():
        raise Fail(f"can't remove VM {vmid} - protection mode enabled")
    resources = ha.read_resources(ctx.pve)
    in_ha = f"vm:{vmid}" in resources.ids
    if in_ha and opts.get("purge") != "1":
        raise Fail(f"unable to remove VM {vmid} - used in HA resources and purge parameter not set.")
    if vms.status(ctx.state, vmid) == "running":
        raise Fail(f"VM {vmid} is running - destroy failed")
    parsed = _storage_cfg(ctx)
    for key, value in sorted(conf.values.items()):
        if not (DRIVE.match(key) or key.startswith("unused")) or vmconf.is_cdrom(value):
            continue
        volume = vmconf.drive_file(value)
        if ":" not in volume:
            continue
        storeid, _, volname = volume.partition(":")
        backend = plugin.lookup(ctx.state, ctx.node, storeid, parsed.ids.get(storeid, {}))
        if backend is None:
            continue
        try:
            backend.free(volname)
        except plugin.StorageError as err:
            warn(f"Could not remove disk '{volume}', check manually: {err}")
    if in_ha:
        del resources.ids[f"vm:{vmid}"]
        pmxcfs.set_contents(ctx.pve, "ha/resources.cfg", ha.write_resources(resources))
        print(f"purging VM {vmid} from related configurations..", flush=True)
    vmconf.conf_path(ctx.pve, ctx.node, vmid).unlink()
    return 0


def cmd_list(ctx: Context, argv: list[str]) -> int:
    parse_options(argv, {"full": False}, "qm list [OPTIONS]")
    print(f"{'VMID':>10} {'NAME':<20} {'STATUS':<10} {'MEM(MB)':<10} {'BOOTDISK(GB)':<12} PID")
    for vmid, owner in sorted(vmconf.all_vms(ctx.pve).items()):
        if owner != ctx.node:
            continue
        conf = vmconf.parse(vmconf.conf_path(ctx.pve, owner, vmid).read_text())
        status = vms.status(ctx.state, vmid)
        size = 0.0
        for value in conf.drives().values():
            match = re.search(r"size=(\d+)([GM])", value)
            if match:
                size = int(match.group(1)) / (1024 if match.group(2) == "M" else 1)
                break
        pid = 10000 + vmid if status == "running" else 0
        print(f"{vmid:>10} {conf.values.get('name', ''):<20} {status:<10} {conf.values.get('memory', '512'):<10} "
              f"{size:<12.2f} {pid}")  # fmt: skip
    return 0


def cmd_disk_import(ctx: Context, argv: list[str]) -> int:
    usage = "qm disk import <vmid> <source> <storage> [OPTIONS]"
    positional, opts = parse_options(argv, {"format": True, "target-disk": True}, usage)
    if len(positional) != 3:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    source, storeid = positional[1], positional[2]
    conf = _load_local(ctx, vmid)
    src = ctx.host_path(source)
    if not src.is_file():
        raise Fail(f"{source}: non-existent or non-regular file")
    parsed = _storage_cfg(ctx)
    scfg = parsed.ids.get(storeid)
    if scfg is None:
        raise Fail(f"storage '{storeid}' does not exist")
    if "images" not in scfg.get("content", {}):
        raise Fail(f"storage {storeid} does not support vm images")
    target = opts.get("target-disk")
    if target and target in conf.values:
        raise Fail(f"cowardly refusing to overwrite existing entry: {target}")
    with open(src, "rb") as handle:
        if handle.read(4) == b"QFI\xfb":
            raise Fail("sim: only raw source images can be imported in the simulation")
    size = src.stat().st_size
    print(f"importing disk '{source}' to VM {vmid} ...", flush=True)
    backend = plugin.lookup(ctx.state, ctx.node, storeid, scfg)
    if backend is None:
        volname = _local_volume(ctx, storeid, vmid)
    else:
        try:
            volname = backend.alloc(vmid, opts.get("format", "raw"), None, (size + 1023) // 1024)
            backend.activate(volname)
        except plugin.StorageError as err:
            raise Fail(str(err)) from err
        res = backend.linstor_name(volname)
        try:
            with ctx.state.locked():
                drbd.open_for_write(ctx.state, ctx.node, res, f"import:{vmid}")
            _copy_with_progress(src, drbd.node_device(ctx.state, ctx.node, res), size)
        except drbd.DrbdError as err:
            try:
                backend.free(volname)
            finally:
                raise Fail(f"qemu-img: {err}") from err
        finally:
            with ctx.state.locked():
                drbd.close(ctx.state, ctx.node, res, f"import:{vmid}")
    volid = f"{storeid}:{volname}"
    if target:
        key = target
        conf.values[key] = volid
    else:
        index = 0
        while f"unused{index}" in conf.values:
            index += 1
        key = f"unused{index}"
        conf.values[key] = volid
    _save(ctx, vmid, conf)
    print(f"{key}: successfully imported disk '{volid}'", flush=True)
    return 0


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _copy_with_progress(src: Path, dst: Path, size: int) -> None:
    done = 0
    step = max(size // 4, 4 * 1024 * 1024)
    with open(src, "rb") as reader, open(dst, "r+b") as writer:
        print(f"transferred {human(0)} of {human(size)} (0.00%)", flush=True)
        while True:
            chunk = reader.read(step)
            if not chunk:
                break
            writer.write(chunk)
            done += len(chunk)
            print(f"transferred {human(done)} of {human(size)} ({done * 100 / max(size, 1):.2f}%)", flush=True)


def cmd_migrate(ctx: Context, argv: list[str]) -> int:
    usage = "qm migrate <vmid> <target> [OPTIONS]"
    positional, _ = parse_options(argv, {"online": False, "with-local-disks": False, "force": False}, usage)
    if len(positional) != 2:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid, target = _vmid(positional[0], usage), positional[1]
    _load_local(ctx, vmid)
    if ha.is_managed(ctx.pve, vmid):
        print(f"Requesting HA migration for VM {vmid} to node {target}", flush=True)
        ha.queue_command(ctx.state, ["migrate", f"vm:{vmid}", target])
        return 0
    raise Fail("sim: migration of non-HA VMs is not simulated", 2)


def _perl_json(data: dict[str, object]) -> str:
    # Perl's to_json(pretty, canonical): 3-space indent, "key" : value, sorted keys (proxmox.md section 10.2).
    return json.dumps(data, indent=3, sort_keys=True, separators=(",", " : "))


def cmd_guest(ctx: Context, argv: list[str]) -> int:
    """`qm guest exec <vmid> [--timeout N] [--pass-stdin 0|1] [--] <prog> [args...]` (proxmox.md section 10)."""
    usage = "qm guest exec <vmid> [<extra-args>] [OPTIONS]"
    if not argv or argv[0] != "exec":
        raise Fail(f"ERROR: unknown command 'qm guest {' '.join(argv)}'\nUSAGE: qm <COMMAND> [ARGS] [OPTIONS]")
    words = argv[1:]
    program = words[words.index("--") + 1:] if "--" in words else []
    words = words[:words.index("--")] if "--" in words else words
    positional, opts = parse_options(words, {"timeout": True, "pass-stdin": True, "synchronous": True}, usage)
    if not positional:
        raise Fail(f"400 not enough arguments\n{usage}")
    vmid = _vmid(positional[0], usage)
    program = positional[1:] + program
    conf = _load_local(ctx, vmid)
    if "agent" not in conf.values:
        raise Fail("No QEMU guest agent configured")
    if vms.status(ctx.state, vmid) != "running":
        raise Fail(f"VM {vmid} is not running")
    root = guests.root(ctx.state, vmid)
    if root is None:
        raise Fail("QEMU guest agent is not running")
    stdin = sys.stdin.read() if opts.get("pass-stdin") == "1" else None
    if not program and stdin is None:
        raise Fail("command or input-data (or both) required")
    timeout = float(opts.get("timeout") or 30)
    command = ["unshare", "--mount", "--net", "--", "sh", "-c", 'mount --bind "$0/etc" /etc && exec "$@"', str(root),
               *program]  # fmt: skip
    try:
        done = subprocess.run(command, input=stdin or "", capture_output=True, text=True, timeout=timeout or None)
    except subprocess.TimeoutExpired:
        print("timeout reached, returning pid", file=sys.stderr)
        print(_perl_json({"pid": 4242}))
        return 0
    except FileNotFoundError as error:
        raise Fail(f"Agent error: Guest agent command failed, error was 'Failed to execute child process "
                   f"\u201c{program[0]}\u201d ({error.strerror})'") from error  # fmt: skip
    result: dict[str, object] = {"exitcode": done.returncode, "exited": 1}
    if done.stdout:
        result["out-data"] = done.stdout
    if done.stderr:
        result["err-data"] = done.stderr
    print(_perl_json(result))
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    reactor.tick(ctx.state)
    if not argv:
        raise Fail("ERROR: no command specified\nUSAGE: qm <COMMAND> [ARGS] [OPTIONS]")
    command, rest = argv[0], argv[1:]
    if command == "disk" and rest and rest[0] == "import":
        command, rest = "importdisk", rest[1:]
    handlers = {
        "create": cmd_create, "set": cmd_set, "config": cmd_config, "status": cmd_status, "start": cmd_start,
        "stop": cmd_stop, "shutdown": lambda c, a: cmd_stop(c, a, "shutdown"), "destroy": cmd_destroy,
        "list": cmd_list, "importdisk": cmd_disk_import, "migrate": cmd_migrate, "guest": cmd_guest,
    }  # fmt: skip
    handler = handlers.get(command)
    if handler is None:
        raise Fail(f"ERROR: unknown command 'qm {' '.join(argv)}'\nUSAGE: qm <COMMAND> [ARGS] [OPTIONS]")
    code = handler(ctx, rest)
    reactor.tick(ctx.state)
    return code


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
