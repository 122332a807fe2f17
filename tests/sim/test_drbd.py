"""DRBD devices: shared bytes, Primary tracking, .res files and what survives a reboot."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import linstor
import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def new_disk(cluster: SimCluster, node: str = "pve1", vmid: int = 100, extra: tuple[str, ...] = ()) -> str:
    result = cluster.run(node, "qm", "create", str(vmid), "--scsi0", "drbdstorage:1", *extra)
    assert result.returncode == 0, result.stderr
    match = re.search(r"drbdstorage:((pm-[0-9a-f]{8})_\d+|vm-\d+-disk-\d+)", result.stdout)
    assert match
    return match.group(2) or match.group(1)


def test_replicas_share_bytes(sim_cluster: SimCluster) -> None:
    res = new_disk(sim_cluster)
    holders = [n for n in sim_cluster.nodes if res in sim_cluster.drbd_devices(n)]
    assert len(holders) == 2
    with sim_cluster.drbd_open(holders[0], res) as device:
        device.write_bytes(b"hello")
    assert sim_cluster.drbd_device(holders[1], res).read_bytes()[:5] == b"hello"


def test_primary_elsewhere_refuses_without_two_primaries(sim_cluster: SimCluster, tmp_path: Path) -> None:
    assert sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--allowtwoprimaries", "no").returncode == 0
    res = new_disk(sim_cluster)
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        lin.resource_make_available("pve3", res, diskful=False)
    sim_cluster.settle()
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    assert sim_cluster.drbd_primary(res) == ["pve1"]
    image = tmp_path / "img.raw"
    image.write_bytes(b"x" * 4096)
    dd = sim_cluster.run("pve3", "qemu-img", "dd", "-f", "raw", "-O", "raw", "bs=4M", f"if={image}",
                         f"of=/dev/drbd/by-res/{res}/0")  # fmt: skip
    assert dd.returncode == 1
    assert dd.stderr == f"qemu-img: Could not open '/dev/drbd/by-res/{res}/0': Wrong medium type\n"
    assert sim_cluster.run("pve1", "qm", "stop", "100").returncode == 0
    ok = sim_cluster.run("pve3", "qemu-img", "dd", f"if={image}", f"of=/dev/drbd/by-res/{res}/0")
    assert ok.returncode == 0, ok.stderr
    assert sim_cluster.drbd_primary(res) == []


def test_two_primaries_allowed_by_default(sim_cluster: SimCluster, tmp_path: Path) -> None:
    """Plugin 8.x default allow-two-primaries=yes: a host-side write is not fenced (proxmox.md section 1.7)."""
    res = new_disk(sim_cluster)
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    image = tmp_path / "img.raw"
    image.write_bytes(b"y" * 4096)
    holder = next(n for n in sim_cluster.nodes if n != "pve1" and res in sim_cluster.drbd_devices(n))
    dd = sim_cluster.run(holder, "qemu-img", "dd", f"if={image}", f"of=/dev/drbd/by-res/{res}/0")
    assert dd.returncode == 0, dd.stderr


@pytest.mark.parametrize(("knob", "kept_without_controller"), [("1.20", False), ("1.32", True), ("1.33", True)])
def test_res_files_at_satellite_start(make_sim_cluster, knob: str, kept_without_controller: bool) -> None:  # type: ignore[no-untyped-def]
    """linstor.md section 5: <= 1.20.0 deletes .res files at start, later only after a controller connected."""
    cluster: SimCluster = make_sim_cluster(nodes=3, linstor_version=knob)
    res = new_disk(cluster)
    holder = next(n for n in ("pve2", "pve3") if res in cluster.drbd_devices(n))
    assert res in cluster.res_files(holder)
    cluster.controller_down()
    assert cluster.run(holder, "systemctl", "restart", "linstor-satellite").returncode == 0
    assert (res in cluster.res_files(holder)) is kept_without_controller


def test_ls_keep_res_drop_in_protects_res_files(make_sim_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: SimCluster = make_sim_cluster(nodes=2, linstor_version="1.20")
    res = new_disk(cluster)
    dropin = cluster.root("pve2") / "etc/systemd/system/linstor-satellite.service.d/override.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text(f"[Service]\nEnvironment=LS_KEEP_RES={res}\n")
    cluster.run("pve2", "systemctl", "daemon-reload")
    cluster.controller_down()
    assert cluster.run("pve2", "systemctl", "restart", "linstor-satellite").returncode == 0
    assert res in cluster.res_files("pve2")


def test_reboot_without_controller_needs_drbd_unit(sim_cluster: SimCluster) -> None:
    """After a power cycle the device is back only if something brings it up without LINSTOR."""
    res = new_disk(sim_cluster)
    holder = next(n for n in ("pve2", "pve3") if res in sim_cluster.drbd_devices(n))
    sim_cluster.controller_down()
    sim_cluster.node_offline(holder)
    assert sim_cluster.drbd_devices(holder) == []
    assert sim_cluster.node_online(holder) == []
    assert res not in sim_cluster.drbd_devices(holder)
    enable = sim_cluster.run(holder, "systemctl", "enable", f"drbd@{res}.target")
    assert enable.returncode == 0
    sim_cluster.node_offline(holder)
    assert sim_cluster.node_online(holder) == []
    assert res in sim_cluster.drbd_devices(holder)


@pytest.mark.sim_scenario(plugin_version="8.3.0")
def test_local_activation_fallback_of_plugin_8_3(sim_cluster: SimCluster) -> None:
    """linstor.md section 2.5: start without controller when the device exists locally."""
    new_disk(sim_cluster)
    sim_cluster.controller_down()
    result = sim_cluster.run("pve1", "qm", "start", "100")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("LINSTOR controller unreachable, using existing local DRBD device for pm-")
    assert sim_cluster.run("pve1", "qm", "stop", "100").returncode == 0
    elsewhere = sim_cluster.run("pve1", "qm", "create", "101", "--scsi0", "/dev/null")
    assert elsewhere.returncode == 0


@pytest.mark.sim_scenario(plugin_version="7.0.1")
def test_start_without_controller_fails_with_plugin_7(sim_cluster: SimCluster) -> None:
    new_disk(sim_cluster)
    sim_cluster.controller_down()
    result = sim_cluster.run("pve1", "qm", "start", "100")
    assert result.returncode == 255
    assert result.stderr.startswith("could not connect to any LINSTOR controller at ")


def test_loop_device_keeps_the_node_primary_and_linstor_sees_it(sim_cluster: SimCluster) -> None:
    """A writable loop device on a node's DRBD device holds it open (Primary) until detached; a read-only one does
    not promote. The controller's resource list reports a Primary held by a VM as in use."""
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    res = new_disk(sim_cluster)
    device = sim_cluster.drbd_device("pve1", res)
    for mode, primary in (([], ["pve1"]), (["--read-only"], [])):
        loop = subprocess.run(["losetup", "--find", "--show", *mode, str(device)], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        try:
            assert sim_cluster.drbd_primary(res) == primary, mode
        finally:
            subprocess.run(["losetup", "--detach", loop], check=True)
        assert sim_cluster.drbd_primary(res) == []
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        states = lin.resource_list_raise(filter_by_resources=[res]).resource_states
    assert {s.node_name: s.in_use for s in states if s.node_name == "pve1"} == {"pve1": True}
    assert not any(s.in_use for s in states if s.node_name != "pve1")
