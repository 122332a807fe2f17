"""qm behaviour (proxmox.md section 1; checklist 1-6, 8-11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from . import guests
from .cluster import SimCluster

pytestmark = pytest.mark.sim

CREATE = ["qm", "create", "100", "--name", "linstor-controller", "--memory", "1024", "--scsihw", "virtio-scsi-pci",
          "--scsi0", "drbdstorage:2", "--net0", "virtio,bridge=vmbr0", "--serial0", "socket",
          "--vga", "serial0"]  # fmt: skip


def create_vm(cluster: SimCluster, node: str = "pve1") -> str:
    result = cluster.run(node, *CREATE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_create_disk_on_drbd_with_plugin_8(sim_cluster: SimCluster) -> None:
    """Checklist 4: pm-<8hex>_<vmid>, NOTICE lines for preferlocal yes."""
    out = create_vm(sim_cluster)
    match = re.search(r"^scsi0: successfully created disk 'drbdstorage:(pm-[0-9a-f]{8})_100,size=2G'$", out, re.M)
    assert match, out
    res = match.group(1)
    assert out.startswith(f"\nNOTICE\n  Trying to create diskful resource ({res}) on (pve1).\n")
    rd = next(r for r in sim_cluster.controller_db()["resource_definitions"] if r["name"] == res)
    assert rd["props"]["Aux/pm/vmid"] == "100"
    assert rd["props"]["DrbdOptions/Net/allow-two-primaries"] == "yes"
    assert rd["volume_definitions"][0]["size_kib"] == 2 * 1024 * 1024
    assert res in sim_cluster.drbd_devices("pve1")


def test_config_is_sorted_with_generated_keys(sim_cluster: SimCluster) -> None:
    """Checklist 5."""
    create_vm(sim_cluster)
    result = sim_cluster.run("pve1", "qm", "config", "100")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert keys == sorted(keys)
    assert "digest" not in keys
    config = dict(line.split(": ", 1) for line in lines)
    assert re.fullmatch(r"creation-qemu=[\d.]+,ctime=\d+", config["meta"])
    assert re.fullmatch(r"uuid=[0-9a-f-]{36}", config["smbios1"])
    assert re.fullmatch(r"[0-9a-f-]{36}", config["vmgenid"])
    assert re.fullmatch(r"virtio=BC:24:11:[0-9A-F]{2}:[0-9A-F]{2}:[0-9A-F]{2},bridge=vmbr0", config["net0"])
    assert config["boot"] == "order=scsi0;net0"
    assert "cpu" not in config


def test_qm_is_node_local(sim_cluster: SimCluster) -> None:
    """Checklist 1."""
    create_vm(sim_cluster)
    for command in (["config", "100"], ["status", "100"], ["start", "100"], ["set", "100", "--memory", "2048"]):
        result = sim_cluster.run("pve2", "qm", *command)
        assert result.returncode == 255
        assert result.stderr == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist\n"


@pytest.mark.sim_scenario(existing_vms={100: "pve3"})
def test_create_with_vmid_used_elsewhere(sim_cluster: SimCluster) -> None:
    """Checklist 2."""
    result = sim_cluster.run("pve1", *CREATE)
    assert result.returncode == 255
    assert result.stderr == "unable to create VM 100 - VM 100 already exists on node 'pve3'\n"


@pytest.mark.sim_scenario(controller_down=True)
def test_create_without_controller(sim_cluster: SimCluster) -> None:
    """Checklist 3; the VMID stays free."""
    result = sim_cluster.run("pve1", *CREATE)
    assert result.returncode == 255
    assert result.stderr.startswith("unable to create VM 100 - could not connect to any LINSTOR controller")
    assert sim_cluster.vm_owner(100) is None


def test_set_prints_sorted_update_line(sim_cluster: SimCluster) -> None:
    """Checklist 6."""
    create_vm(sim_cluster)
    result = sim_cluster.run("pve1", "qm", "set", "100", "--protection", "1", "--onboot", "1", "--memory", "2048")
    assert (result.returncode, result.stdout) == (0, "update VM 100: -memory 2048 -onboot 1 -protection 1\n")
    assert sim_cluster.vm_config(100)["protection"] == "1"


def test_status_start_stop(sim_cluster: SimCluster) -> None:
    """Checklist 8."""
    create_vm(sim_cluster)
    assert sim_cluster.run("pve1", "qm", "status", "100").stdout == "status: stopped\n"
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    assert sim_cluster.run("pve1", "qm", "status", "100").stdout == "status: running\n"
    res = sim_cluster.vm_config(100)["scsi0"].split(":")[1][:11]
    assert sim_cluster.drbd_primary(res) == ["pve1"]
    again = sim_cluster.run("pve1", "qm", "start", "100")
    assert (again.returncode, again.stderr) == (255, "VM 100 already running\n")
    assert sim_cluster.run("pve1", "qm", "stop", "100").returncode == 0
    assert sim_cluster.run("pve1", "qm", "status", "100").stdout == "status: stopped\n"
    assert sim_cluster.drbd_primary(res) == []


def test_protection_blocks_destroy_and_drive_removal(sim_cluster: SimCluster) -> None:
    """Checklist 9; protection does not block start/stop/set."""
    create_vm(sim_cluster)
    assert sim_cluster.run("pve1", "qm", "set", "100", "--protection", "1").returncode == 0
    result = sim_cluster.run("pve1", "qm", "destroy", "100")
    assert (result.returncode, result.stderr) == (255, "can't remove VM 100 - protection mode enabled\n")
    drive = sim_cluster.run("pve1", "qm", "set", "100", "--delete", "scsi0")
    assert drive.stderr == "can't remove drive 'scsi0' - protection mode enabled\n"
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    assert sim_cluster.run("pve1", "qm", "stop", "100").returncode == 0


def test_destroy_ha_vm_needs_purge(sim_cluster: SimCluster) -> None:
    """Checklist 10."""
    create_vm(sim_cluster)
    assert sim_cluster.run("pve1", "ha-manager", "add", "vm:100", "--state", "stopped").returncode == 0
    result = sim_cluster.run("pve1", "qm", "destroy", "100")
    assert result.returncode == 255
    assert result.stderr == "unable to remove VM 100 - used in HA resources and purge parameter not set.\n"
    purge = sim_cluster.run("pve1", "qm", "destroy", "100", "--purge")
    assert purge.returncode == 0, purge.stderr
    assert sim_cluster.vm_owner(100) is None and sim_cluster.ha_resources() == {}
    assert sim_cluster.controller_db()["resource_definitions"] == []


def test_disk_import(sim_cluster: SimCluster, tmp_path: Path) -> None:
    """Checklist 11: the image lands on the DRBD device every replica sees."""
    assert sim_cluster.run("pve1", "qm", "create", "100", "--name", "x").returncode == 0
    image = tmp_path / "appliance.raw"
    image.write_bytes(b"APPLIANCE" + b"\0" * (8 * 1024 * 1024 - 9))
    result = sim_cluster.run("pve1", "qm", "disk", "import", "100", str(image), "drbdstorage")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"importing disk '{image}' to VM 100 ..."
    assert "transferred 8.0 MiB of 8.0 MiB (100.00%)" in lines
    match = re.fullmatch(r"unused0: successfully imported disk 'drbdstorage:(pm-[0-9a-f]{8})_100'", lines[-1])
    assert match, lines
    res = match.group(1)
    assert sim_cluster.vm_config(100)["unused0"] == f"drbdstorage:{res}_100"
    for node in ("pve1", "pve2"):
        assert sim_cluster.drbd_device(node, res).read_bytes()[:9] == b"APPLIANCE"
    missing = sim_cluster.run("pve1", "qm", "importdisk", "100", "/nonexistent.raw", "drbdstorage")
    assert missing.stderr == "/nonexistent.raw: non-existent or non-regular file\n"


def test_absolute_path_drive_needs_local_device(sim_cluster: SimCluster) -> None:
    create_vm(sim_cluster)
    res = sim_cluster.vm_config(100)["scsi0"].split(":")[1][:11]
    assert sim_cluster.run("pve1", "qm", "set", "100", "--delete", "scsi0").returncode == 0
    assert sim_cluster.run("pve3", "qm", "create", "200", "--scsi0", f"/dev/drbd/by-res/{res}/0").returncode == 0
    result = sim_cluster.run("pve3", "qm", "start", "200")
    assert result.returncode == 255
    assert f"Could not open '/dev/drbd/by-res/{res}/0': No such file or directory" in result.stderr
    assert result.stderr.endswith("start failed: QEMU exited with code 1\n")


def test_guest_exec_errors_and_result(sim_cluster: SimCluster, tmp_path: Path) -> None:
    """proxmox.md section 10: the agent's preconditions in order, then the pretty, sorted JSON result."""
    create_vm(sim_cluster)
    exec_ = ("qm", "guest", "exec", "100", "--", "cat", "/etc/hostname")
    refused = sim_cluster.run("pve1", *exec_)
    assert (refused.returncode, refused.stderr) == (255, "No QEMU guest agent configured\n")
    assert sim_cluster.run("pve1", "qm", "set", "100", "--agent", "enabled=1").returncode == 0
    refused = sim_cluster.run("pve1", *exec_)
    assert (refused.returncode, refused.stderr) == (255, "VM 100 is not running\n")
    assert sim_cluster.run("pve1", "qm", "start", "100").returncode == 0
    refused = sim_cluster.run("pve1", *exec_)
    assert (refused.returncode, refused.stderr) == (255, "QEMU guest agent is not running\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("appliance\n")
    guests.register(sim_cluster.state, 100, tmp_path)
    done = sim_cluster.run("pve1", *exec_)
    assert done.returncode == 0
    assert done.stdout == '{\n   "exitcode" : 0,\n   "exited" : 1,\n   "out-data" : "appliance\\n"\n}\n'
    other = sim_cluster.run("pve2", *exec_)
    assert other.stderr == "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist\n"
    failed = sim_cluster.run("pve1", "qm", "guest", "exec", "100", "--", "sh", "-c", "exit 3")
    assert (failed.returncode, json.loads(failed.stdout)["exitcode"]) == (0, 3)
