"""Writes the fake commands into <state>/bin, to be put first on PATH."""

from __future__ import annotations

import sys
from pathlib import Path

# command name -> module in .fakes
FAKES = {
    "qm": "qm",
    "pvesm": "pvesm",
    "pvesh": "pvesh",
    "ha-manager": "ha_manager",
    "pveversion": "pveversion",
    "pvecm": "pvecm",
    "dpkg-query": "dpkg_query",
    "systemctl": "systemctl",
    "ssh": "ssh",
    "scp": "scp",
    "qemu-img": "qemu_img",
    "ping": "ping",
    "drbdsetup": "drbdsetup",
    "curl": "curl",
    "apt-get": "apt_get",
    "apt-cache": "apt_cache",
    # Not a fake: the tool under test, where a node has its package (see the module).
    "linstor-appliance": "linstor_appliance",
}

LAUNCHER = """\
#!{python}
# Simulated `{command}` of the PVE test cluster; see tests/sim/README.md.
import sys
sys.path.insert(0, {import_root!r})
from {package}.fakes.{module} import entry
sys.exit(entry())
"""


def package_location() -> tuple[str, str]:
    """(import root, dotted package name) under which this package is importable right now."""
    package = __package__ or "sim"
    here = Path(__file__).resolve().parent
    depth = len(package.split("."))
    return str(here.parents[depth - 1]), package


def write_bin(bin_dir: Path, python: str | None = None) -> list[Path]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    import_root, package = package_location()
    written = []
    for command, module in FAKES.items():
        path = bin_dir / command
        text = LAUNCHER.format(python=python or sys.executable, command=command, import_root=import_root,
                               package=package, module=module)  # fmt: skip
        path.write_text(text)
        path.chmod(0o755)
        written.append(path)
    return written
