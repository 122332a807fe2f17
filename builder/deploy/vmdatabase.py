"""The LINSTOR database in the VM disk: read out, kept as a verified backup, carried back to this node.

Once the storage entries point at the VM's controller (step 10, and so after every completed deploy),
Proxmox and the admins make their changes there: the database in the VM disk is the cluster's. So a
rollback from then on stops the VM, keeps the database files of its disk in
`<state dir>/vm-database-<vmid>-<digest>/` (the layout and SHA256SUMS of the step 6 backup; the name
comes from the content, so a repeated rollback finds its copy again) and puts exactly those bytes on
this node before the controller here starts. If any of that fails the VM is started again: the
cluster keeps the one controller that has the current database, and nothing is rolled back.

A new deploy writes its image over the VM disk. It refuses while that disk holds a database that
no journal of this VMID accounts for (neither injected by a deploy nor carried back by a rollback)
and that is not this node's, unless told to keep it in a backup first (--replace-vm-database).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from builder import diskimage, log
from builder.deploy import backup, controller, inject, wait
from builder.deploy.context import Context
from builder.deploy.journal import Journal
from builder.deploy.steps.image import primaries, refuse_if_in_use
from builder.deploy.steps.inject import H2_SUFFIXES
from builder.deploy.steps.start import running, start_vm, stop_vm
from builder.errors import ApplianceError, die
from builder.manifest import read_sums, sha256

UNIT = "linstor-controller.service"
# The files that hold the data; H2's .trace.db is only its log and may differ without any change.
DATA_SUFFIXES = (".mv.db", ".h2.db")
FLAG = "--replace-vm-database"


def authoritative(journal: Journal) -> bool:
    """Whether changes may have been made through the VM's controller: the storage entries pointed at it."""
    return bool(journal.data.get("completed_at")) or journal.touched("storage")


def db_base(journal: Journal) -> str | None:
    """The database's path without suffix, from what step 7 injected (e.g. /var/lib/linstor/linstordb)."""
    for path in journal.record("inject").get("files", {}):
        for suffix in DATA_SUFFIXES:
            if path.endswith(suffix):
                return str(path)[: -len(suffix)]
    return None


def read_disk(ctx: Context, base: str) -> dict[str, bytes]:
    """{path relative to /: bytes} of the database files in the VM disk; {} without an appliance file system."""
    device = ctx.options.host_path(ctx.options.device)
    try:
        partitions = diskimage.partitions(device)
    except ApplianceError:
        return {}  # no partition table: nothing there a controller could have booted from
    if not any(p.type == diskimage.ROOT_X86_64 for p in partitions):
        return {}
    found = inject.read(device, [base + suffix for suffix in H2_SUFFIXES])
    return {path.lstrip("/"): data for path, data in found.items() if data is not None}


def has_data(files: dict[str, bytes]) -> bool:
    return any(path.endswith(DATA_SUFFIXES) for path in files)


def folder_for(state_dir: Path, vmid: int, files: dict[str, bytes]) -> Path:
    listing = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sorted(files.items()))
    return state_dir / f"vm-database-{vmid}-{hashlib.sha256(listing.encode()).hexdigest()[:12]}"


