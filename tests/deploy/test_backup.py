"""`linstor-appliance backup` on the simulated cluster: the VM's controller exports, the guest agent fetches."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from sim import guests
from sim.cluster import SimCluster

from builder.errors import ApplianceError
from deploy.daytwo import add_resource_group, run_backup, stored
from deploy.expect import journal
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, deploy_args, run_deploy

pytestmark = pytest.mark.sim
PROJECT = Path(__file__).resolve().parents[2]


def install_package_units(cluster: SimCluster, node: str) -> None:
    """What the linstor-appliance package puts on a node: its units, disabled."""
    target = cluster.root(node) / "lib/systemd/system"
    target.mkdir(parents=True, exist_ok=True)
    for unit in (PROJECT / "node/systemd").glob("linstor-appliance-backup.*"):
        shutil.copy(unit, target / unit.name)


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.34", ha_delay=0.05)
def test_backup_on_every_node_and_only_after_a_change(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    install_package_units(on_node, "pve1")
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    # The deploy enabled the package's timer where the package is, with the arguments the service passes on.
    assert on_node.unit_enabled("pve1", "linstor-appliance-backup.timer") == "enabled"
    assert on_node.unit_active("pve1", "linstor-appliance-backup.timer") == "active"
    config = (on_node.root("pve1") / "etc/linstor-appliance/backup.conf").read_text()
    assert "\nLINSTOR_APPLIANCE_BACKUP_ARGS=--vmid 100\n" in config
    service = (PROJECT / "node/systemd/linstor-appliance-backup.service").read_text()
    assert "ExecStart=/usr/bin/linstor-appliance backup --timer $LINSTOR_APPLIANCE_BACKUP_ARGS\n" in service
    timer_args = ("--timer", "--vmid", "100")
    assert not (on_node.root("pve2") / "etc/linstor-appliance/backup.conf").exists()
    assert journal(on_node)["steps"]["backup_timer"]["record"]["missing"] == ["pve2"]
    runs_on = on_node.vm_running_on(100)
    other = next(n for n in on_node.nodes if n != runs_on)

    # Asked for on the node without the VM: the guest agent is reached on the VM's node, over SSH.
    assert run_backup(on_node, "--vmid", "100", node=other) == 0
    first = [stored(on_node, node) for node in on_node.nodes]
    assert [len(found) for found in first] == [1, 1]
    assert first[0][0].name == first[1][0].name and first[0][0].read_bytes() == first[1][0].read_bytes()
    # LINSTOR 1.34: the controller's JSON export, holding the database's nodes.
    assert first[0][0].suffix == ".json"
    assert {n["name"] for n in json.loads(first[0][0].read_bytes())["nodes"]} >= {"pve1", "pve2"}
    # The export was fetched and removed from the VM.
    assert guest.root is not None and not list((guest.root / "var/lib/linstor").glob("linstor-appliance-backup-*"))

    # The timer: nothing changed, so no new backup; and the node without the VM never takes one.
    assert run_backup(on_node, *timer_args, node=runs_on) == 0
    assert run_backup(on_node, *timer_args, node=other) == 0
    assert [len(stored(on_node, node)) for node in on_node.nodes] == [1, 1]

    add_resource_group(on_node, "10.0.0.100", "changedafterbackup")
    assert run_backup(on_node, *timer_args, node=other) == 0
    assert [len(stored(on_node, node)) for node in on_node.nodes] == [1, 1]
    assert run_backup(on_node, *timer_args, node=runs_on) == 0
    newest = [stored(on_node, node) for node in on_node.nodes]
    assert [len(found) for found in newest] == [2, 2]
    groups = [g["name"] for g in json.loads(newest[0][-1].read_bytes())["resource_groups"]]
    assert "changedafterbackup" in groups


@pytest.mark.sim_scenario(nodes=1, linstor_version="1.33", ha_delay=0.05)
def test_backup_to_a_named_storage_keeps_the_last_n(on_node: SimCluster, image: FakeImage, guest: Guest,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=1)) == 0
    folder = on_node.root("pve1") / "var/lib/vz/linstor-appliance/backups/100"
    for number in range(3):
        add_resource_group(on_node, "10.0.0.100", f"res{number}")
        assert run_backup(on_node, "--vmid", "100", "--storage", "local", "--keep", "2") == 0
    kept = sorted(p.name for p in folder.iterdir())
    assert len(kept) == 4 and all(n.endswith((".zip", ".zip.sha256")) for n in kept), kept
    capsys.readouterr()
    assert run_backup(on_node, "--vmid", "100", "--storage", "local", "--list") == 0
    assert capsys.readouterr().out.split() == [f"/var/lib/vz/linstor-appliance/backups/100/{n}" for n in kept[::2]]
    # LINSTOR 1.33: the H2 online backup, a zip around the database file; the newest holds res2.
    with zipfile.ZipFile(folder / kept[-2]) as archive:
        database = json.loads(archive.read("linstordb.mv.db"))
    assert "res2" in [g["name"] for g in database["resource_groups"]]
    assert not (on_node.root("pve1") / "var/lib/linstor-appliance/backups").exists()


@pytest.mark.sim_scenario(nodes=1, ha_delay=0.05)
def test_backup_refuses_a_storage_without_a_folder_and_a_stopped_vm(on_node: SimCluster, image: FakeImage,
                                                                     guest: Guest) -> None:  # fmt: skip
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=1)) == 0
    with pytest.raises(ApplianceError, match="storage 'drbdstorage' is of type drbd"):
        run_backup(on_node, "--vmid", "100", "--storage", "drbdstorage")
    with pytest.raises(ApplianceError, match="VM 101 does not exist"):
        run_backup(on_node, "--vmid", "101")
    # The VM runs but its guest agent does not answer: qm's reason, and what to check where.
    guests.unregister(on_node.state, 100)
    with pytest.raises(ApplianceError) as failed:
        run_backup(on_node, "--vmid", "100")
    assert failed.value.message == ("the guest agent of VM 100 on pve1 did not run "
                                    "'cat /etc/linstor-appliance/deploy.json': QEMU guest agent is not running")
    assert failed.value.hint == "check that VM 100 runs and has qemu-guest-agent ('qm guest cmd 100 ping' on pve1)"
    assert not (on_node.root("pve1") / "var/lib/linstor-appliance/backups").exists()
