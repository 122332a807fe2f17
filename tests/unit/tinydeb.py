"""Tiny real .deb files (control fields only), for the checks that read a local: folder's packages."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def make_deb(directory: Path, package: str, version: str) -> Path:
    """A .deb of package at version, named as apt names downloaded files (the epoch's ':' as '%3a')."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        control = Path(work) / "DEBIAN" / "control"
        control.parent.mkdir()
        control.write_text(f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                           "Maintainer: test <test@localhost>\nDescription: test package\n")
        target = directory / f"{package}_{version.replace(':', '%3a')}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", work, str(target)], check=True,
                       capture_output=True)
    return target
