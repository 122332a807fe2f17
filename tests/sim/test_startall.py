"""pve-guests startall (proxmox.md section 5; checklist 24)."""

from __future__ import annotations

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def test_startall_skips_ha_vms_and_orders_per_node(sim_cluster: SimCluster) -> None:
    run = sim_cluster.run
    for vmid, order in ((201, "2"), (202, "1"), (203, None)):
        args = ["qm", "create", str(vmid), "--scsi0", "drbdstorage:1", "--onboot", "1"]
        if order:
            args += ["--startup", f"order={order}"]
        assert run("pve1", *args).returncode == 0
    assert run("pve1", "qm", "create", "100", "--scsi0", "drbdstorage:1", "--onboot", "1").returncode == 0
    assert run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped").returncode == 0
    assert run("pve1", "pvesh", "create", "/nodes/localhost/startall").returncode == 0
    assert [sim_cluster.vm_status(v) for v in (201, 202, 203)] == ["running"] * 3
    assert sim_cluster.vm_status(100) == "stopped"
    for vmid in (201, 202, 203):
        run("pve1", "qm", "stop", str(vmid))
    # A power cycle runs the same startall through pve-guests.service.
    sim_cluster.node_offline("pve1")
    sim_cluster.node_online("pve1")
    assert [sim_cluster.vm_status(v) for v in (201, 202, 203)] == ["running"] * 3
    assert sim_cluster.vm_status(100) == "stopped"
