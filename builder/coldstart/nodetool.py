"""The tool on a node: which command the hookscript and the units run, and the copy install puts there."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import builder
from builder import zipapp
from builder.coldstart import layout
from builder.errors import die
from builder.run import run


def packaged(root: Path) -> bool:
    """The node has the Debian package's tool: the units and the hook call that one, nothing is copied."""
    return layout.at(root, layout.PACKAGED_TOOL).is_file()


def packaged_units(root: Path) -> bool:
    """The package's retry units are there: install enables them rather than writing its own into /etc."""
    return packaged(root) and any(layout.at(root, f"{d}/{layout.TIMER_UNIT}").is_file()
                                  for d in layout.PACKAGED_UNIT_DIRS)  # fmt: skip


def archive() -> bytes:
    """This tool as a zipapp: the archive it runs from, or, from a source tree, its Python code packed."""
    running = getattr(getattr(builder, "__loader__", None), "archive", None)
    if running:
        return Path(running).read_bytes()
    return zipapp.pack(zipapp.builder_sources(Path(builder.__file__).parent))


def check_python() -> None:
    """The node's python3 must run the tool: the hook, the gate and the retry timer are the tool itself."""
    python = layout.NODE_PYTHON
    if shutil.which(python) is None:
        die(f"{python} does not exist on this node, and the gate, hook and retry timer run with it",
            hint="install python3 (3.11 or later; Proxmox VE 8 has it)")  # fmt: skip
    result = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=False, capture=True)
    found = re.fullmatch(r"(\d+)\.(\d+)\s*", result.stdout)
    if result.returncode != 0 or not found:
        die(f"{python} does not run on this node, and the gate, hook and retry timer run with it",
            hint="install python3 (3.11 or later; Proxmox VE 8 has it)")  # fmt: skip
    version = (int(found.group(1)), int(found.group(2)))
    if version < layout.MIN_PYTHON:
        need = ".".join(map(str, layout.MIN_PYTHON))
        die(f"{python} on this node is Python {version[0]}.{version[1]}, and the gate, hook and retry timer need "
            f"{need} or later", hint="upgrade the node to Proxmox VE 8 or later (Debian 12, Python 3.11)")  # fmt: skip
