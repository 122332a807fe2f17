"""End to end: a simulated deploy of the real appliance image, then its VM disk booted in QEMU.

The image is the session's static appliance (Debian 13, stand-in controller, 10.0.2.15/24 via 10.0.2.2:
QEMU user networking's addresses), deployed with those addresses onto a simulated 3-node cluster. The
disk the deploy wrote is then booted under TCG; through the forwarded REST port, python-linstor must
find the controller serving the migrated nodes, which means the appliance's own deploy check passed
on the injected files and the firewall lets the allowed network in.

The same boot is also an upgrade in place: the VM boots its disk as the SECOND disk (a blank one comes first,
as after an A/B switch to a disk of a new image), and the database in it is turned into one last opened by the
release before the image's controller, as an upgrade injects the running controller's database. The controller
must migrate it at start and serve the same nodes with the image's release.

The same boot shows the firewall at work: the deploy is given overlapping --allow-from networks (which
nft refuses unless they are collapsed); a ruleset without the test host (QEMU's 10.0.2.2) shuts the
REST port while the controller runs on; and a ruleset that does not load stops the controller, with
the reason on the console.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import linstor
import pytest
from boot.machine import Machine
from fixtures.linstor_standin.migrations import schema_of
from fixtures.linstor_standin.versions import LinstorVersion
from helpers import PROJECT_ROOT, STATIC_ADDRESS, STATIC_GATEWAY, BuiltImage
from sim.cluster import SimCluster

from builder.deploy import firewall, inject
from builder.deploy.steps.inject import DEPLOY_MANIFEST
from builder.qemu import ACCEL_ENV, Firmware, controller_answers
from deploy.harness import Guest, deploy_args, run_deploy, sim_env

pytestmark = [pytest.mark.boot, pytest.mark.sim]

GUEST_IP = STATIC_ADDRESS.split("/")[0]
ARTIFACTS = PROJECT_ROOT / "build" / "test-artifacts"
# Contained, duplicate and mixed-family sources: the test host's network, the host itself, a block around
# two of the nodes (10.0.0.2, 10.0.0.3) and an IPv6 network with one of its own addresses.
OVERLAPPING = "10.0.2.0/24,10.0.2.2,10.0.0.2/31,fd00::/64,fd00::1"
NODES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
ASK_INSIDE = ("python3 -c \"import urllib.request as u; "
              "print(u.urlopen('http://127.0.0.1:3370/v1/controller/version', timeout=30).status)\"")
# Until the restart of nftables.service has run its course through the units that depend on it.
SETTLED = ("timeout 300 sh -c 'while systemctl is-active -q linstor-controller.service || "
           "! systemctl is-failed -q linstor-appliance-firewall-check.service; do sleep 1; done'")


DATABASE = "/var/lib/linstor/linstordb.mv.db"
# The SCSI address (host:channel:target:lun) of the disk holding the root file system.
ROOT_DISK = "lsblk -ndo HCTL \"/dev/$(lsblk -no PKNAME \"$(findmnt -no SOURCE /)\")\""
# The database's release and schema, as the controller inside the VM sees them.
ASK_DATABASE = ("python3 -c \"import json; d = json.load(open('/var/lib/linstor/linstordb.mv.db')); "
                "print(d['linstor_version'], d['schema'][-1], 'migration_failed' in d)\"")


def inject_older_database(disk: Path, image_version: str) -> str:
    """Make the deployed database one last opened by the release before the image's (as an upgrade brings the
    running controller's database to a disk with a newer controller) and record it in the deploy manifest, so the
    appliance's deploy check accepts it. Returns that older release."""
    release = LinstorVersion.parse(image_version)
    older = LinstorVersion(release.major, release.minor - 1, 0)
    found = inject.read(disk, [DATABASE, DEPLOY_MANIFEST])
    assert found[DATABASE] is not None and found[DEPLOY_MANIFEST] is not None
    db, manifest = json.loads(found[DATABASE]), json.loads(found[DEPLOY_MANIFEST])
    db["linstor_version"], db["schema"] = str(older), schema_of(older)
    data = (json.dumps(db, indent=2, sort_keys=True) + "\n").encode()
    manifest["files"][DATABASE] = hashlib.sha256(data).hexdigest()
    manifest_data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    inject.write(disk, [inject.File(DATABASE, data, 0o640), inject.File(DEPLOY_MANIFEST, manifest_data)])
    return str(older)


def put_file(machine: Machine, path: str, text: str) -> None:
    """Write a file in the guest through the serial console (one short line of base64)."""
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    machine.shell.check(f"echo {packed} | base64 -d | gunzip > {path}")


