"""What cold-start support changes for the whole cluster: snippets content and the guests' hookscript."""

from __future__ import annotations

from pathlib import Path

from builder import log
from builder.coldstart import layout, nodetool, pveconf
from builder.coldstart.record import ClusterRecord
from builder.errors import die
from builder.run import run


def snippets_dir(root: Path, storage_id: str) -> str:
    """The directory hookscripts live in on a `dir` storage (proxmox.md section 8: snippets content)."""
    storage = pveconf.storages(root).get(storage_id)
    if storage is None:
        die(f"storage '{storage_id}' does not exist", hint="pass a directory storage with --snippets-storage")
    if storage.type != "dir":
        die(f"storage '{storage_id}' is a {storage.type} storage; hookscripts need a node-local directory storage",
            hint="use --snippets-storage local")
    return storage.values.get("path", "/var/lib/vz").rstrip("/") + "/snippets"


def volid(storage_id: str) -> str:
    return f"{storage_id}:snippets/{layout.HOOK_NAME}"


def enable_snippets(root: Path, record: ClusterRecord) -> None:
    """Add `snippets` to the storage's content (read-modify-write through pvesm), once, remembering the old list."""
    storage = pveconf.storages(root)[record.snippets_storage]
    if "snippets" in storage.content:
        return
    before = storage.values.get("content", "")
    content = ",".join([*storage.content, "snippets"])
    log.info(f"adding snippets to the content of storage '{storage.id}' (for the hookscript)")
    run(["pvesm", "set", storage.id, "--content", content])
    record.content_before = before


def restore_snippets(root: Path, record: ClusterRecord) -> None:
    if record.content_before is None:
        return
    storage = pveconf.storages(root).get(record.snippets_storage)
    if storage is not None and "snippets" in storage.content:
        # Keep whatever else was changed since; only take back what install added.
        content = ",".join(c for c in storage.content if c != "snippets")
        if content:
            run(["pvesm", "set", storage.id, "--content", content])
        else:
            run(["pvesm", "set", storage.id, "--delete", "content"])
    record.content_before = None


def needs_gate(guest: pveconf.Guest, drbd: set[str], controller_vmid: int) -> bool:
    return guest.vmid != controller_vmid and bool(guest.storage_ids() & drbd)


def qm_on(node: str, local: str, *args: str) -> None:
    """qm is node-local (proxmox.md 1.1): run it on the guest's node, through ssh when that is another node."""
    argv = ["qm", *args]
    if node != local:
        argv = ["ssh", "-o", "BatchMode=yes", f"root@{node}", *argv]
    run(argv, capture=True, hint=f"check that node {node} is online and reachable with 'ssh root@{node}'")


def gate_guests(root: Path, record: ClusterRecord, controller_vmid: int) -> None:
    """Give every guest on DRBD storage (not the controller VM) the hook; guests with their own keep it."""
    local = pveconf.local_node(root)
    drbd = set(pveconf.drbd_storages(root))
    hook = volid(record.snippets_storage)
    command = layout.tool_command(nodetool.packaged(root))
    for guest in pveconf.guests(root).values():
        if not needs_gate(guest, drbd, controller_vmid) or guest.hookscript == hook:
            continue
        if guest.hookscript:
            log.warn(f"VM {guest.vmid} has its own hookscript {guest.hookscript}; it is not gated "
                     f"(call '{command} coldstart hook \"$@\"' from it to gate it)")  # fmt: skip
            continue
        qm_on(guest.node, local, "set", str(guest.vmid), "--hookscript", hook)
        record.hooks[str(guest.vmid)] = None
        log.info(f"VM {guest.vmid} ({guest.name}) on {guest.node}: hookscript {hook}")


def ungate_guests(root: Path, record: ClusterRecord) -> None:
    local = pveconf.local_node(root)
    hook = volid(record.snippets_storage)
    current = pveconf.guests(root)
    for vmid, previous in list(record.hooks.items()):
        guest = current.get(int(vmid))
        if guest is not None and guest.hookscript == hook:
            if previous:
                qm_on(guest.node, local, "set", vmid, "--hookscript", previous)
            else:
                qm_on(guest.node, local, "set", vmid, "--delete", "hookscript")
        del record.hooks[vmid]
