"""Packing the tool as a zipapp: one file that a Proxmox VE node's own python3 runs.

Entries are sorted and dated 1980-01-01, so the same sources give the same archive. Used by
tools/make-dist (the whole tool with its templates and dependencies) and by `coldstart install`
when it runs from a source tree (the node runtime needs only the Python code and the standard library).
"""

from __future__ import annotations

import io
import py_compile
import tempfile
import zipfile
from pathlib import Path

MAIN = "from builder.cli import main\n\nmain()\n"
SHEBANG = b"#!/usr/bin/env python3\n"
DATE = (1980, 1, 1, 0, 0, 0)


def builder_sources(package: Path) -> dict[str, bytes]:
    """The entry point and every module of the builder package at `package`, each with its byte code.

    Python cannot cache byte code for modules in a zip, so without it every run compiles what it
    imports (the hook runs in every guest's start). The byte code is this interpreter's, hash-based
    and unchecked (no timestamps, so the archive stays reproducible); another Python version skips it
    and compiles the source.
    """
    found = {"__main__.py": MAIN.encode()}
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(package.rglob("*.py")):
            name = f"builder/{path.relative_to(package)}"
            found[name] = path.read_bytes()
            cfile = Path(scratch) / "module.pyc"
            py_compile.compile(str(path), cfile=str(cfile), dfile=name, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)  # fmt: skip
            found[name + "c"] = cfile.read_bytes()
    return found


def pack(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(entries.items()):
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
