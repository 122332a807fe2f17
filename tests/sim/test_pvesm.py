"""pvesm alloc / path / list / status and the plugin's naming per version (checklist 12, 13)."""

from __future__ import annotations

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def test_alloc_and_path_with_plugin_8(sim_cluster: SimCluster) -> None:
    """Checklist 12 and 13."""
    result = sim_cluster.run("pve1", "pvesm", "alloc", "drbdstorage", "100", "", "2G")
    assert result.returncode == 0, result.stderr
    volid = result.stdout.splitlines()[-1].split("'")[1]
    assert result.stdout.splitlines()[-1] == f"successfully created '{volid}'"
    name = volid.split(":")[1]
    assert name.startswith("pm-") and name.endswith("_100") and len(name) == 15
    path = sim_cluster.run("pve1", "pvesm", "path", volid)
    assert path.stdout == f"/dev/drbd/by-res/{name[:11]}/0\n"
    legacy = sim_cluster.run("pve1", "pvesm", "alloc", "drbdstorage", "100", "vm-100-disk-1", "1G")
    assert legacy.stdout.splitlines()[-1] == "successfully created 'drbdstorage:vm-100-disk-1'"
    dup = sim_cluster.run("pve1", "pvesm", "alloc", "drbdstorage", "100", "vm-100-disk-1", "1G")
    assert (dup.returncode, dup.stderr.splitlines()[-1]) == (255, "volume 'vm-100-disk-1' already exists")
    bad = sim_cluster.run("pve1", "pvesm", "alloc", "drbdstorage", "100", "disk1", "1G")
    assert bad.stderr.startswith("allocated name ('disk1') has to be a valid UUID, legacy, state, or cloud-init name")
    unparsable = sim_cluster.run("pve1", "pvesm", "path", "drbdstorage:foo")
    assert unparsable.stderr == "unable to parse PVE volume name 'foo'\n"
    listing = sim_cluster.run("pve1", "pvesm", "list", "drbdstorage", "--vmid", "100").stdout.splitlines()
    assert listing[0].split() == ["Volid", "Format", "Type", "Size", "VMID"]
    assert sorted(line.split()[0] for line in listing[1:]) == sorted([volid, "drbdstorage:vm-100-disk-1"])
    assert any(line.split()[3] == str(2 * 1024**3) for line in listing[1:])


@pytest.mark.sim_scenario(plugin_version="7.0.1")
def test_legacy_names_with_plugin_7(sim_cluster: SimCluster) -> None:
    out = sim_cluster.run("pve1", "qm", "create", "100", "--scsi0", "drbdstorage:1").stdout
    assert "scsi0: successfully created disk 'drbdstorage:vm-100-disk-1,size=1G'" in out
    assert sim_cluster.run("pve1", "pvesm", "path", "drbdstorage:vm-100-disk-1").stdout == (
        "/dev/drbd/by-res/vm-100-disk-1/0\n"
    )
    assert sim_cluster.run("pve1", "pvesm", "path", "drbdstorage:pm-1234abcd_100").stderr == (
        "unable to parse lvm volume name 'pm-1234abcd_100'\n"
    )


@pytest.mark.sim_scenario(plugin_version="5.2.2")
def test_controllervm_volume_bypasses_linstor_with_plugin_5(sim_cluster: SimCluster) -> None:
    """linstor.md section 2.4: alloc returns vm-<id>-disk-1 without creating anything; free dies."""
    out = sim_cluster.run("pve1", "qm", "create", "100", "--scsi0", "drbdstorage:1").stdout
    assert "'drbdstorage:vm-100-disk-1,size=1G'" in out
    assert sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controllervm", "100").returncode == 0
    alloc = sim_cluster.run("pve1", "pvesm", "alloc", "drbdstorage", "100", "vm-100-disk-2", "1G")
    assert alloc.stdout == "successfully created 'drbdstorage:vm-100-disk-2'\n"
    assert "vm-100-disk-2" not in {rd["name"] for rd in sim_cluster.controller_db()["resource_definitions"]}
    free = sim_cluster.run("pve1", "pvesm", "free", "drbdstorage:vm-100-disk-1")
    assert free.returncode == 255 and free.stderr.startswith("Not freeing contoller VM at ")


@pytest.mark.sim_scenario(controller_down=True)
def test_status_without_controller(sim_cluster: SimCluster) -> None:
    result = sim_cluster.run("pve1", "pvesm", "status")
    assert result.returncode == 0
    assert result.stderr.startswith("could not connect to any LINSTOR controller at ")
    row = next(line for line in result.stdout.splitlines() if line.startswith("drbdstorage"))
    assert row.split()[1:4] == ["drbd", "inactive", "0"]


def test_apiinfo(sim_cluster: SimCluster) -> None:
    assert sim_cluster.run("pve1", "pvesm", "apiinfo").stdout == "APIVER 11\nAPIAGE 2\n"


@pytest.mark.sim_scenario(storage_cfg="drbd: a\n\tresourcegroup defaultpool\n\tcontroller 10.0.0.9,10.0.0.1\n")
def test_controllers_are_tried_in_order(sim_cluster: SimCluster) -> None:
    """linstor.md section 2.8: the first answering /health wins, 10.0.0.9 has nothing listening."""
    result = sim_cluster.run("pve2", "pvesm", "alloc", "a", "100", "", "1G")
    assert result.returncode == 0, result.stderr
