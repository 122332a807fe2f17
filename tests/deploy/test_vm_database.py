"""No command discards what was changed through the VM's controller: a rollback after completion carries the
VM's database back (or refuses and leaves the VM running), and a redeploy refuses to overwrite a VM disk whose
database changed, unless told to keep it in a backup first. Also: storage.cfg's copy in the deploy's backup."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import linstor
import pytest
from sim.cluster import SimCluster
from sim.scenario import DEFAULT_STORAGE_CFG, linstor_package_version

from builder.deploy import backup, inject
from builder.deploy.steps.backupjob import BackupJob
from builder.errors import die
from builder.manifest import read_sums
from deploy.expect import STORAGE_CFG, assert_deployed, assert_rolled_back, backup_folder, journal
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, deploy_args, expect_failure, host_files, run_deploy, sim_env, state_snapshot

pytestmark = pytest.mark.sim

VM_IP = "10.0.0.100"
RES = "linstor-appliance-100"
DB = "var/lib/linstor/linstordb.mv.db"


@pytest.fixture
def cluster(make_sim_cluster: Callable[..., SimCluster], monkeypatch: pytest.MonkeyPatch) -> SimCluster:
    made = make_sim_cluster(nodes=2, linstor_version="1.20", ha_delay=0.05)
    sim_env(made, "pve1", monkeypatch)
    return made


@pytest.fixture
def image(fake_images: Callable[..., FakeImage]) -> FakeImage:
    return fake_images(linstor_package_version("1.20"))


@pytest.fixture
def appliance(cluster: SimCluster, tmp_path: Path) -> Iterator[Guest]:
    with Guest(cluster, 100, VM_IP, RES, tmp_path / "guest") as guest:
        yield guest


def groups(url: str) -> set[str]:
    with linstor.Linstor(url) as lin:
        return {str(g.name) for g in lin.resource_group_list_raise().resource_groups}


def change_through_the_vm(cluster: SimCluster, guest: Guest, group: str) -> None:
    """An admin's change made through the controller in the VM, which the VM's disk then holds."""
    deadline = time.monotonic() + 60
    while not guest.running or VM_IP not in cluster.controller_endpoints():
        assert time.monotonic() < deadline, f"the VM's controller did not start: {guest.check_failures}"
        time.sleep(0.1)
    with linstor.Linstor(cluster.linstor_url(VM_IP)) as lin:
        replies = lin.resource_group_create(group, place_count=2)
        assert not any(r.is_error() for r in replies), replies
    guest.persist()


def vm_disk_database(cluster: SimCluster) -> bytes:
    data = inject.read(cluster.drbd_device("pve1", RES), ["/" + DB])["/" + DB]
    assert data is not None
    return data


def deploy(cluster: SimCluster, image: FakeImage, *extra: str) -> None:
    assert run_deploy(cluster, deploy_args(image.raw, *extra, redundancy=2)) == 0


def test_rollback_after_completion_carries_the_vm_database_back(cluster: SimCluster, image: FakeImage,
                                                                 appliance: Guest) -> None:  # fmt: skip
    storage_cfg = cluster.storage_cfg()
    deploy(cluster, image)
    old = host_files(cluster)
    change_through_the_vm(cluster, appliance, "made-in-vm")
    # This node's database was edited after step 6 backed it up: it must be backed up again before it goes.
    (cluster.root("pve1") / DB).write_bytes(old[DB] + b"\n")
    assert run_deploy(cluster, ["--vmid", "100", "--rollback"]) == 0

    # The controller on this node now runs on exactly the VM's database, with the change made there.
    in_vm = vm_disk_database(cluster)
    assert in_vm != old[DB]
    assert_rolled_back(cluster, {**old, DB: in_vm}, storage_cfg)
    assert "made-in-vm" in groups(cluster.linstor_url())
    # The VM's database is kept, with checksums that verify, next to the other backups.
    kept = Path(journal(cluster)["facts"]["vm_database"]["backup"])
    assert kept.parent == cluster.root("pve1") / "var/lib/linstor-appliance"
    assert backup.verify(kept) == read_sums(kept / "SHA256SUMS") and (kept / DB).read_bytes() == in_vm
    # What it replaced is in the step 6 backup, and the later edit in a new one.
    assert (backup_folder(cluster) / DB).read_bytes() == old[DB]
    backup.verify(backup_folder(cluster))
    again = Path(journal(cluster)["facts"]["vm_database"]["host_backup"])
    assert again != backup_folder(cluster) and (again / DB).read_bytes() == old[DB] + b"\n"
    backup.verify(again)


def test_failure_after_step_10_carries_the_vm_database_back(cluster: SimCluster, image: FakeImage, appliance: Guest,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Step 11 fails after the storage entries pointed at the VM and a change was made there: the automatic
    rollback keeps it."""

    def change_then_fail(self: BackupJob, ctx: object) -> None:
        change_through_the_vm(cluster, appliance, "made-in-vm")
        die("the backup job was refused", hint="check /etc/pve/jobs.cfg")

    monkeypatch.setattr(BackupJob, "apply", change_then_fail)
    message = expect_failure(cluster, deploy_args(image.raw, "--backup-storage", "local", redundancy=2))
    assert message.startswith("step 11 (Schedule backups of the VM) failed: the backup job was refused; rolled "
                              "back: the LINSTOR controller on this node runs again on the database taken out of "
                              "the VM")  # fmt: skip
    assert "made-in-vm" in groups(cluster.linstor_url())
    assert host_files(cluster)[DB] == vm_disk_database(cluster)


