"""What the admin asked the deploy command to do, validated before anything looks at the cluster.

Bad input costs one line and a non-zero exit; the cluster is only consulted afterwards (preflight).
`root` is the prefix for files read or written directly on this node (`/` in production; a
simulated node's root in tests).

Every option is one record in OPTIONS (see builder/optiontable.py): its flag, parser, default, help and
what a resume may do with it. The flags, the help, the parsing, the journal's JSON form and the merge with
a recorded deploy all come from there. To add an option, add its typed field to Options (no default there)
and one Option record to OPTIONS; a check across options goes into check().
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.config import parse_interface, parse_ip, parse_size
from builder.errors import die
from builder.optiontable import Need, OnResume, Option, OptionTable, Switch, whole_number

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


# Modes that start a new deploy (and so need its every required option) rather than act on a recorded one.
FRESH_MODES = (Mode.deploy, Mode.dry_run)


class Strategy(enum.StrEnum):
    # The VM disk is a LINSTOR resource the storage plugin never sees; the VM names its device path.
    device_path = "device-path"
    # The seed's way: a plugin volume vm-<id>-disk-1 exempted with storage.cfg's controllervm (plugin <= 5.2.2).
    controllervm = "controllervm"


@dataclass(frozen=True)
class Options:
    """The deploy's options; their defaults are in OPTIONS, so Options are made by from_args() or from_json()."""

    vmid: int
    mode: Mode
    image: Path | None
    manifest: Path | None
    sums: Path | None
    storage: str | None
    address: Interface | None
    gateway: Address | None
    dns: tuple[str, ...]
    bridge: str
    redundancy: int
    name: str
    strategy: Strategy
    allow_from: tuple[Network, ...]
    register_node: bool
    backup_storage: str | None
    backup_schedule: str
    disk_size: int | None
    wait_timeout: float
    ssh_options: tuple[str, ...]
    # A new deploy may overwrite a VM disk whose database no journal accounts for, after backing it up.
    replace_vm_database: bool
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
        return OPTIONS.to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> Options:
        return OPTIONS.build(OPTIONS.from_json(data), root=root)


# Parsers: one command-line value to its typed value, or one line on what is wrong.


def parse_vmid(value: str) -> int:
    if not re.fullmatch(r"[1-9]\d{2,8}", str(value)):
        die(f"invalid VMID '{value}'", hint="use a number from 100 to 999999999")
    return int(value)


def _file(value: str) -> Path:
    return Path(value).expanduser().absolute()


def parse_image(value: str) -> Path:
    """An appliance image path (.raw, .raw.zst, .img or .img.zst), made absolute."""
    image = _file(value)
    if not image.name.endswith((".raw", ".raw.zst", ".img", ".img.zst")):
        die(f"{image.name} is neither a raw image nor its .zst", hint="pass linstor-controller.raw or .raw.zst")
    return image


def _storage(value: str) -> str:
    if not STORAGE_ID_RE.match(value):
        die(f"invalid storage ID '{value}'", hint="use the ID of a drbd entry in /etc/pve/storage.cfg")
    return value


def _backup_storage(value: str) -> str:
    if not STORAGE_ID_RE.match(value):
        die(f"invalid storage ID '{value}'", hint="use a storage with backup content")
    return value


def _dns_server(value: str) -> str:
    return str(parse_ip(value))


def _bridge(value: str) -> str:
    if not BRIDGE_RE.match(value):
        die(f"invalid bridge name '{value}'", hint="use the name of a Linux bridge such as vmbr0")
    return value


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        die(f"invalid name '{value}'", hint="use lower-case letters, digits and '-', at most 63 characters")
    return value


