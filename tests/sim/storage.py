"""storage.cfg as PVE 8 with a given linstor-proxmox version reads and writes it.

Option tables come from pve-storage 8.3.6 (`options()` of each plugin) and from LINSTORPlugin.pm
at the plugin tags v5.2.2, v7.0.1 and v8.3.0 (linstor.md section 2.2).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from . import sectionconfig as sc
from .sectionconfig import Opt, Prop

R = Opt(optional=False)  # required
F = Opt(optional=False, fixed=True)  # required, only settable on creation
O = Opt()  # noqa: E741 - optional

_BOOLEANS = (
    "disable shared krbd sparse saferemove tagged_only mkdir create-base-path create-subdirs fuse nowritecache "
    "skip-cert-verification nocow"
).split()
_INTEGERS = {"maxfiles": (0, None), "max-protected-backups": (-1, None), "port": (1, 65535)}

# Every property some storage plugin of PVE 8.4 declares (unified mode: one global list).
_PVE_PROPERTIES = (
    "content disable maxfiles max-protected-backups shared subdir preallocation content-dirs options port nodes "
    "prune-backups format bwlimit fingerprint comment authsupported base blocksize comstar_hg comstar_tg "
    "create-base-path create-subdirs data-pool datastore domain encryption-key export fs-name fuse is_mountpoint "
    "iscsiprovider keyring krbd lio_tpg master-pubkey mkdir monhost mountpoint namespace nocow nowritecache "
    "password path pool portal saferemove saferemove_throughput server share skip-cert-verification smbversion "
    "sparse tagged_only target thinpool username vgname"
).split()

_COMMON = {"nodes": O, "disable": O, "content": O}
_PVE_TYPES: dict[str, dict[str, Opt]] = {
    "dir": {
        "path": F, "content-dirs": O, "shared": O, "maxfiles": O, "prune-backups": O, "max-protected-backups": O,
        "format": O, "mkdir": O, "create-base-path": O, "create-subdirs": O, "is_mountpoint": O, "bwlimit": O,
        "preallocation": O,
    },
    "lvm": {"vgname": F, "shared": O, "saferemove": O, "saferemove_throughput": O, "base": Opt(fixed=True),
            "tagged_only": O, "bwlimit": O},
    "lvmthin": {"thinpool": F, "vgname": F, "bwlimit": O},
    "zfspool": {"pool": F, "blocksize": O, "sparse": O, "bwlimit": O, "mountpoint": O},
    "nfs": {"path": F, "content-dirs": O, "server": F, "export": F, "maxfiles": O, "prune-backups": O,
            "max-protected-backups": O, "options": O, "format": O, "mkdir": O, "create-base-path": O,
            "create-subdirs": O, "bwlimit": O, "preallocation": O},
    "cifs": {"path": F, "content-dirs": O, "server": F, "share": F, "subdir": O, "maxfiles": O,
             "prune-backups": O, "max-protected-backups": O, "format": O, "username": O, "password": O,
             "domain": O, "smbversion": O, "mkdir": O, "create-base-path": O, "create-subdirs": O, "bwlimit": O,
             "preallocation": O, "options": O},
    "rbd": {"monhost": O, "pool": O, "data-pool": O, "namespace": O, "username": O, "krbd": O, "keyring": O,
            "bwlimit": O},
    "cephfs": {"path": F, "content-dirs": O, "monhost": O, "subdir": O, "options": O, "username": O, "format": O,
               "mkdir": O, "create-base-path": O, "create-subdirs": O, "fuse": O, "bwlimit": O, "maxfiles": O,
               "keyring": O, "prune-backups": O, "max-protected-backups": O, "fs-name": O},
    "pbs": {"server": F, "datastore": F, "namespace": O, "port": O, "username": O, "password": O,
            "encryption-key": O, "master-pubkey": O, "maxfiles": O, "prune-backups": O,
            "max-protected-backups": O, "fingerprint": O},
    "iscsi": {"portal": F, "target": F, "bwlimit": O},
    "btrfs": {"path": F, "shared": O, "maxfiles": O, "prune-backups": O, "max-protected-backups": O, "format": O,
              "is_mountpoint": O, "nocow": O, "mkdir": O, "create-base-path": O, "create-subdirs": O,
              "preallocation": O},
}  # fmt: skip
for _opts in _PVE_TYPES.values():
    _opts.update(_COMMON)

# content: (valid, default) per type (plugindata).
CONTENT: dict[str, tuple[set[str], set[str]]] = {
    "dir": ({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import"}, {"images", "rootdir"}),
    "lvm": ({"images", "rootdir"}, {"images"}),
    "lvmthin": ({"images", "rootdir"}, {"images", "rootdir"}),
    "zfspool": ({"images", "rootdir"}, {"images", "rootdir"}),
    "nfs": ({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}, {"images"}),
    "cifs": ({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}, {"images"}),
    "rbd": ({"images", "rootdir"}, {"images"}),
    "cephfs": ({"vztmpl", "iso", "backup", "snippets", "import"}, {"backup"}),
    "pbs": ({"backup", "none"}, {"backup"}),
    "iscsi": ({"images", "none"}, {"images"}),
    "btrfs": ({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import"}, {"images", "rootdir"}),
    "drbd": ({"images", "rootdir"}, {"images"}),
}
SHARED_STORAGE = {"iscsi", "nfs", "cifs", "rbd", "cephfs", "iscsidirect", "glusterfs", "zfs", "drbd", "pbs"}

# linstor-proxmox options() per release line; `properties` are what the plugin adds to the global list.
_DRBD_COMMON = {"controller": O, "resourcegroup": R, "preferlocal": O, "statuscache": O, "content": O,
                "disable": O, "nodes": O, "apicrt": O, "apikey": O, "apica": O}  # fmt: skip
DRBD_OPTIONS: dict[str, dict[str, Opt]] = {
    "5": {**_DRBD_COMMON, "controllervm": O},
    "6": dict(_DRBD_COMMON),
    "7": dict(_DRBD_COMMON),
    "8.0": {**_DRBD_COMMON, "exactsize": O},
    "8.2": {**_DRBD_COMMON, "exactsize": O, "allowtwoprimaries": O},
    "8.3": {**_DRBD_COMMON, "exactsize": O, "allowtwoprimaries": O, "clusterlocktimeout": O, "searchdomain": O},
}
DRBD_PROPERTIES: dict[str, Prop] = {
    "controller": Prop(), "controllervm": Prop(), "resourcegroup": Prop(), "preferlocal": Prop(),
    "exactsize": Prop(), "allowtwoprimaries": Prop(), "statuscache": Prop("integer", 0, 7200),
    "apicrt": Prop(), "apikey": Prop(), "apica": Prop(), "clusterlocktimeout": Prop("integer", 0),
    "searchdomain": Prop(),
}  # fmt: skip


def drbd_line(plugin_version: str) -> str:
    major, minor = (int(part) for part in plugin_version.split(".")[:2])
    if major >= 8:
        return "8.3" if minor >= 3 else "8.2" if minor >= 2 else "8.0"
    return str(major)


def schema_for(plugin_version: str, rewrite_count: int = 0, seed: int = 0) -> sc.Schema:
    """The storage.cfg schema as PVE sees it with `plugin_version` installed."""
    drbd_opts = DRBD_OPTIONS[drbd_line(plugin_version)]
    properties: dict[str, Prop] = {}
    for key in _PVE_PROPERTIES:
        if key in _BOOLEANS:
            properties[key] = Prop("boolean")
        elif key in _INTEGERS:
            low, high = _INTEGERS[key]
            properties[key] = Prop("integer", low, high)
        else:
            properties[key] = Prop()
    for key in drbd_opts:
        if key in DRBD_PROPERTIES:
            properties[key] = DRBD_PROPERTIES[key]
    options = {name: dict(opts) for name, opts in _PVE_TYPES.items()}
    options["drbd"] = dict(drbd_opts)
    # Perl hashes iterate in a per-process random order: a rewrite may list content differently.
    rng = random.Random(f"{seed}:{rewrite_count}")

    def decode(section_type: str, key: str, value: Any, warnings: list[str]) -> Any:
        if key in ("content", "nodes"):
            items = [item for item in str(value).replace(";", ",").split(",") if item.strip()]
            items = [item.strip() for item in items]
            if key == "nodes":
                return {item: 1 for item in items}
            valid = CONTENT.get(section_type, (set(), set()))[0]
            result = {}
            for item in items:
                if item not in valid:
                    warnings.append(f"storage does not support content type '{item}'")
                    continue
                result[item] = 1
            if "none" in result and len(result) > 1:
                raise sc.ConfigError("unable to combine 'none' with other content types")
            if not result and "none" not in valid:
                raise sc.ConfigError("storage does not support content type 'none'")
            return result
        return value

    def encode(section_type: str, key: str, value: Any) -> str:
        if key in ("content", "nodes") and isinstance(value, dict):
            items = sorted(value)
            rng.shuffle(items)
            text = ",".join(items)
            return text or ("none" if key == "content" else "")
        return str(value)

    return sc.Schema(properties=properties, options=options, decode=decode, encode=encode)


def parse_storage_cfg(plugin_version: str, raw: str, filename: str = "/etc/pve/storage.cfg") -> sc.Parsed:
    """PVE::Storage::Plugin::parse_config: SectionConfig plus the implicit `local` and defaults."""
    schema = schema_for(plugin_version)
    parsed = sc.parse(schema, filename, raw)
    local = parsed.ids.get("local")
    if local is None or local["type"] != "dir" or local.get("path", "/var/lib/vz") != "/var/lib/vz":
        parsed.ids["local"] = {
            "type": "dir",
            "path": "/var/lib/vz",
            "prune-backups": "keep-all=1",
            "content": {c: 1 for c in ("backup", "images", "iso", "rootdir", "snippets", "vztmpl")},
        }
        # priority 0 forces `local` to the top when the file is written back.
        parsed.order["local"] = 0
    parsed.ids["local"].setdefault("path", "/var/lib/vz")
    parsed.ids["local"].pop("nodes", None)
    for scfg in parsed.ids.values():
        default = CONTENT.get(scfg["type"])
        if default and not scfg.get("content"):
            scfg["content"] = {c: 1 for c in default[1]}
        if scfg["type"] in SHARED_STORAGE:
            scfg["shared"] = 1
    return parsed


def write_storage_cfg(plugin_version: str, parsed: sc.Parsed, rewrite_count: int, seed: int) -> str:
    return sc.write(schema_for(plugin_version, rewrite_count, seed), parsed)


def read_storage_cfg(pve_dir: Path, plugin_version: str) -> sc.Parsed:
    path = pve_dir / "storage.cfg"
    raw = path.read_text() if path.exists() else ""
    return parse_storage_cfg(plugin_version, raw)


def controllers_of(scfg: dict[str, Any]) -> list[str]:
    """LINSTORPlugin get_controllers: the `controller` option split on ',' (default localhost)."""
    return [host.strip() for host in str(scfg.get("controller") or "localhost").split(",")]