def test_rollback_refuses_while_the_database_cannot_be_taken_out(cluster: SimCluster, image: FakeImage,
                                                                 appliance: Guest) -> None:  # fmt: skip
    """Something on pve2 holds the VM disk Primary after the VM stopped: the rollback starts the VM again and
    undoes nothing, so the cluster keeps the controller with the current database."""
    deploy(cluster, image)
    change_through_the_vm(cluster, appliance, "made-in-vm")
    with cluster.drbd_open("pve2", RES):
        message = expect_failure(cluster, ["--vmid", "100", "--rollback", "--wait-timeout", "3"])
    assert message.startswith("the database could not be taken out of VM 100: linstor-appliance-100 released on "
                              "every node did not happen within 3s")  # fmt: skip
    assert "VM 100 runs again, so its controller stays the cluster's and nothing was rolled back" in message
    assert cluster.vm_running_on(100) is not None and cluster.ha_resources()["vm:100"]["state"] == "started"
    assert cluster.unit_active("pve1", "linstor-controller") == "inactive"
    assert cluster.storage_cfg()["drbdstorage"]["controller"] == VM_IP
    assert journal(cluster)["status"] == "completed"
    deadline = time.monotonic() + 60
    while VM_IP not in cluster.controller_endpoints():
        assert time.monotonic() < deadline, appliance.check_failures
        time.sleep(0.1)
    assert "made-in-vm" in groups(cluster.linstor_url(VM_IP))
    # Once nothing else holds the disk, the rollback goes through and carries the change back.
    assert run_deploy(cluster, ["--vmid", "100", "--rollback"]) == 0
    assert "made-in-vm" in groups(cluster.linstor_url())


def test_redeploy_refuses_to_overwrite_a_newer_vm_database(cluster: SimCluster, image: FakeImage,
                                                            appliance: Guest) -> None:  # fmt: skip
    """After a rollback the VM is booted for inspection and changed; a new deploy would overwrite that."""
    deploy(cluster, image)
    assert run_deploy(cluster, ["--vmid", "100", "--rollback"]) == 0
    assert cluster.run("pve1", "qm", "start", "100").returncode == 0
    change_through_the_vm(cluster, appliance, "made-while-inspecting")
    assert cluster.run("pve1", "qm", "stop", "100").returncode == 0
    while appliance.running:
        time.sleep(0.1)
    newer = vm_disk_database(cluster)
    before = state_snapshot(cluster)
    state_dir = sorted(p.name for p in (cluster.root("pve1") / "var/lib/linstor-appliance").iterdir())

    message = expect_failure(cluster, deploy_args(image.raw, redundancy=2))
    assert "\n" not in message
    assert message.startswith("the disk of VM 100 holds a LINSTOR database that no deploy put there")
    kept = message.split("to keep it in ", 1)[1].split(" and deploy anyway", 1)[0]
    assert Path(kept).parent == cluster.root("pve1") / "var/lib/linstor-appliance"
    assert message.endswith("run the deploy again with --replace-vm-database")
    assert state_snapshot(cluster) == before and vm_disk_database(cluster) == newer
    assert sorted(p.name for p in (cluster.root("pve1") / "var/lib/linstor-appliance").iterdir()) == state_dir

    deploy(cluster, image, "--replace-vm-database")
    assert_deployed(cluster, image, redundancy=2)
    assert journal(cluster)["facts"]["replaced_vm_database"] == kept
    backup.verify(Path(kept))
    assert (Path(kept) / DB).read_bytes() == newer


COMMENTED_STORAGE_CFG = "# drbd storage managed by the storage team, ask before changing\n" + \
    DEFAULT_STORAGE_CFG.format(controller_ip="10.0.0.1")


def test_storage_cfg_comments_are_announced_and_the_file_is_kept(
        make_sim_cluster: Callable[..., SimCluster], image: FakeImage, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    cluster = make_sim_cluster(nodes=1, linstor_version="1.20", ha_delay=0.05, storage_cfg=COMMENTED_STORAGE_CFG)
    sim_env(cluster, "pve1", monkeypatch)
    args = deploy_args(image.raw, redundancy=1)
    assert run_deploy(cluster, [*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert ("[pve1] note: pvesm set rewrites /etc/pve/storage.cfg without its 1 comment line (Proxmox keeps none); "
            "the file as it was before the deploy is kept in the journal and the step 6 backup") in plan
    with Guest(cluster, 100, VM_IP, RES, tmp_path / "guest"):
        assert run_deploy(cluster, args) == 0
    assert "# drbd storage" not in cluster.storage_cfg_text()
    folder = backup_folder(cluster)
    assert (folder / STORAGE_CFG).read_text() == COMMENTED_STORAGE_CFG
    assert STORAGE_CFG in backup.verify(folder)