def refused_from_host(port: int, attempts: int = 3) -> bool:
    """The forwarded REST port stays silent: QEMU accepts on the host, the guest's firewall drops the SYN."""
    return not any(controller_answers(port) for _ in range(attempts))


def test_deployed_disk_boots_and_serves_the_migrated_cluster(static_image: BuiltImage,
                                                             make_sim_cluster: Callable[..., SimCluster],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv(ACCEL_ENV, "tcg")  # never KVM in tests: it may exist and crawl
    version = __import__("json").loads(static_image.manifest.read_text())["linstor_controller"]["version"]
    cluster = make_sim_cluster(nodes=3, linstor_version=version, ha_delay=0.05)
    sim_env(cluster, "pve1", monkeypatch)
    with Guest(cluster, 100, GUEST_IP, "linstor-appliance-100", tmp_path / "guest") as guest:
        args = deploy_args(static_image.compressed, "--allow-from", OVERLAPPING, ip=STATIC_ADDRESS)
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
    older = inject_older_database(disk, version)
    blank = tmp_path / "blank-first-disk.raw"
    with open(blank, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    machine = Machine("deployed", disk, Firmware.bios, tmp_path / "qemu", ARTIFACTS / "deploy-e2e.serial.log",
                      disks_before=(blank,))  # fmt: skip
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
        # Booted from the second disk (SCSI target 1; the blank first disk is target 0: kernel names such as sda
        # follow the probe order, not the bus), on the database of the older release, migrated at its start.
        disks = dict(line.split() for line in machine.shell.check("lsblk -dno HCTL,SIZE -I 8").splitlines())
        root_disk = machine.shell.check(ROOT_DISK).strip()
        assert root_disk.split(":")[2] == "1" and disks.get(root_disk) != "64M", (root_disk, disks)
        assert [size for hctl, size in disks.items() if hctl.split(":")[2] == "0"] == ["64M"], disks
        release = LinstorVersion.parse(version)
        assert machine.shell.check(ASK_DATABASE).split()[-3:] == [version, f"V{release.major}_{release.minor}_0",
                                                                   "False"]  # fmt: skip
        journal = machine.shell.check("journalctl -b -u linstor-controller.service --no-pager -o cat")
        assert "Applied 1 migrations in" in journal, (older, journal[-2000:])
        # The appliance checked the deploy's manifest before its controller started, and loaded the allowlist
        # (the overlapping --allow-from networks included).
        units = ("linstor-appliance-deploy-check.service nftables.service linstor-appliance-firewall-check.service "
                 "linstor-controller.service")  # fmt: skip
        states = machine.shell.check(f"systemctl is-active {units} || true").split()
        assert states == ["active"] * 4, machine.shell.check(f"systemctl status --no-pager {units} || true")
        ruleset = machine.shell.check("nft list ruleset")
        assert "table inet linstor_appliance" in ruleset and "policy drop;" in ruleset
        assert "10.0.2.0/24" in ruleset and "10.0.0.1" in ruleset and "fd00::/64" in ruleset

        # A ruleset that does not allow the test host: the REST port no longer answers it, while the
        # controller serves on inside the VM.
        elsewhere = firewall.allowlist(NODES, [ipaddress.ip_network("192.168.7.0/24")])
        put_file(machine, "/etc/nftables.conf", firewall.ruleset([22, 3370, 3371], elsewhere, vmid=100))
        machine.shell.check("systemctl reload nftables.service")
        assert "192.168.7.0/24" in machine.shell.check("nft list ruleset")
        assert refused_from_host(machine.api_port)
        assert machine.shell.check(ASK_INSIDE).strip().endswith("200")

        # A ruleset nft refuses (the overlapping elements written as they are): nftables.service fails and
        # the controller stops, with the reason on the console and at the login prompt.
        broken = firewall.ruleset([22, 3370, 3371], firewall.Allowlist(v4=("10.0.2.0/24", "10.0.2.2"), v6=()),
                                  vmid=100)  # fmt: skip
        put_file(machine, "/etc/nftables.conf", broken)
        machine.shell.run("systemctl restart nftables.service", timeout=120)
        machine.shell.check(SETTLED, timeout=330)
        states = machine.shell.check("systemctl is-active nftables.service linstor-appliance-firewall-check.service "
                                     "linstor-controller.service || true").split()  # fmt: skip
        assert states[0] == "failed" and states[1] == "failed" and states[2] != "active", states
        assert "conflicting intervals" in machine.shell.check("cat /run/issue.d/40-linstor-firewall.issue")
        assert "linstor-controller stays stopped: the appliance's firewall is not loaded" in machine.shell.transcript()
        assert refused_from_host(machine.api_port)
    finally:
        machine.stop()
    # Kept only when the test fails, like the boot tests' transcripts.
    machine.record.transcript.unlink(missing_ok=True)
