"""End to end: a simulated deploy of the real appliance image, then its VM disk booted in QEMU.

The image is the session's static appliance (Debian 13, stand-in controller, 10.0.2.15/24 via 10.0.2.2:
QEMU user networking's addresses), deployed with those addresses onto a simulated 3-node cluster. The
disk the deploy wrote is then booted under TCG; through the forwarded REST port, python-linstor must
find the controller serving the migrated nodes, which means the appliance's own deploy check passed
on the injected files and the firewall lets the allowed network in.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import linstor
import pytest
from boot.machine import Machine
from helpers import PROJECT_ROOT, STATIC_ADDRESS, STATIC_GATEWAY, BuiltImage
from sim.cluster import SimCluster

from builder.qemu import ACCEL_ENV, Firmware
from deploy.harness import Guest, deploy_args, run_deploy, sim_env

pytestmark = [pytest.mark.boot, pytest.mark.sim]

GUEST_IP = STATIC_ADDRESS.split("/")[0]
ARTIFACTS = PROJECT_ROOT / "build" / "test-artifacts"


def test_deployed_disk_boots_and_serves_the_migrated_cluster(static_image: BuiltImage,
                                                             make_sim_cluster: Callable[..., SimCluster],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv(ACCEL_ENV, "tcg")  # never KVM in tests: it may exist and crawl
    version = __import__("json").loads(static_image.manifest.read_text())["linstor_controller"]["version"]
    cluster = make_sim_cluster(nodes=3, linstor_version=version, ha_delay=0.05)
    sim_env(cluster, "pve1", monkeypatch)
    with Guest(cluster, 100, GUEST_IP, "linstor-appliance-100", tmp_path / "guest") as guest:
        args = deploy_args(static_image.compressed, "--allow-from", "10.0.2.0/24", ip=STATIC_ADDRESS)
        args[args.index("--gateway") + 1] = STATIC_GATEWAY
        assert run_deploy(cluster, args) == 0
        assert guest.check_failures == []
        migrated = {n["name"]: n["type"] for n in cluster.controller_db()["nodes"]}
        node = cluster.vm_running_on(100)
        assert node is not None
        disk = tmp_path / "vm-disk.raw"
        subprocess.run(["cp", "--sparse=always", str(cluster.drbd_device(node, "linstor-appliance-100")), str(disk)],
                       check=True)  # fmt: skip
    assert set(migrated) == {"pve1", "pve2", "pve3", "linstor-controller"}

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    machine = Machine("deployed", disk, Firmware.bios, tmp_path / "qemu", ARTIFACTS / "deploy-e2e.serial.log")
    try:
        # Logging in on the serial console as the boot tests do (linbit, forced password change, sudo).
        machine.boot_to_root_shell()
        assert "linstor-appliance: deployed database and settings verified (VM 100)" in machine.shell.transcript()
        machine.wait_for_api(timeout=300)
        with linstor.Linstor(f"linstor://127.0.0.1:{machine.api_port}", timeout=30) as lin:
            assert lin.controller_version().version == version
            nodes = {n.name: str(n.type).upper() for n in lin.node_list_raise().nodes}
        assert nodes == {name: kind.upper() for name, kind in migrated.items()}
        assert nodes["linstor-controller"] == "CONTROLLER"
        # The appliance checked the deploy's manifest before its controller started, and loaded the allowlist.
        units = "linstor-appliance-deploy-check.service nftables.service linstor-controller.service"
        states = machine.shell.check(f"systemctl is-active {units} || true").split()
        assert states == ["active"] * 3, machine.shell.check(f"systemctl status --no-pager {units} || true")
        ruleset = machine.shell.check("nft list ruleset")
        assert "10.0.2.0/24" in ruleset and "10.0.0.1" in ruleset
    finally:
        machine.stop()
    # Kept only when the test fails, like the boot tests' transcripts.
    machine.record.transcript.unlink(missing_ok=True)
