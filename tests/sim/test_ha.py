"""HA behaviour (proxmox.md sections 1.5 and 6; checklist 7, 18-21)."""

from __future__ import annotations

import time

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def vm_with_disk(cluster: SimCluster, vmid: int = 100, node: str = "pve1") -> None:
    result = cluster.run(node, "qm", "create", str(vmid), "--scsi0", "drbdstorage:1", "--name", f"vm{vmid}")
    assert result.returncode == 0, result.stderr


# The moment between the request and HA acting must outlast one command on a busy host.
@pytest.mark.sim_scenario(ha_delay=1.5)
def test_qm_start_on_ha_vm_is_only_a_request(sim_cluster: SimCluster) -> None:
    """Checklist 7: the command returns before the VM runs; HA starts it later."""
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped").returncode == 0
    sim_cluster.settle()
    result = sim_cluster.run("pve1", "qm", "start", "100")
    assert (result.returncode, result.stdout) == (0, "Requesting HA start for VM 100\n")
    assert sim_cluster.run("pve1", "qm", "status", "100").stdout == "status: stopped\n"
    assert sim_cluster.ha_resources()["vm:100"]["state"] == "started"
    assert wait_for(lambda: sim_cluster.vm_status(100) == "running")
    stop = sim_cluster.run("pve1", "qm", "stop", "100")
    assert stop.stdout == "Requesting HA stop for VM 100\n"
    assert wait_for(lambda: sim_cluster.vm_status(100) == "stopped")


# The moment between the request and HA acting must outlast one command on a busy host.
@pytest.mark.sim_scenario(ha_delay=1.5)
def test_status_shows_queued_then_started(sim_cluster: SimCluster) -> None:
    """Checklist 20."""
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100").returncode == 0
    lines = sim_cluster.run("pve1", "ha-manager", "status").stdout.splitlines()
    assert lines[0] == "quorum OK"
    assert lines[1].startswith("master pve1 (active, ")
    assert [line.split(" (")[0] for line in lines[2:5]] == ["lrm pve1", "lrm pve2", "lrm pve3"]
    assert lines[-1] == "service vm:100 (pve1, queued)"
    assert wait_for(lambda: sim_cluster.vm_status(100) == "running")
    sim_cluster.settle()
    assert sim_cluster.run("pve1", "ha-manager", "status").stdout.splitlines()[-1] == "service vm:100 (pve1, started)"


def test_add_and_remove_errors(sim_cluster: SimCluster) -> None:
    """Checklist 18 and 19."""
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped").returncode == 0
    duplicate = sim_cluster.run("pve2", "ha-manager", "add", "100")
    assert (duplicate.returncode, duplicate.stderr) == (255, "resource ID 'vm:100' already defined\n")
    unknown = sim_cluster.run("pve1", "ha-manager", "add", "vm:999")
    assert (unknown.returncode, unknown.stderr) == (255, "resource 'vm:999' does not exist in cluster\n")
    remove = sim_cluster.run("pve1", "ha-manager", "remove", "vm:999")
    assert (remove.returncode, remove.stderr) == (255, "cannot delete service 'vm:999', not HA managed!\n")


def test_resources_cfg_format_and_config_output(sim_cluster: SimCluster) -> None:
    vm_with_disk(sim_cluster)
    add = sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped", "--max_restart", "3",
                          "--max_relocate", "3", "--group", "linstor", "--comment", "LINSTOR controller")  # fmt: skip
    assert add.returncode == 0, add.stderr
    text = (sim_cluster.state.pve / "ha" / "resources.cfg").read_text()
    assert text == ("vm: 100\n\tcomment LINSTOR controller\n\tgroup linstor\n\tmax_relocate 3\n\tmax_restart 3\n"
                    "\tstate stopped\n\n")  # fmt: skip
    config = sim_cluster.run("pve1", "ha-manager", "config")
    assert config.stdout.startswith("vm:100\n\tcomment LINSTOR controller\n")
    assert config.stderr == "error: property 'group' - group 'linstor' does not exist\n"
    missing_group = sim_cluster.run("pve1", "ha-manager", "set", "vm:100", "--group", "nope")
    assert missing_group.stderr == "HA group 'nope' does not exist\n"
    assert sim_cluster.run("pve1", "ha-manager", "groupadd", "linstor", "--nodes", "pve1,pve2:2").returncode == 0
    assert sim_cluster.run("pve1", "ha-manager", "config").stderr == ""