# --- rollback -------------------------------------------------------------------------------------
def take_out(ctx: Context) -> dict[str, Any]:
    """Stop the VM and keep its database; the journal's fact `vm_database` says where. Refuses (and starts
    the VM again if it ran) when that cannot be done, so the VM's controller stays the cluster's."""
    o, journal = ctx.options, ctx.j
    local = ctx.pve.local
    base = db_base(journal)
    if base is None:
        die(f"the journal does not say which database step 7 put into the disk of VM {o.vmid}",
            hint=f"nothing was rolled back; compare the VM's /etc/linstor/linstor.toml with {journal.path}")
    if ctx.pve.unit_active(local, UNIT):
        die(f"the LINSTOR controller on {local.name} runs although the deploy stopped it, next to the one in "
            f"VM {o.vmid}; nothing was rolled back",
            hint="stop it ('systemctl stop linstor-controller'; the VM's controller holds the current database) "
                 "and run the rollback again")  # fmt: skip
    if not o.host_path(o.device).exists():
        die(f"the disk of VM {o.vmid} ({o.device}) is not up on {local.name}, so its database cannot be taken out; "
            "nothing was rolled back",
            hint=f"bring it up ('linstor resource make-available {local.name} {o.resource}' on the VM's "
                 "controller) and run the rollback again")  # fmt: skip
    sid = f"vm:{o.vmid}"
    restart = running(ctx) or ctx.pve.ha_resources().get(sid, {}).get("state") == "started"
    log.info(f"the controller in VM {o.vmid} holds the cluster's current database: stopping the VM to take it out")
    try:
        stop_vm(ctx)
        wait.until(lambda: not primaries(ctx), timeout=o.wait_timeout, what=f"{o.resource} released on every node",
                   hint=f"see which node holds it: drbdsetup status {o.resource}", interval=0.5)  # fmt: skip
        files = read_disk(ctx, base)
        if not has_data(files):
            die(f"the disk of VM {o.vmid} holds no database {base}.mv.db",
                hint=f"look at the disk: the deploy journal {journal.path} says step 7 put it there")
        folder = folder_for(o.state_dir, o.vmid, files)
        sums = backup.keep(folder, files)
    except ApplianceError as error:
        _refuse(ctx, error, restart)
    log.info(f"kept the database of VM {o.vmid} in {folder}")
    record = {"backup": str(folder), "files": sums}
    journal.set_fact("vm_database", record)
    return record


def _refuse(ctx: Context, error: ApplianceError, restart: bool) -> NoReturn:
    o = ctx.options
    what = f"the database could not be taken out of VM {o.vmid}: {error.message}"
    if not restart:
        die(f"{what}; nothing was rolled back", hint=(error.hint or "fix that") + "; then run the rollback again")
    log.warn(f"{what}; starting VM {o.vmid} again")
    try:
        start_vm(ctx)
    except ApplianceError as again:
        ctx.j.set_status("rollback-failed", error=f"{what}; starting the VM again failed: {again.message}")
        die(f"{what}; and VM {o.vmid} did not start again ({again.message}): no LINSTOR controller runs",
            hint=f"start it: ha-manager set vm:{o.vmid} --state started; then fix the cause and roll back again")
    die(f"{what}; VM {o.vmid} runs again, so its controller stays the cluster's and nothing was rolled back",
        hint=(error.hint or "fix that") + "; then run the rollback again")


def put_on_host(ctx: Context, carried: dict[str, Any], handover: dict[str, Any]) -> str:
    """The kept VM database on this node, byte for byte, before its controller starts; returns a report line.

    The files it replaces are in the step 6 backup; if they changed since, they are backed up again first.
    """
    o = ctx.options
    local = ctx.pve.local
    folder = Path(str(carried["backup"]))
    if not backup.complete(folder):
        die(f"the copy of the VM's database {folder} is missing or incomplete",
            hint="run the rollback again: it takes the database out of the VM disk again")
    sums = backup.verify(folder)
    if sums != carried.get("files"):
        die(f"{folder} does not hold the files the rollback took out of the VM",
            hint=f"compare its SHA256SUMS with the fact vm_database in {ctx.j.path}")
    if ctx.pve.unit_active(local, UNIT):
        die(f"the LINSTOR controller on {local.name} runs, so its database cannot be replaced",
            hint="stop it ('systemctl stop linstor-controller') and run the rollback again")
    differs = [path for path, digest in sums.items() if not _holds(o.host_path(path), digest)]
    if differs:
        saved = _saved_files(handover)
        unsaved = [path for path in differs if o.host_path(path).exists()
                   and saved.get(path) != sha256(o.host_path(path))]  # fmt: skip
        if unsaved:
            extra = backup.create(o.root, o.state_dir, o.vmid)
            log.info(f"{', '.join('/' + p for p in unsaved)} changed since step 6: backed up again to {extra}")
            ctx.j.set_fact("vm_database", {**carried, "host_backup": str(extra)})
        for path in differs:
            _replace(o.host_path(path), (folder / path).read_bytes())
    for path, digest in sums.items():
        if not _holds(o.host_path(path), digest):
            die(f"/{path} on {local.name} does not read back as the VM's database",
                hint=f"check the file system; the VM's database is kept in {folder}")
    return f"{local.name}: the database of VM {o.vmid} (kept in {folder}) put in place, checksums verified"


