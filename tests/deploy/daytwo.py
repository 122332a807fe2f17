"""Running `linstor-appliance backup` and `restore` against the simulated cluster, in this process."""

from __future__ import annotations

import hashlib
from pathlib import Path

import linstor
from sim.cluster import SimCluster

from builder import cli
from builder.backup import options as backup_options
from builder.backup import take
from builder.restore import options as restore_options
from builder.restore import runner as restore_runner
from deploy.harness import SimDirectory, environment

BACKUPS = "var/lib/linstor-appliance/backups"


def run_backup(cluster: SimCluster, *args: str, node: str = "pve1") -> int:
    """`linstor-appliance backup ARGS` as root on `node`; ApplianceError propagates."""
    parsed = cli.make_parser().parse_args(["backup", *args])
    with environment(cluster, node):
        opts = backup_options.from_args(parsed, root=cluster.root(node))
        return take.run(opts, directory=SimDirectory(cluster, node))


def stored(cluster: SimCluster, node: str, vmid: int = 100) -> list[Path]:
    """The backups on `node`, oldest first, each checked against its .sha256 file."""
    folder = cluster.root(node) / BACKUPS / str(vmid)
    found = sorted(p for p in folder.glob("*") if not p.name.endswith(".sha256") and not p.name.startswith("."))
    for path in found:
        digest, name = (folder / f"{path.name}.sha256").read_text().split()
        assert name == path.name and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def add_resource_group(cluster: SimCluster, address: str, name: str) -> None:
    """A change to the database of the controller answering for `address`."""
    lin = linstor.Linstor(cluster.linstor_url(address))
    lin.connect()
    try:
        replies = lin.resource_group_create(name)
        assert linstor.Linstor.all_api_responses_no_error(replies), [r.message for r in replies]
    finally:
        lin.disconnect()


def resource_groups(cluster: SimCluster, address: str) -> list[str]:
    lin = linstor.Linstor(cluster.linstor_url(address))
    lin.connect()
    try:
        return sorted(str(g.name) for g in lin.resource_group_list_raise().resource_groups)
    finally:
        lin.disconnect()


def run_restore(cluster: SimCluster, *args: str, node: str = "pve1") -> int:
    """`linstor-appliance restore ARGS` as root on `node`; ApplianceError propagates."""
    parsed = cli.make_parser().parse_args(["restore", *args])
    with environment(cluster, node):
        opts = restore_options.from_args(parsed, root=cluster.root(node))
        return restore_runner.run(opts, directory=SimDirectory(cluster, node))


def node_names(cluster: SimCluster, address: str) -> list[str]:
    lin = linstor.Linstor(cluster.linstor_url(address))
    lin.connect()
    try:
        return sorted(str(n.name) for n in lin.node_list_raise().nodes)
    finally:
        lin.disconnect()


def online_satellites(cluster: SimCluster, address: str) -> list[str]:
    lin = linstor.Linstor(cluster.linstor_url(address))
    lin.connect()
    try:
        return sorted(str(n.name) for n in lin.node_list_raise().nodes
                      if str(n.type).upper() in ("SATELLITE", "COMBINED") and str(n.connection_status) == "ONLINE")
    finally:
        lin.disconnect()
