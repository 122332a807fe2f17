"""The pinned --linstor-version checked against what mkosi installed, on a small mkosi output tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import config, manifest, pin
from builder.errors import ApplianceError


def mkosi_output(tmp_path: Path, controller: str | None) -> list[dict[str, str]]:
    """mkosi's JSON manifest of an image with linstor-controller at that version, read as the build reads it."""
    packages = [{"type": "deb", "name": "linstor-common", "version": "1.34.0-1", "architecture": "all"}]
    if controller:
        packages.append({"type": "deb", "name": "linstor-controller", "version": controller, "architecture": "all"})
    path = tmp_path / "mkosi-output/linstor-controller.manifest"
    path.parent.mkdir()
    path.write_text(json.dumps({"packages": packages}))
    return manifest.packages_from_mkosi(path)


@pytest.mark.parametrize(("pin_version", "installed"), [
    ("1.34.0", "1.34.0-1"), ("1.34.0-1", "1.34.0-1"), ("1.33.3", "1:1.33.3-2"), (None, "1.34.0-1"),
])
def test_installed_pin_passes(tmp_path: Path, pin_version: str | None, installed: str) -> None:
    pin.check_installed(config.Config(linstor_version=pin_version), mkosi_output(tmp_path, installed))


@pytest.mark.parametrize(("pin_version", "installed"), [
    ("9.9.9", "1.34.0-1"), ("1.34.0-1", "1.34.0-2"), ("1.34.0", "1.34.0~rc.1-1"),
])
def test_other_installed_version_fails_in_one_line(tmp_path: Path, pin_version: str, installed: str) -> None:
    with pytest.raises(ApplianceError) as caught:
        pin.check_installed(config.Config(linstor_version=pin_version), mkosi_output(tmp_path, installed))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f"the image has linstor-controller {installed} installed instead of the pinned {pin_version}, "
        "so no image was written; ")


def test_image_without_controller_fails(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError, match="^linstor-controller is not installed in the image"):
        pin.check_installed(config.Config(linstor_version="1.34.0"), mkosi_output(tmp_path, None))
