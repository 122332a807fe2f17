"""Fake ssh / scp between nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


@pytest.mark.sim_scenario(offline_nodes=("pve3",))
def test_ssh_runs_on_the_other_node(sim_cluster: SimCluster, tmp_path: Path) -> None:
    result = sim_cluster.run("pve1", "ssh", "-o", "BatchMode=yes", "root@pve2", "qm", "list")
    assert result.returncode == 0 and result.stdout.startswith("      VMID NAME")
    node = sim_cluster.run("pve1", "ssh", "root@10.0.0.2", "echo $PVE_SIM_NODE")
    assert node.stdout == "pve2\n"
    offline = sim_cluster.run("pve1", "ssh", "root@pve3", "true")
    assert (offline.returncode, offline.stderr) == (255, "ssh: connect to host pve3 port 22: No route to host\n")
    by_ip = sim_cluster.run("pve1", "ssh", "root@10.0.0.3", "true")
    assert by_ip.stderr == "ssh: connect to host 10.0.0.3 port 22: No route to host\n"
    code = sim_cluster.run("pve1", "ssh", "root@pve2", "exit 7")
    assert code.returncode == 7
    source = tmp_path / "file.txt"
    source.write_text("payload\n")
    assert sim_cluster.run("pve1", "scp", str(source), "root@pve2:/var/lib/linstor.d/copied.txt").returncode == 0
    assert (sim_cluster.root("pve2") / "var/lib/linstor.d/copied.txt").read_text() == "payload\n"


def test_remote_paths_are_the_nodes_files(sim_cluster: SimCluster) -> None:
    """As root, a remote command sees the node's /etc, /var/lib and /dev (overlay), and writes there."""
    # Only a read first: without the overlay (no root or no unshare) a write would land in this host's /etc.
    if sim_cluster.run("pve1", "ssh", "root@pve2", "cat /etc/hostname").stdout != "pve2\n":
        pytest.skip("remote file system mapping needs root and unshare")
    command = ("mkdir -p /etc/systemd/system/linstor-satellite.service.d && "
               "printf '[Unit]\\nAfter=drbd.service\\n' > /etc/systemd/system/linstor-satellite.service.d/x.conf && "
               "cat /etc/hostname")  # fmt: skip
    result = sim_cluster.run("pve1", "ssh", "root@pve2", command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pve2\n"
    assert "x.conf" in sim_cluster.dropins("pve2", "linstor-satellite")
    assert not Path("/etc/systemd/system/linstor-satellite.service.d/x.conf").exists()
