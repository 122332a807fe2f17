"""A consistent copy of the appliance's database, made by the controller in the VM while it runs.

In order of preference (linstor.md section 6.3): `POST /v1/controller/database/export` (REST API 1.28.0,
LINSTOR 1.34: JSON, every database type), `POST /v1/controller/backup/db` (REST API 1.13.0: an H2
`BACKUP TO` zip), else a copy of the H2 file, which LINSTOR keeps consistent on disk (what the in-VM
db-backup does last). Either way the file is written in the VM and fetched through the guest agent.

Two exports of an unchanged database need not be the same bytes (a zip holds time stamps, an export may
hold its time), so change is judged by `content_hash`, a hash of a canonical form.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from typing import Any

import linstor

from builder import log
from builder.deploy import controller
from builder.deploy.controller import Directory, Endpoint
from builder.errors import die
from builder.guestagent import GuestAgent

DB_DIR = "/var/lib/linstor"
H2_FILE = f"{DB_DIR}/linstordb.mv.db"
EXPORT_API = (1, 28)
BACKUP_API = (1, 13)
# Keys of an export that say when or by what it was made rather than what the database holds. LINSTOR's
# export format is not documented field by field (unconfirmed): a key missed here costs an extra backup of
# an unchanged database, never a skipped one.
VOLATILE_KEYS = frozenset({"export_time", "exported_at", "export_timestamp", "timestamp", "created_at"})
EXTENSIONS = ("json", "zip", "mv.db")


@dataclass(frozen=True)
class Export:
    data: bytes
    extension: str  # json, zip or mv.db
    method: str


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def take(agent: GuestAgent, directory: Directory, endpoint: Endpoint) -> Export:
    """Ask the controller at `endpoint` (the VM's) for an export and fetch it from the VM."""
    name = f"linstor-appliance-backup-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    with controller.connect(directory, endpoint) as ctrl:
        rest = _version(str(ctrl.lin.controller_version().rest_api_version))
        if rest >= EXPORT_API:
            extension, method, call = "json", "database export API", ctrl.lin.controller_exportdb
        elif rest >= BACKUP_API:
            extension, method, call = "zip", "H2 online backup API", ctrl.lin.controller_backupdb
        else:
            extension, method, call = "mv.db", "copy of the H2 file", None
        if call is not None:
            log.info(f"asking the controller at {endpoint} for a backup ({method})")
            try:
                replies = call(name)
            except linstor.LinstorError as error:
                die(f"the controller at {endpoint} could not back up its database: {error}",
                    hint="check 'linstor error-reports list' on the appliance")
            errors = [r for r in replies if r.is_error()]
            if errors:
                die(f"the controller at {endpoint} could not back up its database: {errors[0].message}",
                    hint="check 'linstor error-reports list' on the appliance")
    if call is None:
        log.info(f"copying {H2_FILE} from VM {agent.vmid} (LINSTOR has no backup API before REST 1.13)")
        return Export(agent.read_file(H2_FILE), extension, method)
    path = f"{DB_DIR}/{name}.{extension}"
    try:
        data = agent.read_file(path)
    finally:
        agent.remove(path)
    return Export(data, extension, method)


def content_hash(extension: str, data: bytes) -> str:
    """SHA-256 of what the backup holds, the same for two backups of the same database."""
    digest = hashlib.sha256()
    if extension == "zip":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in sorted(archive.infolist(), key=lambda i: i.filename):
                    digest.update(info.filename.encode() + b"\0" + hashlib.sha256(archive.read(info)).digest())
        except zipfile.BadZipFile:
            digest.update(data)
        return digest.hexdigest()
    if extension == "json":
        try:
            document = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            digest.update(data)
            return digest.hexdigest()
        digest.update(json.dumps(_without_volatile(document), sort_keys=True, separators=(",", ":")).encode())
        return digest.hexdigest()
    digest.update(data)
    return digest.hexdigest()


def _without_volatile(value: Any, depth: int = 0) -> Any:
    # Only the document's top levels (its metadata); a key of that name deeper down is data.
    if isinstance(value, dict) and depth < 2:
        return {k: _without_volatile(v, depth + 1) for k, v in value.items() if k not in VOLATILE_KEYS}
    return value


def h2_database(extension: str, data: bytes) -> bytes | None:
    """The H2 file a backup holds, or None for an export that needs `linstor-database import-db`."""
    if extension == "mv.db":
        return data
    if extension == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = next((n for n in archive.namelist() if n.endswith(".mv.db")), None)
            if member is None:
                die("the backup zip holds no .mv.db file", hint="choose another backup")
            return archive.read(member)
    return None
