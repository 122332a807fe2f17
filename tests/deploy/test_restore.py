"""`linstor-appliance restore` on the simulated cluster: the VM and its disk lost, and the way back to the host."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from sim.cluster import SimCluster

from builder.deploy.journal import Journal
from builder.errors import ApplianceError
from deploy import daytwo
from deploy.daytwo import add_resource_group, resource_groups, run_backup, run_restore, stored
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, deploy_args, host_files, run_deploy

pytestmark = pytest.mark.sim
RES = "linstor-appliance-100"


def backup_database(path: Path) -> dict:  # type: ignore[type-arg]
    """The stand-in database inside an H2 online backup (LINSTOR < 1.34)."""
    with zipfile.ZipFile(path) as archive:
        return dict(json.loads(archive.read("linstordb.mv.db")))


def destroy_vm_and_disk(cluster: SimCluster) -> None:
    """The controller VM gone: out of HA, stopped, destroyed, and every byte of its disk lost."""
    owner = cluster.vm_running_on(100)
    assert owner is not None
    for argv in (["ha-manager", "remove", "vm:100"], ["qm", "stop", "100"], ["qm", "set", "100", "--protection", "0"],
                 ["qm", "destroy", "100"]):  # fmt: skip
        result = cluster.run(owner, *argv)
        assert result.returncode == 0, (argv, result.stderr)
    with cluster.drbd_open("pve1", RES) as device, device.open("r+b") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        handle.write(b"\0" * size)


@pytest.mark.sim_scenario(nodes=3, linstor_version="1.33", ha_delay=0.05)
def test_restore_after_the_vm_and_its_disk_are_lost(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    add_resource_group(on_node, "10.0.0.100", "madeintheappliance")
    assert run_backup(on_node, "--vmid", "100") == 0
    newest = stored(on_node, "pve1")[-1]
    in_backup = backup_database(newest)
    destroy_vm_and_disk(on_node)
    assert on_node.vm_owner(100) is None
    with pytest.raises(LookupError):
        on_node.controller_url("10.0.0.100")

    assert run_restore(on_node, "--vmid", "100", "--image", str(image.compressed)) == 0

    assert on_node.vm_running_on(100) is not None
    assert on_node.ha_resources()["vm:100"]["state"] == "started"
    assert guest.check_failures == []
    # Every node and resource group of the backup is back in the VM's controller, and its satellites are online.
    assert daytwo.node_names(on_node, "10.0.0.100") == sorted(n["name"] for n in in_backup["nodes"])
    assert resource_groups(on_node, "10.0.0.100") == sorted(g["name"] for g in in_backup["resource_groups"])
    assert "madeintheappliance" in resource_groups(on_node, "10.0.0.100")
    assert daytwo.online_satellites(on_node, "10.0.0.100") == ["pve1", "pve2", "pve3"]
    assert all(e.get("controller") == "10.0.0.100" for e in on_node.storage_cfg().values() if e["type"] == "drbd")
    # The temporary controller on this node is stopped and disabled again; its own files were backed up first.
    assert on_node.unit_active("pve1", "linstor-controller") != "active"
    assert on_node.unit_enabled("pve1", "linstor-controller") != "enabled"
    record = json.loads((on_node.root("pve1") / "var/lib/linstor-appliance/restore-100.json").read_text())
    assert record["status"] == "completed"
    assert Path(record["steps"]["stage"]["record"]["host_backup"], "SHA256SUMS").is_file()


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.20", ha_delay=0.05)
def test_restore_to_host(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    add_resource_group(on_node, "10.0.0.100", "beforetheexit")
    assert run_backup(on_node, "--vmid", "100") == 0
    newest = stored(on_node, "pve1")[-1]

    # A damaged backup: one line, and nothing changed.
    damaged = newest.with_name("20200101T000000Z-000000000000.zip")
    damaged.write_bytes(newest.read_bytes()[:-1] + b"x")
    damaged.with_name(damaged.name + ".sha256").write_text(newest.with_name(newest.name + ".sha256").read_text())
    before = host_files(on_node)
    with pytest.raises(ApplianceError, match="does not match its .sha256 file"):
        run_restore(on_node, "--vmid", "100", "--to-host", "--backup", str(damaged))
    assert host_files(on_node) == before and on_node.vm_running_on(100) is not None
    assert not (on_node.root("pve1") / "var/lib/linstor-appliance/restore-100.json").exists()

    assert run_restore(on_node, "--vmid", "100", "--to-host") == 0

    assert on_node.vm_running_on(100) is None and on_node.vm_owner(100) is not None
    assert "vm:100" not in on_node.ha_resources()
    assert on_node.unit_active("pve1", "linstor-controller") == "active"
    assert on_node.unit_enabled("pve1", "linstor-controller") == "enabled"
    assert "beforetheexit" in resource_groups(on_node, "10.0.0.1")
    assert daytwo.online_satellites(on_node, "10.0.0.1") == ["pve1", "pve2"]
    assert all(e.get("controller") == "10.0.0.1" for e in on_node.storage_cfg().values() if e["type"] == "drbd")
    # The database this node had (the one from before the deploy) was backed up, verified, before it was replaced.
    record = json.loads((on_node.root("pve1") / "var/lib/linstor-appliance/restore-100.json").read_text())
    saved = Path(record["steps"]["host_controller"]["record"]["host_backup"])
    assert (saved / "var/lib/linstor/linstordb.mv.db").read_bytes() == before["var/lib/linstor/linstordb.mv.db"]


IMPORT_TOOL = """#!/bin/sh
# Test wrapper around the stand-in linstor-database: the simulated node's root replaces / for its database.
set -e
[ "$1" = import-db ]
conf=$(mktemp -d)
printf '[db]\\n  connection_url = "jdbc:h2:%s/var/lib/linstor/linstordb"\\n' "$PVE_SIM_ROOT" > "$conf/linstor.toml"
PYTHONPATH={fixtures} exec {python} -m linstor_standin.database_tool import-db -c "$conf" "$2"
"""


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.34", ha_delay=0.05)
def test_restore_to_host_from_a_json_export(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    """LINSTOR 1.34 exports JSON; putting it back takes LINSTOR's import tool, with this node's controller stopped."""
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    tool = on_node.root("pve1") / "usr/share/linstor-server/bin/linstor-database"
    tool.parent.mkdir(parents=True)
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    tool.write_text(IMPORT_TOOL.format(fixtures=fixtures, python=sys.executable))
    tool.chmod(0o755)
    add_resource_group(on_node, "10.0.0.100", "exportedasjson")
    assert run_backup(on_node, "--vmid", "100") == 0
    assert stored(on_node, "pve1")[-1].suffix == ".json"

    assert run_restore(on_node, "--vmid", "100", "--to-host") == 0

    assert "vm:100" not in on_node.ha_resources() and on_node.vm_running_on(100) is None
    assert "exportedasjson" in resource_groups(on_node, "10.0.0.1")
    assert daytwo.online_satellites(on_node, "10.0.0.1") == ["pve1", "pve2"]


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, so the journal stays as the kill left it."""


