"""Putting a backup's database where this node's controller reads it, after backing up what is there.

A zip of the H2 online backup and a copy of the H2 file are the database file itself; a JSON export goes
through LINSTOR's own `linstor-database import-db` (LINSTOR 1.24+, controller stopped; linstor.md 6.3).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from builder import log
from builder.backup import export
from builder.deploy import backup
from builder.deploy.remote import Node, Transport
from builder.errors import die
from builder.restore.source import Chosen

DATABASE_TOOL = "/usr/share/linstor-server/bin/linstor-database"


def save_current(root: Path, state_dir: Path, vmid: int) -> Path | None:
    """A verified copy of this node's controller files, or None when there are none."""
    if not any((root / source).is_dir() and any((root / source).rglob("*")) for source in backup.SOURCES):
        return None
    folder = backup.create(root, state_dir, vmid)
    backup.verify(folder)
    log.info(f"backed up this node's /var/lib/linstor and /etc/linstor to {folder}")
    return folder


def install(transport: Transport, local: Node, root: Path, chosen: Chosen, db_base: str) -> None:
    """The backup's database in place of this node's (which save_current() has backed up)."""
    target = root / f"{db_base.lstrip('/')}.mv.db"
    data = chosen.path.read_bytes()
    database = export.h2_database(chosen.extension, data)
    if database is None:
        if not (root / DATABASE_TOOL.lstrip("/")).exists():
            die(f"the backup {chosen.path.name} is a LINSTOR export and {DATABASE_TOOL} is missing on this node",
                hint="install linstor-controller (1.24 or newer) on this node")
        target.unlink(missing_ok=True)
        transport.run(local, [str(root / DATABASE_TOOL.lstrip("/")), "import-db", str(chosen.path)])
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".restore-", delete=False) as handle:
        handle.write(database)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o640)
    os.replace(handle.name, target)
    # H2 keeps a trace file beside the database; one from the replaced database would mislead.
    (root / f"{db_base.lstrip('/')}.trace.db").unlink(missing_ok=True)
