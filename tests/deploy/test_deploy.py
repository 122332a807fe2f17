"""Full deploys on the simulated cluster: both strategies, plugin 5.2.2 / 7.x / 8.3.0, LINSTOR 1.20 / 1.33 / 1.34,
1, 3 and 5 nodes. The combinations form a Latin square: every pair of (plugin, LINSTOR, node count) occurs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sim.cluster import SimCluster
from sim.scenario import linstor_package_version

from deploy.expect import assert_deployed, journal, resource_name
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, deploy_args, expect_failure, host_files, run_deploy, sim_env
from deploy.nftcheck import nft_loads

pytestmark = pytest.mark.sim

# plugin 5.2.2 declares storage APIVER <= 10 only, so it runs on PVE 8.3 (linstor.md section 2.3).
PVE_FOR = {"5.2.2": "8.3.2", "7.0.1": "8.4.1", "8.3.0": "8.4.1"}
DEVICE_PATH = [
    ("8.3.0", "1.34", 3), ("8.3.0", "1.33", 5), ("8.3.0", "1.20", 1),
    ("7.0.1", "1.33", 1), ("7.0.1", "1.20", 3), ("7.0.1", "1.34", 5),
    ("5.2.2", "1.20", 5), ("5.2.2", "1.34", 1), ("5.2.2", "1.33", 3),
]  # fmt: skip
CONTROLLERVM = [("5.2.2", "1.20", 3), ("5.2.2", "1.33", 5), ("5.2.2", "1.34", 1)]


def deploy_on(make_sim_cluster: Callable[..., SimCluster], fake_images: Callable[..., FakeImage], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch, plugin: str, knob: str, nodes: int, strategy: str,
              *extra: str) -> tuple[SimCluster, FakeImage, int]:  # fmt: skip
    cluster = make_sim_cluster(nodes=nodes, plugin_version=plugin, linstor_version=knob, pve_version=PVE_FOR[plugin],
                               ha_delay=0.05)
    sim_env(cluster, "pve1", monkeypatch)
    image = fake_images(linstor_package_version(knob))
    redundancy = min(3, nodes)
    with Guest(cluster, 100, "10.0.0.100", resource_name(strategy), tmp_path / "guest") as guest:
        assert run_deploy(cluster, deploy_args(image.compressed, "--strategy", strategy, *extra,
                                               redundancy=redundancy)) == 0  # fmt: skip
        assert guest.check_failures == []
        assert_deployed(cluster, image, strategy=strategy, redundancy=redundancy)
    return cluster, image, redundancy


@pytest.mark.parametrize(("plugin", "knob", "nodes"), DEVICE_PATH)
def test_device_path(make_sim_cluster, fake_images, tmp_path, monkeypatch, plugin, knob, nodes) -> None:  # type: ignore[no-untyped-def]
    deploy_on(make_sim_cluster, fake_images, tmp_path, monkeypatch, plugin, knob, nodes, "device-path")


@pytest.mark.parametrize(("plugin", "knob", "nodes"), CONTROLLERVM)
def test_controllervm(make_sim_cluster, fake_images, tmp_path, monkeypatch, plugin, knob, nodes) -> None:  # type: ignore[no-untyped-def]
    cluster, _, _ = deploy_on(make_sim_cluster, fake_images, tmp_path, monkeypatch, plugin, knob, nodes,
                              "controllervm")  # fmt: skip
    # The plugin leaves the controller VM's volume alone: deleting it is refused.
    free = cluster.run("pve1", "pvesm", "free", "drbdstorage:vm-100-disk-1")
    assert free.returncode != 0 and "Not freeing contoller VM" in free.stderr


@pytest.mark.sim_scenario(nodes=3)
def test_dry_run_changes_nothing_and_prints_the_plan(on_node: SimCluster, image: FakeImage,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from deploy.harness import state_snapshot

    before = state_snapshot(on_node)
    assert run_deploy(on_node, deploy_args(image.compressed, "--dry-run")) == 0
    assert state_snapshot(on_node) == before
    plan = capsys.readouterr().out
    for line in ("[pve1] LINSTOR API at localhost:3370: spawn linstor-appliance-100",
                 "[pve1] qm create 100 --name linstor-controller --memory 1024",
                 "--scsi0 /dev/drbd/by-res/linstor-appliance-100/0,shared=1",
                 "[pve2] systemctl enable drbd@linstor-appliance-100.target",
                 "[pve1] systemctl disable --now linstor-controller.service",
                 "[pve1] ha-manager add vm:100 --state started",
                 "[pve1] pvesm set drbdstorage --controller 10.0.0.100"):  # fmt: skip
        assert line in plan, line


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.34", ha_delay=0.05)
def test_options_backup_job_dns_allow_from_and_database_export(on_node: SimCluster, image: FakeImage,
                                                               guest: Guest) -> None:  # fmt: skip
    # Where linstor-database exists the backup also holds an export (a stand-in tool that copies the file).
    tool = on_node.root("pve1") / "usr/share/linstor-server/bin/linstor-database"
    tool.parent.mkdir(parents=True)
    tool.write_text('#!/bin/sh\n[ "$1" = export-db ] && cp "$PVE_SIM_ROOT/var/lib/linstor/linstordb.mv.db" "$2"\n')
    tool.chmod(0o755)
    # Overlapping and mixed-family networks, which nft refuses in one interval set unless they are collapsed.
    allow = "192.168.7.0/24,192.168.7.9,192.168.7.0/25,fd00::/64,fd00::1"
    args = deploy_args(image.raw, "--dns", "10.0.0.53", "--allow-from", allow, "--backup-storage", "local",
                       "--backup-schedule", "sun 03:00", "--name", "ctrl-vm", redundancy=2)  # fmt: skip
    assert run_deploy(on_node, args) == 0
    assert_deployed(on_node, image, redundancy=2, name="ctrl-vm", allow_from=tuple(allow.split(",")))
    assert "vzdump: linstor-appliance-100" in on_node.backup_jobs()
    assert "\tschedule sun 03:00" in on_node.backup_jobs() and "\tstorage local" in on_node.backup_jobs()
    record = journal(on_node)["steps"]["handover"]["record"]
    assert Path(record["export"]).read_bytes() == host_files(on_node)["var/lib/linstor/linstordb.mv.db"]
    boot = guest.workdir / f"boot{guest.boots}"
    ruleset = (boot / "etc/nftables.conf").read_text()
    assert "elements = { 10.0.0.1, 10.0.0.2, 192.168.7.0/24 }" in ruleset
    assert "elements = { fd00::/64 }" in ruleset
    loaded = nft_loads(ruleset)
    assert loaded.returncode == 0, loaded.stderr
    assert "addresses: [10.0.0.53]" in (boot / "etc/netplan/config.yaml").read_text()


@pytest.mark.sim_scenario(nodes=3, linstor_version="1.20", ha_delay=0.05)
def test_disk_comes_up_after_a_reboot_without_any_controller(on_node: SimCluster, image: FakeImage,
                                                            guest: Guest) -> None:  # fmt: skip
    """Step 5's promise on a real boot: all controllers gone, a node power-cycles, the device is there."""
    assert run_deploy(on_node, deploy_args(image.compressed)) == 0
    res = "linstor-appliance-100"
    other = next(n for n in on_node.nodes if n != on_node.vm_running_on(100))
    on_node.stop_controller("10.0.0.100")
    on_node.node_offline(other)
    assert res not in on_node.drbd_devices(other)
    assert on_node.node_online(other) == []
    assert res in on_node.drbd_devices(other)
    assert f"{res}.res" in [f"{n}.res" for n in on_node.res_files(other)]


@pytest.mark.sim_scenario(nodes=2, ha_delay=0.05)
def test_second_deploy_of_the_same_vmid_is_refused(on_node: SimCluster, image: FakeImage, guest: Guest) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    message = expect_failure(on_node, deploy_args(image.compressed, redundancy=2))
    assert message.startswith("VM 100 was already deployed") and "--rollback" in message
    assert "nothing to resume" in expect_failure(on_node, ["--vmid", "100", "--resume"])
