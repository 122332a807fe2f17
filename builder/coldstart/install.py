"""coldstart install and remove on one node; the cluster-wide part is done by whichever node completes it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from builder import log, slots
from builder.coldstart import controller, guests, layout, nodefiles, nodetool, pveconf
from builder.coldstart.record import ClusterRecord, NodeRecord, cluster_lock
from builder.coldstart.settings import Settings
from builder.errors import die
from builder.run import require, run


def install(root: Path, settings: Settings) -> None:
    """Install cold-start support on the node at `root` (idempotent); gate the guests once every node has it."""
    with log.step("Checking this node and the cluster"):
        node = pveconf.local_node(root)
        if not pveconf.drbd_storages(root):
            die("storage.cfg has no enabled drbd storage", hint="nothing on this cluster needs a LINSTOR controller")
        ctrl = controller.find(pveconf.guests(root), pveconf.ha_resources(root), settings.controller_vmid)
        if not ctrl.ha_managed:
            log.warn(f"the controller VM {ctrl.vmid} is not HA-managed; after an outage nothing restarts it "
                     f"on another node (ha-manager add vm:{ctrl.vmid})")  # fmt: skip
        check_resource(root, node, ctrl.resource)
        snippets = guests.snippets_dir(root, settings.snippets_storage)
        require("curl")
        nodetool.check_python()
    with log.step(f"Installing the gate, hook and retry timer on {node}"):
        record = NodeRecord.load(root) or NodeRecord()
        fallback = package_version("linstor-proxmox") >= (8, 3)
        files = nodefiles.wanted(settings, ctrl.vmid, ctrl.resource, snippets, fallback, nodetool.packaged(root),
                                 nodetool.packaged_units(root))
        nodefiles.drop_stale(root, files, record)
        nodefiles.write(root, files, record)
        # The resource too, so `linstor-appliance status` can tell a helper left waiting for another disk.
        record.settings = {**settings.to_json(), "controller_vmid": ctrl.vmid, "resource": ctrl.resource}
        # Saved before units change, so remove can undo a half-finished install.
        record.save(root)
        nodefiles.enable_units(root, ctrl.resource, record)
        record.save(root)
    with log.step("Gating the guests on DRBD storage"), cluster_lock(root):
        cluster = ClusterRecord.load(root) or ClusterRecord(snippets_storage=settings.snippets_storage)
        if cluster.snippets_storage != settings.snippets_storage and cluster.nodes:
            die(f"other nodes use the snippets storage '{cluster.snippets_storage}'",
                hint=f"pass --snippets-storage {cluster.snippets_storage}, or remove coldstart on every node first")
        cluster.controller_vmid = ctrl.vmid
        if node not in cluster.nodes:
            cluster.nodes.append(node)
        try:
            guests.enable_snippets(root, cluster)
            missing = [n for n in pveconf.cluster_nodes(root) if n not in cluster.nodes]
            if missing:
                # A guest with the hook fails to start on a node without the script.
                log.info(f"the guests get the hook once every node has it; still to do: {', '.join(missing)}")
            else:
                guests.gate_guests(root, cluster, ctrl.vmid)
        finally:
            cluster.save(root)


def check_resource(root: Path, node: str, resource: str) -> None:
    """The controller VM's disk must come up at boot here without LINSTOR: its .res file has to be kept."""
    res = slots.res_file(resource)
    if not (root / res.lstrip("/")).exists():
        die(f"this node has no {res}, so the controller VM's disk cannot come up "
            "here at boot", hint=f"make the resource available here: linstor resource make-available {node} "
            f"{resource}")  # fmt: skip
    version = package_version("linstor-satellite")
    if (0, 0) < version < (1, 33):
        environment = run(["systemctl", "show", "-p", "Environment", "linstor-satellite.service"], check=False,
                          capture=True).stdout  # fmt: skip
        match = re.search(r"LS_KEEP_RES=(\S+)", environment)
        if not match or not _matches(match.group(1), resource):
            shown = ".".join(map(str, version))
            log.warn(f"linstor-satellite {shown} may delete {resource}.res at start; keep it with a drop-in "
                     f"'[Service] Environment=LS_KEEP_RES={resource}' (linstor.md section 5)")  # fmt: skip


def package_version(package: str) -> tuple[int, int]:
    """(major, minor) of an installed package; (0, 0) when it is not installed."""
    text = run(["dpkg-query", "-W", "-f=${Version}", package], check=False, capture=True).stdout
    numbers = [int(n) for n in re.findall(r"\d+", text)[:2]]
    return (numbers[0], numbers[1]) if len(numbers) == 2 else (0, 0)


def _matches(pattern: str, resource: str) -> bool:
    try:
        return re.search(pattern, resource) is not None
    except re.error:
        return False


def remove(root: Path) -> None:
    """Undo install on this node; the guests lose the hook at once, the last node restores the storage content."""
    node = pveconf.local_node(root)
    with log.step("Taking the hook off the guests"), cluster_lock(root):
        cluster = ClusterRecord.load(root)
        if cluster is not None:
            try:
                # Without the script here, a gated guest would fail to start on this node.
                guests.ungate_guests(root, cluster)
                if node in cluster.nodes:
                    cluster.nodes.remove(node)
                if not cluster.nodes:
                    guests.restore_snippets(root, cluster)
            finally:
                if cluster.nodes:
                    cluster.save(root)
                    log.info(f"still installed on {', '.join(cluster.nodes)}; the guests are gated again by the "
                             "next 'coldstart install' once every cluster node has it")  # fmt: skip
                else:
                    ClusterRecord.delete(root)
    record = NodeRecord.load(root)
    with log.step(f"Removing the gate, hook and retry timer from {node}"):
        if record is None:
            log.info("nothing was installed on this node")
            return
        clearing = layout.at(root, layout.CLEARING_DIR)
        for entry in sorted(clearing.glob("*")) if clearing.is_dir() else []:
            # The retry timer was between `--state disabled` and `--state started` for this guest.
            log.warn(f"VM {entry.name} may still be HA-disabled: ha-manager set vm:{entry.name} --state started")
            entry.unlink()
        nodefiles.remove(root, record)
        NodeRecord.delete(root)
    # Refusals and lock slots of this boot mean nothing without the script.
    shutil.rmtree(layout.at(root, layout.RUN_DIR), ignore_errors=True)
