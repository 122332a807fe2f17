"""The default Ubuntu 24.04 flavour, built for real: opt-in, because it needs Ubuntu's archive.

CI builds the Debian flavour only. Where archive.ubuntu.com is reachable, set LINSTOR_APPLIANCE_TEST_UBUNTU=1
to build the Ubuntu image with the stand-in LINSTOR packages and inspect it like the Debian one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import CACHE_DIR, cli, require_root
from image.report import ImageReport, inspect

pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(not os.environ.get("LINSTOR_APPLIANCE_TEST_UBUNTU"),
                       reason="set LINSTOR_APPLIANCE_TEST_UBUNTU=1 where Ubuntu's archive is reachable"),
]


@pytest.fixture(scope="module")
def ubuntu_image(standin_debs: Path, images_root: Path) -> Path:
    require_root()
    out = images_root / "ubuntu"
    cli("build", "--linstor-source", f"local:{standin_debs}", "--output-dir", str(out), "--cache-dir", str(CACHE_DIR))
    return out


@pytest.fixture(scope="module")
def ubuntu_report(ubuntu_image: Path) -> ImageReport:
    return inspect(ubuntu_image / "linstor-controller.raw")


def test_ubuntu_manifest(ubuntu_image: Path) -> None:
    manifest = json.loads((ubuntu_image / "manifest.json").read_text())
    assert (manifest["distribution"], manifest["release"]) == ("ubuntu", "noble")
    names = {p["name"] for p in manifest["packages"]}
    assert {"linux-image-virtual", "openjdk-21-jre-headless", "libnss-systemd", "linstor-controller"} <= names


def test_ubuntu_sources_and_units(ubuntu_report: ImageReport) -> None:
    ubuntu = ubuntu_report.apt_files["etc/apt/sources.list.d/ubuntu.sources"]
    assert "URIs: http://archive.ubuntu.com/ubuntu" in ubuntu and "noble-security" in ubuntu
    assert "ppa.launchpadcontent.net/linbit" in ubuntu_report.apt_files["etc/apt/sources.list.d/linbit.sources"]
    assert ubuntu_report.unit_states["ssh.service"] == "enabled"
    assert ubuntu_report.unit_states["ssh.socket"] != "enabled"
    assert ubuntu_report.unit_states["linstor-controller.service"] == "enabled"
    assert ubuntu_report.host_keys == []
    assert ubuntu_report.files["etc/machine-id"] == "uninitialized\n"