def _strategy(value: str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        die(f"unknown strategy '{value}'", hint="use device-path or controllervm")


def _network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        die(f"invalid network '{value}'", hint="write it in CIDR form, for example 192.168.1.0/24")


def _schedule(value: str) -> str:
    if not SCHEDULE_RE.match(value):
        die(f"invalid backup schedule '{value}'", hint="use a calendar event such as 02:30 or 'sat 03:00'")
    return value


def _disk_size(value: str) -> int:
    size = parse_size(value)
    if size < 4 * 2**20:
        die(f"disk size {value} is too small", hint="leave --disk-size out to use the size the image was "
            "built for (2G by default)")  # fmt: skip
    return size


def _seconds(value: str) -> float:
    return float(whole_number(1)(value))


OPTIONS: OptionTable[Options] = OptionTable(Options, "linstor-appliance deploy", outside=("root",), options=(
    Option("image", "--image", parse_image, None, "the appliance image (.raw or .raw.zst); manifest.json and "
           "SHA256SUMS are expected next to it", "FILE", need=Need.FRESH),
    Option("manifest", "--manifest", _file, None, "manifest.json of the image", "FILE",
           default_help="next to the image", on_resume=OnResume.RECORDED),
    Option("sums", "--sums", _file, None, "SHA256SUMS of the image", "FILE", default_help="next to the image",
           on_resume=OnResume.RECORDED),
    Option("vmid", "--vmid", parse_vmid, None, "VMID of the controller VM", "ID", need=Need.ALWAYS,
           missing_hint="give the VMID of the controller VM, e.g. --vmid 100", on_resume=OnResume.RECORDED),
    Option("storage", "--storage", _storage, None, "the drbd storage whose resource group holds the VM disk", "ID",
           need=Need.FRESH),
    Option("address", "--ip", parse_interface, None, "the VM's static address with prefix, e.g. 10.0.0.100/24",
           "CIDR", need=Need.FRESH),
    Option("gateway", "--gateway", parse_ip, None, "default gateway of the VM", "IP", need=Need.FRESH),
    Option("dns", "--dns", _dns_server, (), "DNS server of the VM", "IP", repeat=True, commas=True),
    Option("bridge", "--bridge", _bridge, "vmbr0", "bridge of the VM's network card", "BRIDGE"),
    Option("redundancy", "--redundancy", whole_number(1), 3, "diskful replicas of the VM disk", "N"),
    Option("name", "--name", _name, "linstor-controller", "VM name and LINSTOR node name", "NAME"),
    Option("strategy", "--strategy", _strategy, Strategy.device_path, "device-path or controllervm (linstor-proxmox "
           "5.2.2 and older only)", "KIND"),
    Option("allow_from", "--allow-from", _network, (), "network that may reach SSH and the REST API besides the "
           "cluster nodes", "CIDR", repeat=True, commas=True),
    Option("register_node", None, None, True, switches=(
        Switch("--no-register-node", False, "do not register the VM as a Controller node in LINSTOR"),)),
    Option("backup_storage", "--backup-storage", _backup_storage, None, "create a scheduled vzdump job to this "
           "storage", "ID"),
    Option("backup_schedule", "--backup-schedule", _schedule, "02:30", "calendar event of the backup job", "WHEN"),
    Option("disk_size", "--disk-size", _disk_size, None, "VM disk size", "SIZE",
           default_help="the size the image was built for"),
    Option("wait_timeout", "--wait-timeout", _seconds, 300.0, "how long to wait for the controller in the VM, in "
           "seconds", "SECONDS", on_resume=OnResume.GIVEN),
    Option("ssh_options", "--ssh-option", str, (), "extra ssh -o option for reaching the other nodes", "OPTION",
           repeat=True, on_resume=OnResume.GIVEN),
    Option("replace_vm_database", None, None, False, on_resume=OnResume.GIVEN, switches=(
        Switch("--replace-vm-database", True, "deploy even though the VM disk of an earlier deploy holds a "
               "database changed since (it is backed up first)"),)),
    Option("mode", None, None, Mode.deploy, on_resume=OnResume.GIVEN, switches=(
        Switch("--dry-run", Mode.dry_run, "check and print the plan, change nothing"),
        Switch("--resume", Mode.resume, "continue an interrupted deploy of this VMID"),
        Switch("--rollback", Mode.rollback, "undo a deploy of this VMID"))),
))  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def explicit_options(args: argparse.Namespace) -> set[str]:
    """Which Options fields the command line set (for comparing with a recorded deploy)."""
    return OPTIONS.explicit(args)


def from_args(args: argparse.Namespace, root: Path = Path("/")) -> Options:
    mode: Mode = OPTIONS.read(args, "mode")
    values = OPTIONS.parse(args, fresh=mode in FRESH_MODES)
    image: Path | None = values["image"]
    if image is not None:
        values["manifest"] = values["manifest"] or image.parent / "manifest.json"
        values["sums"] = values["sums"] or image.parent / "SHA256SUMS"
    options = OPTIONS.build(values, root=root)
    check(options, OPTIONS.explicit(args))
    return options


def check(options: Options, explicit: set[str]) -> None:
    """What no single option can say about itself."""
    address, gateway = options.address, options.gateway
    if address is not None and gateway is not None:
        if gateway.version != address.version or gateway not in address.network:
            die(f"gateway {gateway} is not inside {address.network}", hint="use a gateway on the VM's subnet")
        if gateway == address.ip:
            die(f"gateway {gateway} is the VM's own address", hint="use the router's address")
    if "backup_schedule" in explicit and options.backup_storage is None and options.mode in FRESH_MODES:
        die("--backup-schedule needs --backup-storage", hint="name the storage the backups go to")


def merge_with_journal(given: Options, recorded: Options, explicit: set[str]) -> Options:
    """The recorded deploy's options, with what may change between attempts taken from `given`."""
    # Fixed options: changing any of them midway would leave a half-built mix.
    refused = OPTIONS.refused_on_resume(given, recorded, explicit)
    if refused is not None:
        die(f"{refused.label} differs from the unfinished deploy of VM {given.vmid} "
            f"({getattr(given, refused.field)} instead of {getattr(recorded, refused.field)})",
            hint="leave it out to use the recorded value, or roll back with --rollback first")  # fmt: skip
    return OPTIONS.resume(given, recorded)
