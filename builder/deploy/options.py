"""What the admin asked the deploy command to do, validated before anything looks at the cluster.

Bad input costs one line and a non-zero exit; the cluster is only consulted afterwards (preflight).
`root` is the prefix for files read or written directly on this node (`/` in production; a
simulated node's root in tests).
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from builder.config import parse_interface, parse_ip, parse_size
from builder.errors import die

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

STATE_DIR = "var/lib/linstor-appliance"
VM_TAG = "linstor-appliance"
STORAGE_ID_RE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
NAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
SCHEDULE_RE = re.compile(r"^[\w:*,./~ -]{1,128}$")


class Mode(enum.StrEnum):
    deploy = "deploy"
    dry_run = "dry-run"
    resume = "resume"
    rollback = "rollback"


class Strategy(enum.StrEnum):
    # The VM disk is a LINSTOR resource the storage plugin never sees; the VM names its device path.
    device_path = "device-path"
    # The seed's way: a plugin volume vm-<id>-disk-1 exempted with storage.cfg's controllervm (plugin <= 5.2.2).
    controllervm = "controllervm"


@dataclass(frozen=True)
class Options:
    vmid: int
    mode: Mode = Mode.deploy
    image: Path | None = None
    manifest: Path | None = None
    sums: Path | None = None
    storage: str | None = None
    address: Interface | None = None
    gateway: Address | None = None
    dns: tuple[str, ...] = ()
    bridge: str = "vmbr0"
    redundancy: int = 3
    name: str = "linstor-controller"
    strategy: Strategy = Strategy.device_path
    allow_from: tuple[Network, ...] = ()
    register_node: bool = True
    backup_storage: str | None = None
    backup_schedule: str = "02:30"
    disk_size: int | None = None
    wait_timeout: float = 300.0
    ssh_options: tuple[str, ...] = ()
    # A new deploy may overwrite a VM disk whose database no journal accounts for, after backing it up.
    replace_vm_database: bool = False
    root: Path = Path("/")

    @property
    def resource(self) -> str:
        """The LINSTOR resource of the VM disk."""
        if self.strategy is Strategy.controllervm:
            return f"vm-{self.vmid}-disk-1"
        # Outside every name pattern of the plugin (vm-<id>-disk-<n>, pm-<hex>_<id>, ...), so Proxmox
        # never lists, activates or deletes it.
        return f"linstor-appliance-{self.vmid}"

    @property
    def device(self) -> str:
        """The VM disk's DRBD device as every node sees it."""
        return f"/dev/drbd/by-res/{self.resource}/0"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def host_path(self, path: str) -> Path:
        """A path on this node, under the root prefix."""
        return self.root / path.lstrip("/")

    # The journal keeps the options of a deploy, so --resume and --rollback need only the VMID.
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("image", "manifest", "sums", "address", "gateway", "mode", "strategy"):
            data[key] = None if data[key] is None else str(data[key])
        data["allow_from"] = [str(n) for n in self.allow_from]
        data["dns"] = list(self.dns)
        data["ssh_options"] = list(self.ssh_options)
        del data["root"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Options:
        return cls(
            vmid=int(data["vmid"]),
            mode=Mode(data.get("mode", "deploy")),
            image=_path(data.get("image")),
            manifest=_path(data.get("manifest")),
            sums=_path(data.get("sums")),
            storage=data.get("storage"),
            address=ipaddress.ip_interface(data["address"]) if data.get("address") else None,
            gateway=ipaddress.ip_address(data["gateway"]) if data.get("gateway") else None,
            dns=tuple(data.get("dns", ())),
            bridge=data.get("bridge", "vmbr0"),
            redundancy=int(data.get("redundancy", 3)),
            name=data.get("name", "linstor-controller"),
            strategy=Strategy(data.get("strategy", "device-path")),
            allow_from=tuple(ipaddress.ip_network(n) for n in data.get("allow_from", ())),
            register_node=bool(data.get("register_node", True)),
            backup_storage=data.get("backup_storage"),
            backup_schedule=data.get("backup_schedule", "02:30"),
            disk_size=data.get("disk_size"),
            wait_timeout=float(data.get("wait_timeout", 300.0)),
            ssh_options=tuple(data.get("ssh_options", ())),
            root=root,
        )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


# Settings a resumed deploy must keep: changing any of them midway would leave a half-built mix.
FIXED_ON_RESUME = ("image", "storage", "address", "gateway", "dns", "bridge", "redundancy", "name", "strategy",
                   "allow_from", "register_node", "backup_storage", "backup_schedule", "disk_size")  # fmt: skip


def merge_with_journal(given: Options, recorded: Options, explicit: set[str]) -> Options:
    """The recorded deploy's options, with what may change between attempts taken from `given`."""
    for name in FIXED_ON_RESUME:
        if name in explicit and getattr(given, name) != getattr(recorded, name):
            flag = "--ip" if name == "address" else "--" + name.replace("_", "-")
            die(f"{flag} differs from the unfinished deploy of VM {given.vmid} "
                f"({getattr(given, name)} instead of {getattr(recorded, name)})",
                hint="leave it out to use the recorded value, or roll back with --rollback first")  # fmt: skip
    return replace(recorded, mode=given.mode, wait_timeout=given.wait_timeout, ssh_options=given.ssh_options,
                   root=given.root)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Types are checked by from_args(), not argparse, so every bad value gets the same one-line error.
    parser.add_argument("--image", metavar="FILE", help="the appliance image (.raw or .raw.zst); manifest.json and "
                        "SHA256SUMS are expected next to it")  # fmt: skip
    parser.add_argument("--manifest", metavar="FILE", help="manifest.json of the image (default: next to it)")
    parser.add_argument("--sums", metavar="FILE", help="SHA256SUMS of the image (default: next to it)")
    parser.add_argument("--vmid", metavar="ID", help="VMID of the controller VM")
    parser.add_argument("--storage", metavar="ID", help="the drbd storage whose resource group holds the VM disk")
    parser.add_argument("--ip", metavar="CIDR", help="the VM's static address with prefix, e.g. 10.0.0.100/24")
    parser.add_argument("--gateway", metavar="IP", help="default gateway of the VM")
    parser.add_argument("--dns", metavar="IP", action="append", help="DNS server of the VM (repeatable)")
    parser.add_argument("--bridge", metavar="BRIDGE", help="bridge of the VM's network card (default vmbr0)")
    parser.add_argument("--redundancy", metavar="N", help="diskful replicas of the VM disk (default 3)")
    parser.add_argument("--name", metavar="NAME", help="VM name and LINSTOR node name (default linstor-controller)")
    parser.add_argument("--strategy", metavar="KIND", help="device-path (default) or controllervm "
                        "(linstor-proxmox 5.2.2 and older only)")  # fmt: skip
    parser.add_argument("--allow-from", metavar="CIDR", action="append",
                        help="network that may reach SSH and the REST API besides the cluster nodes (repeatable)")
    parser.add_argument("--no-register-node", action="store_true",
                        help="do not register the VM as a Controller node in LINSTOR")
    parser.add_argument("--backup-storage", metavar="ID", help="create a scheduled vzdump job to this storage")
    parser.add_argument("--backup-schedule", metavar="WHEN", help="calendar event of the backup job (default 02:30)")
    parser.add_argument("--disk-size", metavar="SIZE", help="VM disk size (default: the size the image was built "
                        "for)")  # fmt: skip
    parser.add_argument("--wait-timeout", metavar="SECONDS", help="how long to wait for the controller in the VM "
                        "(default 300)")  # fmt: skip
    parser.add_argument("--ssh-option", metavar="OPTION", action="append",
                        help="extra ssh -o option for reaching the other nodes (repeatable)")
    parser.add_argument("--replace-vm-database", action="store_true",
                        help="deploy even though the VM disk of an earlier deploy holds a database changed since "
                        "(it is backed up first)")  # fmt: skip
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--dry-run", action="store_true", help="check and print the plan, change nothing")
    modes.add_argument("--resume", action="store_true", help="continue an interrupted deploy of this VMID")
    modes.add_argument("--rollback", action="store_true", help="undo a deploy of this VMID")


def explicit_options(args: argparse.Namespace) -> set[str]:
    """Which Options fields the command line set (for comparing with a recorded deploy)."""
    names = {"image": "image", "storage": "storage", "ip": "address", "gateway": "gateway", "dns": "dns",
             "bridge": "bridge", "redundancy": "redundancy", "name": "name", "strategy": "strategy",
             "allow_from": "allow_from", "backup_storage": "backup_storage", "backup_schedule": "backup_schedule",
             "disk_size": "disk_size"}  # fmt: skip
    found = {field for arg, field in names.items() if getattr(args, arg, None) is not None}
    if getattr(args, "no_register_node", False):
        found.add("register_node")
    return found


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> Options:
    mode = Mode.deploy
    if args.dry_run:
        mode = Mode.dry_run
    elif args.resume:
        mode = Mode.resume
    elif args.rollback:
        mode = Mode.rollback
    if args.vmid is None:
        die("--vmid is required", hint="give the VMID of the controller VM, e.g. --vmid 100")
    vmid = parse_vmid(args.vmid)
    fresh = mode in (Mode.deploy, Mode.dry_run)
    if fresh:
        for flag, value in (("--image", args.image), ("--storage", args.storage), ("--ip", args.ip),
                            ("--gateway", args.gateway)):  # fmt: skip
            if value is None:
                die(f"{flag} is required", hint="see 'linstor-appliance deploy --help'")
    image = Path(args.image).expanduser().absolute() if args.image else None
    if image is not None and not image.name.endswith((".raw", ".raw.zst", ".img", ".img.zst")):
        die(f"{image.name} is neither a raw image nor its .zst", hint="pass linstor-controller.raw or .raw.zst")
    manifest = Path(args.manifest).expanduser().absolute() if args.manifest else (
        image.parent / "manifest.json" if image else None)  # fmt: skip
    sums = Path(args.sums).expanduser().absolute() if args.sums else (image.parent / "SHA256SUMS" if image else None)
    storage = args.storage
    if storage is not None and not STORAGE_ID_RE.match(storage):
        die(f"invalid storage ID '{storage}'", hint="use the ID of a drbd entry in /etc/pve/storage.cfg")
    address = parse_interface(args.ip) if args.ip else None
    gateway = parse_ip(args.gateway) if args.gateway else None
    if address is not None and gateway is not None:
        if gateway.version != address.version or gateway not in address.network:
            die(f"gateway {gateway} is not inside {address.network}", hint="use a gateway on the VM's subnet")
        if gateway == address.ip:
            die(f"gateway {gateway} is the VM's own address", hint="use the router's address")
    dns = tuple(str(parse_ip(v)) for item in (args.dns or []) for v in item.split(",") if v.strip())
    bridge = args.bridge or "vmbr0"
    if not BRIDGE_RE.match(bridge):
        die(f"invalid bridge name '{bridge}'", hint="use the name of a Linux bridge such as vmbr0")
    redundancy = _positive(args.redundancy, "--redundancy", 3)
    name = args.name or "linstor-controller"
    if not NAME_RE.match(name):
        die(f"invalid name '{name}'", hint="use lower-case letters, digits and '-', at most 63 characters")
    try:
        strategy = Strategy(args.strategy or "device-path")
    except ValueError:
        die(f"unknown strategy '{args.strategy}'", hint="use device-path or controllervm")
    allow_from = tuple(_network(v) for item in (args.allow_from or []) for v in item.split(",") if v.strip())
    if args.backup_storage is not None and not STORAGE_ID_RE.match(args.backup_storage):
        die(f"invalid storage ID '{args.backup_storage}'", hint="use a storage with backup content")
    schedule = args.backup_schedule or "02:30"
    if not SCHEDULE_RE.match(schedule):
        die(f"invalid backup schedule '{schedule}'", hint="use a calendar event such as 02:30 or 'sat 03:00'")
    if args.backup_schedule and not args.backup_storage and fresh:
        die("--backup-schedule needs --backup-storage", hint="name the storage the backups go to")
    disk_size = parse_size(args.disk_size) if args.disk_size else None
    if disk_size is not None and disk_size < 4 * 2**20:
        die(f"disk size {args.disk_size} is too small", hint="leave --disk-size out to use the size the image was "
            "built for (2G by default)")
    wait_timeout = float(_positive(args.wait_timeout, "--wait-timeout", 300))
    return Options(
        vmid=vmid, mode=mode, image=image, manifest=manifest, sums=sums, storage=storage, address=address,
        gateway=gateway, dns=dns, bridge=bridge, redundancy=redundancy, name=name, strategy=strategy,
        allow_from=allow_from, register_node=not args.no_register_node, backup_storage=args.backup_storage,
        backup_schedule=schedule, disk_size=disk_size, wait_timeout=wait_timeout,
        ssh_options=tuple(args.ssh_option or ()), replace_vm_database=bool(args.replace_vm_database), root=root,
    )  # fmt: skip


def parse_vmid(value: str) -> int:
    if not re.fullmatch(r"[1-9]\d{2,8}", str(value)):
        die(f"invalid VMID '{value}'", hint="use a number from 100 to 999999999")
    return int(value)


def _positive(value: str | None, flag: str, default: int) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"\d+", str(value)) or int(value) < 1:
        die(f"invalid {flag} '{value}'", hint="use a whole number of at least 1")
    return int(value)


def _network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        die(f"invalid network '{value}'", hint="write it in CIDR form, for example 192.168.1.0/24")
