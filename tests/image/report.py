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

    def shadow_entry(self, user: str) -> list[str]:
        for line in self.files["etc/shadow"].splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return fields
        raise AssertionError(f"{user} not in /etc/shadow")


def unit_state(root: Path, unit: str) -> str:
    result = subprocess.run(["systemctl", f"--root={root}", "is-enabled", unit], capture_output=True, text=True)
    return (result.stdout.strip() or result.stderr.strip()).splitlines()[0]


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
    return report
