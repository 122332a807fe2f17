"""Production flavours that CI cannot build (no LINBIT repositories here), checked at configuration level.

The rendered apt sources are what apt will use, and `mkosi summary` runs the real mkosi over the real image/
tree with the exact arguments of a build, so a setting mkosi 24.3 does not know fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder import build, config, render

KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nstand-in\n-----END PGP PUBLIC KEY BLOCK-----\n"


def rendered(tmp_path: Path, **values: object) -> tuple[config.Config, Path]:
    cfg = config.finalize(dict(values))
    render.extra_tree(cfg, tmp_path / "extra", KEY)
    render.package_manager_tree(cfg, tmp_path / "pkgmngr", KEY)
    return cfg, tmp_path


def mkosi_summary(cfg: config.Config, work: Path) -> dict[str, object]:
    if not shutil.which("mkosi"):
        pytest.skip("mkosi is not installed")
    (work / "env").write_text("")
    argv = build.mkosi_argv(cfg, work / "extra", work / "pkgmngr", work / "out", work / "env", verb="summary")
    argv.insert(-1, "--json")
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    images: list[dict[str, object]] = json.loads(result.stdout)["Images"]
    return images[-1]


def test_ubuntu_linbit_sources(tmp_path: Path) -> None:
    cfg, work = rendered(tmp_path, distribution=config.Distribution.ubuntu)
    build_linbit = (work / "pkgmngr/etc/apt/sources.list.d/linbit.sources").read_text()
    assert "URIs: https://ppa.launchpadcontent.net/linbit/linbit-drbd9-stack/ubuntu" in build_linbit
    assert "Suites: noble" in build_linbit and "Components: main" in build_linbit
    assert "Signed-By: /etc/apt/keyrings/linbit.asc" in build_linbit
    assert "Enabled: no" not in build_linbit
    assert (work / "pkgmngr/etc/apt/keyrings/linbit.asc").read_text() == KEY
    ubuntu = (work / "extra/etc/apt/sources.list.d/ubuntu.sources").read_text()
    assert "URIs: http://archive.ubuntu.com/ubuntu" in ubuntu
    assert "Suites: noble noble-updates" in ubuntu and "noble-security" in ubuntu
    assert "universe" in ubuntu, "openjdk-21 and netplan's dependencies need universe"
    image_linbit = (work / "extra/etc/apt/sources.list.d/linbit.sources").read_text()
    assert "Enabled: no" not in image_linbit
    assert (work / "extra/etc/apt/keyrings/linbit.asc").read_text() == KEY


def test_debian_linbit_sources(tmp_path: Path) -> None:
    cfg, work = rendered(tmp_path, distribution=config.Distribution.debian)
    linbit = (work / "pkgmngr/etc/apt/sources.list.d/linbit.sources").read_text()
    assert "URIs: https://packages.linbit.com/public/" in linbit
    assert "Suites: proxmox-9" in linbit and "Components: drbd-9" in linbit
    build_sources = (work / "pkgmngr/etc/apt/sources.list.d/mkosi.sources").read_text()
    assert "debian-debug" not in build_sources, "the debug archive fails on some mirrors and is not needed"


def test_ubuntu_mkosi_summary(tmp_path: Path) -> None:
    cfg, work = rendered(tmp_path, distribution=config.Distribution.ubuntu)
    summary = mkosi_summary(cfg, work)
    assert summary["Distribution"] == "ubuntu" and summary["Release"] == "noble"
    packages = summary["Packages"]
    assert isinstance(packages, list)
    assert {"linux-image-virtual", "openjdk-21-jre-headless", "linstor-controller", "linstor-client"} <= set(packages)
    assert "linux-image-cloud-amd64" not in packages
    assert "console=ttyS0,115200" in summary["KernelCommandLine"]  # type: ignore[operator]
    assert summary["Bootloader"] == "systemd-boot" and summary["BiosBootloader"] == "grub"


def test_debian_mkosi_summary_with_pinned_version(tmp_path: Path) -> None:
    cfg, work = rendered(tmp_path, distribution=config.Distribution.debian, linstor_version="1.33.3")
    summary = mkosi_summary(cfg, work)
    assert summary["Release"] == "trixie"
    assert "linux-image-cloud-amd64" in summary["Packages"]  # type: ignore[operator]
    pin = (work / "pkgmngr/etc/apt/preferences.d/linstor.pref").read_text()
    assert "Pin: version 1.33.3*" in pin and "linstor-controller" in pin
