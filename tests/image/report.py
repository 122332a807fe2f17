"""An "image info" report of a built appliance disk, read offline, for many assertions to share."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder import diskimage

UNITS = (
    "linstor-controller.service",
    "linstor-db-backup.timer",
    "linstor-appliance-ssh-keygen.service",
    "ssh.service",
    "ssh.socket",
    "systemd-networkd.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "getty@tty1.service",
    "nftables.service",
    "sshd-keygen.service",
)
# What a C.UTF-8 controller VM never reads; none of it may reach the image (globs in the root file system).
NEVER_READ = (
    "usr/share/locale/*",
    "usr/share/doc/*",
    "usr/share/man/*/*.gz",
    "usr/lib/jvm/*/lib/server/classes_nocoops.jsa",
    "usr/lib/python3.*/test",
    "usr/lib/udev/hwdb.d/*",
    "usr/bin/grub-*",
    "var/lib/apt/lists/*_Packages",
    "var/lib/dpkg/*-old",
    "var/cache/debconf/*-old",
    "usr/lib/modules/*/kernel/arch/x86/kvm",
)
FILES = (
    "etc/machine-id",
    "etc/hostname",
    "etc/hosts",
    "etc/fstab",
    "etc/netplan/config.yaml",
    "etc/ssh/sshd_config.d/10-linstor-appliance.conf",
    "etc/ssh/authorized_keys.d/linbit",
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/linstor/linstor.toml",
    "etc/linstor-appliance/appliance.conf",
    "usr/lib/repart.d/50-root.conf",
    "usr/lib/systemd/system/linstor-controller.service",
    "etc/systemd/journald.conf.d/50-linstor-appliance.conf",
    "etc/nftables.conf",
    "usr/lib/systemd/system/linstor-controller.service.d/50-linstor-appliance-firewall.conf",
    "usr/lib/systemd/system/linstor-appliance-firewall-check.service",
    "usr/lib/linstor-appliance/firewall-check",
)


@dataclass
class ImageReport:
    partitions: list[diskimage.Partition]
    grub_cfg: str
    loader_entries: dict[str, str]
    esp_files: list[str]
    files: dict[str, str] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    host_keys: list[str] = field(default_factory=list)
    unit_states: dict[str, str] = field(default_factory=dict)
    apt_files: dict[str, str] = field(default_factory=dict)
    etc_listing: list[str] = field(default_factory=list)
    never_read: list[str] = field(default_factory=list)  # paths matching NEVER_READ
    kernels_in_root: list[str] = field(default_factory=list)  # kernel image files, not links
    needs_update: dict[str, bool] = field(default_factory=dict)  # ConditionNeedsUpdate= at first boot

    def shadow_entry(self, user: str) -> list[str]:
        for line in self.files["etc/shadow"].splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return fields
        raise AssertionError(f"{user} not in /etc/shadow")


def unit_state(root: Path, unit: str) -> str:
    result = subprocess.run(["systemctl", f"--root={root}", "is-enabled", unit], capture_output=True, text=True)
    return (result.stdout.strip() or result.stderr.strip()).splitlines()[0]


def holds_files(path: Path) -> bool:
    """A regular file, or a folder with one somewhere below; empty folders and links take no space, and
    the packages' copyright notices stay on purpose (licences ask for them)."""
    def counts(file: Path) -> bool:
        return file.is_file() and not file.is_symlink() and file.name != "copyright"
    if path.is_symlink():
        return False
    return counts(path) or (path.is_dir() and any(counts(p) for p in path.rglob("*")))


def needs_update(root: Path, directory: str) -> bool:
    """systemd's ConditionNeedsUpdate=/<directory>: is /usr newer than the directory's .updated stamp?"""
    stamp = root / directory / ".updated"
    if not stamp.exists():
        return True
    usr, other = (root / "usr").stat(), stamp.stat()
    if int(usr.st_mtime) != int(other.st_mtime):
        return int(usr.st_mtime) > int(other.st_mtime)
    if other.st_mtime_ns % 10**9:
        return usr.st_mtime_ns % 10**9 > other.st_mtime_ns % 10**9
    match = re.search(r"^TIMESTAMP_NSEC=(\d+)$", stamp.read_text(), re.MULTILINE)
    return match is None or usr.st_mtime_ns > int(match.group(1))


def inspect(disk: Path) -> ImageReport:
    esp_files = diskimage.list_esp(disk)
    entries = {
        name.removeprefix("::/loader/entries/"): diskimage.read_esp_file(disk, name.removeprefix("::"))
        for name in esp_files
        if re.match(r"^::/loader/entries/.+\.conf$", name)
    }
    report = ImageReport(
        partitions=diskimage.partitions(disk),
        grub_cfg=diskimage.read_esp_file(disk, "/grub/grub.cfg"),
        loader_entries=entries,
        esp_files=esp_files,
    )
    with diskimage.root_filesystem(disk) as root:
        for name in FILES:
            path = root / name
            if path.exists():
                report.files[name] = path.read_text()
                report.modes[name] = path.stat().st_mode & 0o7777
        report.host_keys = sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*"))
        report.unit_states = {unit: unit_state(root, unit) for unit in UNITS}
        for path in sorted((root / "etc/apt").rglob("*")):
            if path.is_file() and path.suffix in (".sources", ".list", ".pref", ".asc", ".conf", ""):
                report.apt_files[str(path.relative_to(root))] = path.read_text(errors="replace")
        report.etc_listing = sorted(str(p.relative_to(root)) for p in (root / "etc").rglob("*"))
        report.never_read = sorted(str(p.relative_to(root)) for pattern in NEVER_READ for p in root.glob(pattern)
                                   if holds_files(p))
        report.kernels_in_root = sorted(str(p.relative_to(root)) for p in root.glob("usr/lib/modules/*/vmlinuz*")
                                        if p.is_file() and not p.is_symlink())
        report.needs_update = {directory: needs_update(root, directory) for directory in ("etc", "var")}
    return report
