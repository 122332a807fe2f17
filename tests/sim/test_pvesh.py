"""pvesh JSON output, backup jobs and the cluster views (proxmox.md sections 1.1, 6.3, 7; checklist 22)."""

from __future__ import annotations

import json

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


@pytest.mark.sim_scenario(existing_vms={100: "pve2"})
def test_cluster_resources(sim_cluster: SimCluster) -> None:
    result = sim_cluster.run("pve1", "pvesh", "get", "/cluster/resources", "--type", "vm", "--output-format", "json")
    assert result.returncode == 0
    assert result.stdout.endswith("\n") and ": " not in result.stdout
    (vm,) = json.loads(result.stdout)
    assert {k: vm[k] for k in ("id", "vmid", "node", "status", "type", "name")} == {
        "id": "qemu/100", "vmid": 100, "node": "pve2", "status": "stopped", "type": "qemu", "name": "vm100",
    }  # fmt: skip
    assert "hastate" not in vm
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped").returncode == 0
    again = json.loads(sim_cluster.run("pve3", "pvesh", "get", "/cluster/resources", "--type", "vm",
                                       "--output-format", "json").stdout)  # fmt: skip
    assert again[0]["hastate"] in ("queued", "stopped")


@pytest.mark.sim_scenario(existing_vms={100: "pve2"})
def test_vm_status_current_ha_field(sim_cluster: SimCluster) -> None:
    args = ["pvesh", "get", "/nodes/pve2/qemu/100/status/current", "--output-format", "json"]
    assert json.loads(sim_cluster.run("pve1", *args).stdout)["ha"] == {"managed": 0}
    sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped", "--group", "g")
    assert json.loads(sim_cluster.run("pve1", *args).stdout)["ha"] == {"managed": 1, "state": "stopped", "group": "g"}
    wrong = sim_cluster.run("pve1", "pvesh", "get", "/nodes/pve1/qemu/100/config", "--output-format", "json")
    assert wrong.returncode == 255
    assert wrong.stderr == "500 Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist\n"
    config = json.loads(sim_cluster.run("pve1", "pvesh", "get", "/nodes/pve2/qemu/100/config",
                                        "--output-format", "json").stdout)  # fmt: skip
    assert len(config["digest"]) == 40


def test_backup_job(sim_cluster: SimCluster) -> None:
    """Checklist 22."""
    args = ["pvesh", "create", "/cluster/backup", "--id", "backup-linstor-ctrl", "--schedule", "02:30",
            "--vmid", "100",
            "--storage", "local", "--mode", "snapshot", "--compress", "zstd", "--enabled", "1",
            "--comment", "LINSTOR controller VM", "--prune-backups", "keep-last=7"]  # fmt: skip
    result = sim_cluster.run("pve1", *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sim_cluster.backup_jobs() == (
        "vzdump: backup-linstor-ctrl\n\tcomment LINSTOR controller VM\n\tcompress zstd\n\tenabled 1\n\tmode snapshot\n"
        "\tprune-backups keep-last=7\n\tschedule 02:30\n\tstorage local\n\tvmid 100\n\n"
    )
    duplicate = sim_cluster.run("pve2", *args)
    assert (duplicate.returncode, duplicate.stderr) == (255, "Job 'backup-linstor-ctrl' already exists\n")
    both = sim_cluster.run("pve1", "pvesh", "create", "/cluster/backup", "--id", "b2", "--schedule", "1:00",
                           "--starttime", "01:00")  # fmt: skip
    assert both.stderr == "'starttime' and 'schedule' cannot both be set\n"
    neither = sim_cluster.run("pve1", "pvesh", "create", "/cluster/backup", "--id", "b3", "--vmid", "100")
    assert neither.stderr == "neither 'starttime' nor 'schedule' were set\n"
    jobs = json.loads(sim_cluster.run("pve1", "pvesh", "get", "/cluster/backup", "--output-format", "json").stdout)
    assert [(j["id"], j["type"], j["vmid"], j["schedule"]) for j in jobs] == [
        ("backup-linstor-ctrl", "vzdump", "100", "02:30")
    ]
    assert sim_cluster.run("pve1", "pvesh", "delete", "/cluster/backup/backup-linstor-ctrl").returncode == 0
    assert sim_cluster.backup_jobs() == ""


def test_nodes_and_cluster_status(make_sim_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_sim_cluster(nodes=3, offline_nodes=("pve3",))
    nodes = json.loads(cluster.run("pve1", "pvesh", "get", "/nodes", "--output-format", "json").stdout)
    assert {n["node"]: n["status"] for n in nodes} == {"pve1": "online", "pve2": "online", "pve3": "offline"}
    status = json.loads(cluster.run("pve2", "pvesh", "get", "/cluster/status", "--output-format", "json").stdout)
    assert status[0]["quorate"] == 1
    version = json.loads(cluster.run("pve1", "pvesh", "get", "/version", "--output-format", "json").stdout)
    assert version["release"] == "8.4"