def _holds(path: Path, digest: str) -> bool:
    return path.is_file() and sha256(path) == digest


def _saved_files(handover: dict[str, Any]) -> dict[str, str]:
    folder = Path(str(handover.get("backup", "")))
    return read_sums(folder / backup.SUMS) if handover.get("backup") and backup.complete(folder) else {}


def _replace(target: Path, data: bytes) -> None:
    """Write atomically, keeping the owner and mode of the file it replaces (the controller's user may differ)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode, uid, gid = 0o640, 0, 0
    if target.exists():
        info = target.stat()
        mode, uid, gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
    tmp = target.with_name(f".{target.name}.linstor-appliance")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chown(tmp, uid, gid)
    tmp.chmod(mode)
    os.replace(tmp, target)


# --- redeploy -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AtRisk:
    """A database in the VM disk that a new deploy would overwrite, and where it is kept first."""

    files: dict[str, bytes]
    folder: Path


def check_redeploy(ctx: Context) -> AtRisk | None:
    """Before a new deploy changes anything: refuse while the VM disk holds a database nothing accounts for."""
    o, f = ctx.options, ctx.f
    if not o.host_path(o.device).exists():
        with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
            exists = ctrl.resource_definition(o.resource) is not None
        if exists:
            die(f"the VM disk {o.resource} exists but is not up on {f.local.name}, so the database it may hold "
                "cannot be checked before the image overwrites it",
                hint=f"bring it up here ('linstor resource make-available {f.local.name} {o.resource}') and run "
                     "the deploy again")  # fmt: skip
        return None
    refuse_if_in_use(ctx)
    files = read_disk(ctx, f.db_base)
    data = {path: hashlib.sha256(content).hexdigest() for path, content in files.items()
            if path.endswith(DATA_SUFFIXES)}  # fmt: skip
    if not data:
        return None
    known = _accounted(ctx)
    if all(digest in known.get(path, set()) for path, digest in data.items()):
        return None
    folder = folder_for(o.state_dir, o.vmid, files)
    if not o.replace_vm_database:
        die(f"the disk of VM {o.vmid} holds a LINSTOR database that no deploy put there and no rollback carried "
            f"back (its controller changed it since); the image would overwrite it",
            hint=f"to keep it in {folder} and deploy anyway, run the deploy again with {FLAG}")  # fmt: skip
    log.info(f"{FLAG}: the database in the disk of VM {o.vmid} will be kept in {folder} before the image "
             "overwrites it")  # fmt: skip
    return AtRisk(files, folder)


def keep_replaced(ctx: Context, at_risk: AtRisk) -> Path:
    """The backup --replace-vm-database promises, verified, before any step runs."""
    backup.keep(at_risk.folder, at_risk.files)
    log.info(f"kept the database found in the disk of VM {ctx.options.vmid} in {at_risk.folder}")
    return at_risk.folder


def _accounted(ctx: Context) -> dict[str, set[str]]:
    """{path: digests} a VM disk may hold without loss: what journals injected or carried back, and this
    node's own database."""
    o = ctx.options
    known: dict[str, set[str]] = {}
    paths = [o.state_dir / f"deploy-{o.vmid}.json", *sorted(o.state_dir.glob(f"deploy-{o.vmid}.rolled-back-*.json"))]
    for path in paths:
        journal = Journal.load(path)
        if journal is None:
            continue
        for name, digest in journal.record("inject").get("files", {}).items():
            known.setdefault(str(name).lstrip("/"), set()).add(str(digest))
        for name, digest in (journal.fact("vm_database") or {}).get("files", {}).items():
            known.setdefault(str(name), set()).add(str(digest))
    for suffix in DATA_SUFFIXES:
        name = ctx.f.db_base.lstrip("/") + suffix
        if o.host_path(name).is_file():
            known.setdefault(name, set()).add(sha256(o.host_path(name)))
    return known
