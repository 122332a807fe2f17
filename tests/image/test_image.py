"""The built Debian 13 appliance, inspected offline: what an admin relies on before ever booting it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from helpers import CACHE_DIR, BuiltImage, cli
from image.report import ImageReport, inspect

from builder import diskimage

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def report(appliance_image: BuiltImage) -> ImageReport:
    return inspect(appliance_image.raw)


@pytest.fixture(scope="module")
def static_report(static_image: BuiltImage) -> ImageReport:
    return inspect(static_image.raw)


def test_partitions_bios_boot_esp_root(report: ImageReport, appliance_image: BuiltImage) -> None:
    types = [p.type for p in report.partitions]
    assert types == [diskimage.ESP, diskimage.BIOS_BOOT, diskimage.ROOT_X86_64]
    assert appliance_image.raw.stat().st_size == 2 * 2**30
    # The root partition is minimal and grows at first boot; GPT must still be valid at the new size.
    verify = subprocess.run(["sfdisk", "--verify", str(appliance_image.raw)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout
    table = json.loads(subprocess.run(["sfdisk", "--json", str(appliance_image.raw)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["lastlba"] == 2 * 2**30 // 512 - 34, "the backup GPT must sit at the end of the 2 GiB disk"


def test_grub_uses_the_serial_console_without_a_prompt(report: ImageReport) -> None:
    cfg = report.grub_cfg
    assert "serial --unit=0 --speed=115200" in cfg
    assert "terminal_output serial console" in cfg
    assert "set timeout_style=hidden" in cfg
    # mkosi 24.3's broken "efi || pc" condition must not be written when EFI uses systemd-boot.
    assert '"${grub_platform}" = efi' not in cfg
    linux = [line for line in cfg.splitlines() if line.strip().startswith("linux ")]
    assert linux and all("console=tty0 console=ttyS0,115200" in line for line in linux)
    assert "::/grub/i386-pc/serial.mod" in report.esp_files


def test_uefi_boots_with_systemd_boot_on_the_serial_console(report: ImageReport) -> None:
    assert "::/EFI/BOOT/BOOTX64.EFI" in report.esp_files
    assert report.loader_entries
    for entry in report.loader_entries.values():
        assert "console=ttyS0,115200" in entry and "systemd.firstboot=off" in entry


def test_first_boot_identity(report: ImageReport) -> None:
    assert report.host_keys == []
    assert report.files["etc/machine-id"] == "uninitialized\n"
    assert report.files["etc/hostname"].strip() == "linstor-controller"


def test_network_config_is_dhcp_and_private(report: ImageReport) -> None:
    assert report.modes["etc/netplan/config.yaml"] == 0o600
    config = yaml.safe_load(report.files["etc/netplan/config.yaml"])
    lan = config["network"]["ethernets"]["lan"]
    assert lan["dhcp4"] is True and "addresses" not in lan


def test_static_network_config(static_report: ImageReport) -> None:
    config = yaml.safe_load(static_report.files["etc/netplan/config.yaml"])
    lan = config["network"]["ethernets"]["lan"]
    assert lan["dhcp4"] is False
    assert lan["addresses"] == ["10.0.2.15/24"]
    assert lan["routes"] == [{"to": "default", "via": "10.0.2.2"}]
    assert lan["nameservers"] == {"addresses": ["10.0.2.3"], "search": ["example.test"]}
    assert static_report.files["etc/hostname"].strip() == "ctrl-static"


def test_sshd_is_key_only_without_root(report: ImageReport) -> None:
    dropin = report.files["etc/ssh/sshd_config.d/10-linstor-appliance.conf"]
    assert "PasswordAuthentication no" in dropin
    assert "KbdInteractiveAuthentication no" in dropin
    assert "PermitRootLogin no" in dropin
    assert report.files["etc/ssh/authorized_keys.d/linbit"].startswith("ssh-ed25519 ")


def test_default_account_must_change_its_password(report: ImageReport) -> None:
    shadow = report.shadow_entry("linbit")
    assert shadow[1].startswith("$6$")
    assert shadow[2] == "0", "a last-change day of 0 forces a new password at first login"
    sudo = next(line for line in report.files["etc/group"].splitlines() if line.startswith("sudo:"))
    assert "linbit" in sudo.split(":")[3].split(",")
    root = report.shadow_entry("root")
    assert root[1] in ("*", "!", "!*", "!!", ""), "root must have no usable password"


def test_units_enabled(report: ImageReport) -> None:
    states = report.unit_states
    for unit in ("linstor-controller.service", "linstor-db-backup.timer", "linstor-appliance-ssh-keygen.service",
                 "ssh.service", "systemd-networkd.service", "systemd-resolved.service", "systemd-timesyncd.service",
                 "getty@tty1.service"):
        assert states[unit] == "enabled", f"{unit} is {states[unit]}"
    assert states["ssh.socket"] != "enabled", "ssh.socket beside ssh.service fights over port 22"
    # Debian's own first-boot key generation would make the keys a second time, beside the appliance's unit.
    assert states["sshd-keygen.service"] != "enabled"


def test_image_carries_nothing_the_appliance_never_reads(report: ImageReport) -> None:
    assert report.never_read == []
    # The boot loaders read the kernel from the ESP; a second copy in the root file system is dead weight.
    assert report.kernels_in_root == []


def test_first_boot_does_not_redo_the_builds_update_jobs(report: ImageReport) -> None:
    # ldconfig, the journal catalog and the hardware database run at first boot when /usr is newer than
    # /etc/.updated or /var/.updated; the build has done that work already.
    assert report.needs_update == {"etc": False, "var": False}


def test_controller_runs_only_behind_the_firewall(report: ImageReport) -> None:
    """Not deployed, the appliance serves SSH and REST to everyone but drops all else, and its controller
    needs the firewall loaded (the deployed-disk boot test shows that in a running VM)."""
    ruleset = report.files["etc/nftables.conf"]
    assert "table inet linstor_appliance" in ruleset and "policy drop;" in ruleset
    assert "tcp dport { 22, 3370, 3371 } accept" in ruleset
    assert report.modes["etc/nftables.conf"] == 0o755
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    loaded = subprocess.run([*unshare, "nft", "-c", "-f", "-"], input=ruleset, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert report.unit_states["nftables.service"] == "enabled"
    dropin = report.files["usr/lib/systemd/system/linstor-controller.service.d/50-linstor-appliance-firewall.conf"]
    assert "Requires=nftables.service linstor-appliance-firewall-check.service" in dropin
    assert "After=nftables.service linstor-appliance-firewall-check.service" in dropin
    assert "ExecStart=/usr/lib/linstor-appliance/firewall-check" in \
        report.files["usr/lib/systemd/system/linstor-appliance-firewall-check.service"]
    assert report.modes["usr/lib/linstor-appliance/firewall-check"] == 0o755


def test_apt_sources_point_at_real_archives_only(report: ImageReport) -> None:
    sources = report.apt_files
    debian = sources["etc/apt/sources.list.d/debian.sources"]
    assert "URIs: http://deb.debian.org/debian" in debian and "trixie-security" in debian
    linbit = sources["etc/apt/sources.list.d/linbit.sources"]
    assert "URIs: https://packages.linbit.com/public/" in linbit and "Suites: proxmox-9" in linbit
    # Built from a local folder without LINBIT's key: the entry is there but disabled, not failing apt.
    assert "Enabled: no" in linbit
    for name, text in sources.items():
        assert "file:" not in text and "/work" not in text and "mkosi" not in name, name
    assert not any(p.startswith("etc/apt/sources.list.d/mkosi") for p in report.etc_listing)


def test_controller_and_small_disk_settings(report: ImageReport) -> None:
    assert 'connection_url = "jdbc:h2:/var/lib/linstor/linstordb"' in report.files["etc/linstor/linstor.toml"]
    assert "SystemMaxUse=" in report.files["etc/systemd/journald.conf.d/50-linstor-appliance.conf"]
    assert "Type=root" in report.files["usr/lib/repart.d/50-root.conf"]
    assert "x-systemd.growfs" in report.files["etc/fstab"]
    assert "BACKUP_KEEP=7" in report.files["etc/linstor-appliance/appliance.conf"]


def test_manifest_and_checksums(appliance_image: BuiltImage) -> None:
    manifest = json.loads(appliance_image.manifest.read_text())
    assert manifest["distribution"] == "debian" and manifest["release"] == "trixie"
    assert manifest["linstor_controller"]["version"] == "1.34.0"
    # Built with --linstor-version 1.34.0: the controller installed is the one pinned, not just the one asked for.
    assert manifest["configuration"]["linstor_version"] == "1.34.0"
    assert manifest["linstor_controller"]["package_version"] == "1.34.0-1~standin1"
    names = {p["name"] for p in manifest["packages"]}
    assert {"linstor-controller", "linstor-client", "openjdk-21-jre-headless", "qemu-guest-agent"} <= names
    assert manifest["kernel"].endswith("-cloud-amd64")
    assert manifest["sizes"]["virtual"] <= manifest["configuration"]["disk_size"]
    assert manifest["configuration"]["linstor_source"].startswith("local:")
    check = subprocess.run(["sha256sum", "--check", "SHA256SUMS"], cwd=appliance_image.directory,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_disk_too_small_fails_cleanly(standin_debs, ssh_keypair, images_root) -> None:  # type: ignore[no-untyped-def]
    # The image (about 0.9 GiB) fits the smallest disk the configuration accepts (1G), so a disk it does not
    # fit is refused before anything is built; an image outgrowing its disk after mkosi is refused as
    # tests/unit/test_build.py::test_image_larger_than_disk_is_refused shows.
    out = images_root / "too-small"
    out.mkdir()
    result = cli("build", "--distribution", "debian", "--linstor-source", f"local:{standin_debs}",
                 "--disk-size", "900M", "--output-dir", str(out), "--cache-dir", str(CACHE_DIR), check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the disk size must be at least 1G" in errors[0], result.stderr
    assert list(out.iterdir()) == []


def test_rebuild_after_configuration_change_reuses_the_cache(
    standin_debs, ssh_keypair, images_root  # type: ignore[no-untyped-def]
) -> None:
    result = cli("--verbose", "build", "--distribution", "debian", "--linstor-source", f"local:{standin_debs}",
                 "--address", "192.0.2.10/24", "--output-dir", str(images_root / "rebuild"),
                 "--cache-dir", str(CACHE_DIR))
    log = result.stderr
    assert "not reusing cached images" not in log
    assert "Unpacking " not in log, "a configuration-only change must not install (or download) packages"