@pytest.mark.sim_scenario(nodes=1, linstor_version="1.20", ha_delay=0.05)
def test_restore_resumes_after_a_kill(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=1)) == 0
    add_resource_group(on_node, "10.0.0.100", "survivesthekills")
    assert run_backup(on_node, "--vmid", "100") == 0
    destroy_vm_and_disk(on_node)
    finish = Journal.finish_step
    journal_path = on_node.root("pve1") / "var/lib/linstor-appliance/restore-100.json"
    for attempt, where in enumerate(("stage", "inject"), 1):

        def finish_then_die(self: Journal, step: str, record: dict[str, object] | None = None,
                            where: str = where) -> None:  # fmt: skip
            finish(self, step, record)
            if step == where:
                raise Killed(step)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Journal, "finish_step", finish_then_die)
            with pytest.raises(Killed):
                if attempt == 1:
                    run_restore(on_node, "--vmid", "100", "--image", str(image.compressed))
                else:
                    run_restore(on_node, "--vmid", "100", "--resume")
        data = json.loads(journal_path.read_text())
        assert data["status"] == "running" and data["steps"][where]["state"] == "done", where
        if where == "stage":
            # As after a reboot: the temporary controller (not enabled) is gone, so the resume starts it again.
            assert on_node.run("pve1", "systemctl", "stop", "linstor-controller").returncode == 0
    # A new restore is refused while this one is unfinished.
    with pytest.raises(ApplianceError, match="did not finish"):
        run_restore(on_node, "--vmid", "100", "--image", str(image.compressed))
    assert run_restore(on_node, "--vmid", "100", "--resume") == 0
    assert json.loads(journal_path.read_text())["status"] == "completed"
    assert on_node.vm_running_on(100) == "pve1" and guest.check_failures == []
    assert "survivesthekills" in resource_groups(on_node, "10.0.0.100")