def test_recovery_after_node_failure(sim_cluster: SimCluster) -> None:
    """Checklist 21: fence after the node dies, recovery once its lock expired (~2 min)."""
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--max_restart", "1").returncode == 0
    assert wait_for(lambda: sim_cluster.vm_status(100) == "running")
    sim_cluster.node_offline("pve1")
    assert sim_cluster.vm_status(100) == "stopped"
    sim_cluster.advance(45)
    assert sim_cluster.ha_services()["vm:100"]["state"] == "fence"
    assert sim_cluster.vm_owner(100) == "pve1"
    sim_cluster.advance(80)
    assert wait_for(lambda: sim_cluster.vm_running_on(100) is not None)
    assert sim_cluster.vm_owner(100) in ("pve2", "pve3")
    assert sim_cluster.vm_running_on(100) == sim_cluster.vm_owner(100)
    status = sim_cluster.run("pve2", "ha-manager", "status").stdout
    assert "lrm pve1 (old timestamp - dead?, " in status


def test_start_failure_restarts_relocates_then_errors(sim_cluster: SimCluster) -> None:
    """Checklist 21: max_restart on the node, max_relocate elsewhere, then error."""
    assert sim_cluster.run("pve1", "qm", "create", "100", "--scsi0", "/dev/drbd/by-res/missing/0").returncode == 0
    add = sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--max_restart", "1", "--max_relocate", "1")
    assert add.returncode == 0
    assert wait_for(lambda: sim_cluster.ha_services().get("vm:100", {}).get("state") == "error", timeout=10)
    assert sim_cluster.vm_owner(100) != "pve1"
    assert sim_cluster.run("pve1", "ha-manager", "status").stdout.splitlines()[-1].endswith(", error)")


def test_migrate_moves_config_and_primary(sim_cluster: SimCluster) -> None:
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100").returncode == 0
    assert wait_for(lambda: sim_cluster.vm_status(100) == "running")
    result = sim_cluster.run("pve1", "qm", "migrate", "100", "pve2", "--online")
    assert result.stdout == "Requesting HA migration for VM 100 to node pve2\n"
    assert wait_for(lambda: sim_cluster.vm_running_on(100) == "pve2")
    res = sim_cluster.vm_config(100)["scsi0"].split(":")[1][:11]
    assert sim_cluster.drbd_primary(res) == ["pve2"]


def test_node_without_quorum_self_fences(sim_cluster: SimCluster) -> None:
    """proxmox.md section 6.4: watchdog after ~60 s without quorum, recovery elsewhere after the lock expired."""
    vm_with_disk(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100").returncode == 0
    assert wait_for(lambda: sim_cluster.vm_status(100) == "running")
    sim_cluster.lose_quorum("pve1")
    sim_cluster.advance(30)
    assert sim_cluster.vm_running_on(100) == "pve1"
    sim_cluster.advance(35)
    assert sim_cluster.vm_running_on(100) is None
    sim_cluster.advance(125)
    assert wait_for(lambda: sim_cluster.vm_running_on(100) in ("pve2", "pve3"))


@pytest.mark.sim_scenario(no_quorum_nodes=("pve1", "pve2", "pve3"), cfs_lock_timeout=0.3)
def test_quorum_lost_everywhere(sim_cluster: SimCluster) -> None:
    assert sim_cluster.run("pve2", "ha-manager", "status").stdout.startswith("quorum No quorum on node 'pve2'!\n")
    add = sim_cluster.run("pve2", "ha-manager", "add", "vm:100")
    assert add.returncode == 255
    assert add.stderr.splitlines()[-1] == "cfs-lock 'domain-ha' error: got lock request timeout"
