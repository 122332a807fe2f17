"""The default Ubuntu 24.04 flavour, built for real with the stand-in LINSTOR packages and inspected offline.

It needs Ubuntu's archive: tests/conftest.py asks it once per run and deselects
these tests, with one line in the summary, when it does not answer. tests/boot/test_ubuntu_boots.py boots it.
"""

from __future__ import annotations

import json

import pytest
from helpers import ImageOutputs
from image.report import ImageReport, inspect

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def ubuntu_report(ubuntu_image: ImageOutputs) -> ImageReport:
    return inspect(ubuntu_image.raw)


def test_ubuntu_manifest(ubuntu_image: ImageOutputs) -> None:
    manifest = json.loads(ubuntu_image.manifest.read_text())
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
