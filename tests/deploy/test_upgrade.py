"""`linstor-appliance upgrade` on the simulated cluster: 1.33 to 1.34 beside the old disk, and the way back.

The appliance (harness.Guest) boots from the disk the VM's configuration names and runs the controller
release installed on it, so the stand-in controller migrates, refuses or fails on the database exactly as
the image on that disk would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import linstor
import pytest
from sim.cluster import SimCluster

from builder import cli, sync
from builder.coldstart import layout
from builder.coldstart.record import NodeRecord
from builder.deploy.journal import Journal
from builder.errors import ApplianceError
from builder.status import checks
from builder.testpoint import ENV as PAUSE_ENV
from builder.upgrade import options as upgrade_options
from builder.upgrade import runner as upgrade_runner
from deploy import daytwo, fakeimage
from deploy.daytwo import add_resource_group, resource_groups, stored
from deploy.fakeimage import FakeImage
from deploy.harness import (
    FAIL_MIGRATION,
    PROJECT,
    Guest,
    SimDirectory,
    coldstart_install,
    deploy_args,
    environment,
    give_package,
    run_deploy,
)

pytestmark = pytest.mark.sim
OLD, NEW = "linstor-appliance-100", "linstor-appliance-100-b"
VM = "10.0.0.100"
STANDIN = PROJECT / "tests/fixtures/linstor_standin"
FAKE_APT = PROJECT / "tests/sim/fakes/apt_get.py"
Images = tuple[FakeImage, FakeImage]  # the 1.33.3 and the 1.34.0 image


def standin_injects_failures() -> bool:
    """Whether the stand-in controller reads its failure injection file (see the upgrade plan's contract)."""
    return any("standin-fail-migration" in path.read_text() for path in STANDIN.rglob("*.py"))


needs_failure_injection = pytest.mark.skipif(not standin_injects_failures(),
                                             reason="the stand-in controller has no migration failure injection yet")
needs_fake_apt = pytest.mark.skipif(not FAKE_APT.exists(), reason="the simulated nodes have no fake apt yet")


def run_upgrade(cluster: SimCluster, *args: str, node: str = "pve1") -> int:
    """`linstor-appliance upgrade ARGS` as root on `node`, in this process; ApplianceError propagates."""
    parsed = cli.make_parser().parse_args(["upgrade", *args])
    with environment(cluster, node):
        opts = upgrade_options.from_args(parsed, root=cluster.root(node))
        return upgrade_runner.run(opts, directory=SimDirectory(cluster, node))


def upgrade_failure(cluster: SimCluster, *args: str) -> str:
    try:
        run_upgrade(cluster, *args)
    except ApplianceError as error:
        return str(error)
    raise AssertionError("the upgrade did not fail")


def journal(cluster: SimCluster) -> dict[str, Any]:
    return dict(json.loads((cluster.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").read_text()))


def prepare_then_upgrade_satellites(cluster: SimCluster, image: FakeImage, guest: Guest) -> None:
    """The order the README gives: the second disk while the releases match, then apt on every node."""
    assert run_upgrade(cluster, "--vmid", "100", "--image", str(image.compressed), "--prepare") == 0
    assert NEW in knows(cluster, VM)["definitions"]
    guest.persist()  # the VM's controller wrote the new disk's definition into its database on its disk
    upgrade_satellites_by_hand(cluster, image.linstor_version)


def upgrade_satellites_by_hand(cluster: SimCluster, version: str) -> None:
    """What an admin's `apt install linstor-satellite=...` does on every node: new packages, satellite restarted."""
    with cluster.state.locked():
        packages = dict(cluster.state.read("packages.json", {}))
        for node in cluster.nodes:
            for package in ("linstor-common", "linstor-satellite", "linstor-controller"):
                if package in packages[node]:
                    packages[node][package] = version
        cluster.state.write("packages.json", packages)
    for node in cluster.nodes:
        assert cluster.run(node, "systemctl", "restart", "linstor-satellite").returncode == 0


def knows(cluster: SimCluster, address: str) -> dict[str, list[Any]]:
    """Nodes, resource definitions and resources of the controller answering for `address`."""
    lin = linstor.Linstor(cluster.linstor_url(address))
    lin.connect()
    try:
        return {"nodes": sorted(str(n.name) for n in lin.node_list_raise().nodes),
                "definitions": sorted(str(d.name) for d in lin.resource_dfn_list_raise().resource_definitions),
                "resources": sorted((str(r.name), str(r.node_name)) for r in lin.resource_list_raise().resources),
                "version": str(lin.controller_version().version)}  # fmt: skip
    finally:
        lin.disconnect()


def slot_lines(cluster: SimCluster) -> list[str]:
    """The `slot` lines of `linstor-appliance status`."""
    return [f"{line.level.label} {line.text}" for line in status_lines(cluster) if line.check == "slot"]


def status_lines(cluster: SimCluster) -> list[checks.Line]:
    """The lines of `linstor-appliance status`."""
    from builder.deploy.pve import Pve
    from builder.deploy.remote import Node, Transport
    from builder.deployment import load

    with environment(cluster, "pve1"):
        deployment = load(cluster.root("pve1"), 100)
        transport = Transport(cluster.root("pve1"))
        status = checks.Status(deployment, Pve(transport, Node("localhost", "localhost", local=True)), transport,
                               SimDirectory(cluster, "pve1"), 2, 10.0)  # fmt: skip
        return checks.run_all(status)


@pytest.fixture
def images(fake_images: Callable[..., FakeImage]) -> tuple[FakeImage, FakeImage]:
    return fake_images("1.33.3"), fake_images("1.34.0")


@pytest.fixture
def deployed(on_node: SimCluster, images: Images, guest: Guest) -> SimCluster:
    """LINSTOR 1.33 appliance deployed on two nodes, with a change made through it and on its disk."""
    assert run_deploy(on_node, deploy_args(images[0].compressed, redundancy=2)) == 0
    add_resource_group(on_node, VM, "beforetheupgrade")
    guest.persist()
    return on_node


SCENARIO = {"nodes": 2, "linstor_version": "1.33", "ha_delay": 0.05}


@pytest.mark.sim_scenario(**SCENARIO)
def test_upgrade_with_satellites_already_upgraded_then_commit(deployed: SimCluster, images: Images, guest: Guest,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    cluster = deployed
    prepare_then_upgrade_satellites(cluster, images[1], guest)
    before = knows(cluster, VM)
    assert daytwo.online_satellites(cluster, VM) == []  # VERSION_MISMATCH: storage management is down
    backups_before = len(stored(cluster, "pve1"))
    old_disk = cluster.drbd_device("pve1", OLD).read_bytes()

    assert run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed)) == 0

    after = knows(cluster, VM)
    assert after["version"] == "1.34.0" and guest.versions[-1] == "1.34.0"
    assert {k: v for k, v in after.items() if k != "version"} == {k: v for k, v in before.items() if k != "version"}
    assert NEW in after["definitions"]
    assert "beforetheupgrade" in resource_groups(cluster, VM)
    assert daytwo.online_satellites(cluster, VM) == ["pve1", "pve2"]
    assert guest.check_failures == []
    assert cluster.vm_config(100)["scsi0"].startswith(f"/dev/drbd/by-res/{NEW}/0")
    assert cluster.ha_resources()["vm:100"]["state"] == "started"
    data = journal(cluster)
    assert data["status"] == "completed" and data["facts"]["target"]["from_version"] == "1.33.3"
    # Preflight found no backup of the last minutes, so step 1 took one.
    assert data["steps"]["backup"]["record"]["taken"] is True and len(stored(cluster, "pve1")) == backups_before + 1
    # The old disk was only read.
    assert cluster.drbd_device("pve1", OLD).read_bytes() == old_disk
    # After a cluster-wide outage every node brings the new disk up without a controller, as the old one.
    assert [cluster.unit_enabled(n, f"drbd@{NEW}.target") for n in ("pve1", "pve2")] == ["enabled", "enabled"]
    assert slot_lines(cluster) == [f"WARNING VM 100 boots slot b ({NEW}, LINSTOR 1.34.0); slot a ({OLD}, LINSTOR "
                                   "1.33.3) is kept: the upgrade is pending commit"]  # fmt: skip

    assert run_upgrade(cluster, "--vmid", "100", "--commit") == 0

    assert OLD not in knows(cluster, VM)["definitions"]
    assert not cluster.drbd_device("pve1", OLD).exists()
    assert [cluster.unit_enabled(n, f"drbd@{OLD}.target") for n in ("pve1", "pve2")] == ["disabled", "disabled"]
    assert len(stored(cluster, "pve1")) == backups_before + 2  # a verified backup before the old disk went
    assert journal(cluster)["status"] == "committed"
    lines = status_lines(cluster)
    assert [f"{line.level.label} {line.text}" for line in lines if line.check == "slot"] == [
        f"OK VM 100 boots slot b ({NEW}, LINSTOR 1.34.0); no other slot is kept"]
    # The rest of status looks at the disk the VM boots now, and so does sync: nothing to change.
    replicas = [line for line in lines if line.check == "replicas"]
    assert [line.level.label for line in replicas] == ["OK"] and NEW in replicas[0].text, replicas
    with environment(cluster, "pve1"):
        assert sync.run(cluster.root("pve1"), 100, directory=SimDirectory(cluster, "pve1")) == 0
    assert "nothing to change" in capsys.readouterr().out


def coldstart_install_from_zipapp(cluster: SimCluster, node: str) -> None:
    """The same from the single-file tool on a node without the package: it copies its zipapp there."""
    argv = [sys.executable, "-m", "builder", "coldstart", "install", "--root", str(cluster.root(node))]
    result = subprocess.run(argv, env=cluster.env(node), cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def helper_texts(cluster: SimCluster, node: str) -> dict[str, str]:
    """The cold-start helper's text files on `node` (the record lists them) and the record itself."""
    root = cluster.root(node)
    record = NodeRecord.load(root)
    assert record is not None, node
    return {relative: (root / relative).read_text() for relative in [*record.files, layout.NODE_RECORD]}


def names(text: str, resource: str) -> bool:
    """Whether `text` names `resource` (not only as the start of the other slot's name)."""
    return re.search(re.escape(resource) + r"(?![-\w])", text) is not None


def naming(cluster: SimCluster, node: str, resource: str) -> list[str]:
    """Files and links under the node's /etc (without the cluster-wide /etc/pve) whose name or text names
    `resource`."""
    root = cluster.root(node)
    found = []
    for path in sorted((root / "etc").rglob("*")):
        relative = str(path.relative_to(root))
        if relative.startswith("etc/pve"):
            continue
        text = os.readlink(path) if path.is_symlink() else path.read_text(errors="replace") if path.is_file() else ""
        if names(relative, resource) or names(text, resource):
            found.append(relative)
    return found


def upgrade_pending_commit(cluster: SimCluster, images: Images, guest: Guest) -> None:
    prepare_then_upgrade_satellites(cluster, images[1], guest)
    assert run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed)) == 0
    assert journal(cluster)["status"] == "completed"


@pytest.mark.sim_scenario(**SCENARIO)
def test_commit_installs_the_cold_start_helper_again_for_the_new_disk(deployed: SimCluster, images: Images,
                                                                     guest: Guest,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cluster = deployed
    for node in cluster.nodes:
        give_package(cluster, node)
    coldstart_install(cluster, "pve1", "--boot-wait", "600")
    # sync installs it on pve2 too, as on a node that joined (through ssh, the same way commit does).
    with environment(cluster, "pve1"):
        assert sync.run(cluster.root("pve1"), 100, directory=SimDirectory(cluster, "pve1")) == 0
    assert "pve2: cold-start helper installed" in capsys.readouterr().out
    for node in cluster.nodes:
        assert f"After=drbd@{OLD}.target" in helper_texts(cluster, node)[layout.GATE_DROPIN], node
    upgrade_pending_commit(cluster, images, guest)
    # Until the commit the helper names the old disk, and status says what brings it up to date.
    pending = [line for line in status_lines(cluster) if line.check == "coldstart"]
    assert [(line.level.label, line.text, line.hint) for line in pending] == [
        ("WARNING", f"installed for {OLD} on pve1, pve2, but VM 100 boots from {NEW}",
         "linstor-appliance upgrade --vmid 100 --commit installs it again")]
    capsys.readouterr()

    assert run_upgrade(cluster, "--vmid", "100", "--commit") == 0

    out, err = capsys.readouterr()
    assert f"The cold-start helper was installed again for {NEW} on pve1, pve2." in out, out
    assert "warning" not in err, err
    assert journal(cluster)["status"] == "committed"
    for node in cluster.nodes:
        texts = helper_texts(cluster, node)
        # After a cluster-wide outage the helper brings up, and waits for, the disk the VM boots now.
        for dropin in (layout.GATE_DROPIN, layout.LRM_DROPIN):
            assert f"Wants=drbd@{NEW}.target" in texts[dropin] and f"After=drbd@{NEW}.target" in texts[dropin]
        assert [name for name, text in texts.items() if names(text, OLD)] == [], node
        assert naming(cluster, node, OLD) == [], node
    # Installed again as it was: pve1 keeps the boot wait its admin chose.
    assert "BOOT_WAIT=600" in helper_texts(cluster, "pve1")[layout.SETTINGS]
    assert "BOOT_WAIT=300" in helper_texts(cluster, "pve2")[layout.SETTINGS]
    assert [(line.level.label, line.text) for line in status_lines(cluster) if line.check == "coldstart"] == [
        ("OK", "installed on pve1, pve2")]


@pytest.mark.sim_scenario(**SCENARIO)
def test_commit_completes_when_a_node_cannot_install_the_helper_again(deployed: SimCluster, images: Images,
                                                                      guest: Guest,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cluster = deployed
    give_package(cluster, "pve1")
    coldstart_install(cluster, "pve1")
    # pve2 got the helper from the single-file tool: it has no `linstor-appliance` command.
    coldstart_install_from_zipapp(cluster, "pve2")
    upgrade_pending_commit(cluster, images, guest)
    capsys.readouterr()

    assert run_upgrade(cluster, "--vmid", "100", "--commit") == 0

    out, err = capsys.readouterr()
    assert journal(cluster)["status"] == "committed"
    assert OLD not in knows(cluster, VM)["definitions"]
    assert f"The cold-start helper was installed again for {NEW} on pve1." in out, out
    warnings = [line for line in err.splitlines() if line.lstrip().startswith("warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].lstrip().startswith("warning: pve2: ")
    assert f"still wait for the deleted disk {OLD}" in warnings[0]
    assert warnings[0].endswith("run 'linstor-appliance coldstart install --controller-vmid 100' on pve2"), warnings[0]
    assert f"After=drbd@{NEW}.target" in helper_texts(cluster, "pve1")[layout.GATE_DROPIN]
    assert f"After=drbd@{OLD}.target" in helper_texts(cluster, "pve2")[layout.GATE_DROPIN]
    # status keeps saying so until it is done.
    lines = [line for line in status_lines(cluster) if line.check == "coldstart"]
    assert [(line.level.label, line.text) for line in lines] == [
        ("WARNING", f"installed for {OLD} on pve2, but VM 100 boots from {NEW}")]
    assert "linstor-appliance coldstart install" in (lines[0].hint or "")

    # The command the warning names, run there once the package is installed, clears it.
    give_package(cluster, "pve2")
    coldstart_install(cluster, "pve2", "--controller-vmid", "100")
    assert f"After=drbd@{NEW}.target" in helper_texts(cluster, "pve2")[layout.GATE_DROPIN]
    assert [(line.level.label, line.text) for line in status_lines(cluster) if line.check == "coldstart"] == [
        ("OK", "installed on pve1, pve2")]


@pytest.mark.sim_scenario(**SCENARIO)
def test_dry_run_prints_the_plan_and_changes_nothing(deployed: SimCluster, images: Images, guest: Guest,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    prepare_then_upgrade_satellites(deployed, images[1], guest)
    before = knows(deployed, VM)
    assert run_upgrade(deployed, "--vmid", "100", "--image", str(images[1].compressed), "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"Plan: upgrade VM 100 from LINSTOR 1.33.3 ({OLD}) to 1.34.0 ({NEW})" in out, out
    assert f"qm set 100 --scsi0 /dev/drbd/by-res/{NEW}/0,shared=1" in out
    assert knows(deployed, VM) == before
    assert not (deployed.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").exists()


@pytest.mark.sim_scenario(**SCENARIO)
def test_a_new_controller_that_does_not_answer_switches_back(deployed: SimCluster, guest: Guest,
                                                             fake_images: Callable[..., FakeImage]) -> None:
    """The new image carries another linstor-controller than its manifest says, so the appliance's deploy check
    keeps its controller stopped: no answer within --timeout, and the VM boots from the old disk again."""
    cluster = deployed
    liar = fake_images("1.34.0", dpkg_version="1.34.1-1")
    prepare_then_upgrade_satellites(cluster, liar, guest)
    before = knows(cluster, VM)
    old_disk = cluster.drbd_device("pve1", OLD).read_bytes()

    message = upgrade_failure(cluster, "--vmid", "100", "--image", str(liar.compressed), "--timeout", "3")

    assert "upgrade step 9 (Verify the new controller) failed" in message, message
    assert f"rolled back: VM 100 runs LINSTOR 1.33.3 from {OLD} with its database unchanged" in message, message
    assert any("linstor-controller 1.34.1 is installed" in text for text in guest.check_failures)
    assert knows(cluster, VM) == before
    assert cluster.vm_config(100)["scsi0"].startswith(f"/dev/drbd/by-res/{OLD}/0")
    assert cluster.drbd_device("pve1", OLD).read_bytes() == old_disk
    data = journal(cluster)
    assert data["status"] == "rolled-back" and "did not happen within 3s" in data["rolled_back_because"]
    # The journal's end is final: nothing to resume, roll back or commit.
    assert run_upgrade(cluster, "--vmid", "100", "--rollback") == 0
    with pytest.raises(ApplianceError, match="is not unfinished"):
        run_upgrade(cluster, "--vmid", "100", "--resume")


@needs_failure_injection
@pytest.mark.sim_scenario(**SCENARIO)
@pytest.mark.parametrize("how", ["fail", "lose"])
def test_a_failed_migration_switches_back_to_the_unchanged_database(deployed: SimCluster, guest: Guest,
                                                                     tmp_path: Path, how: str) -> None:  # fmt: skip
    cluster = deployed
    broken = fakeimage.build(tmp_path / "broken", "1.34.0", extra={FAIL_MIGRATION: how})
    prepare_then_upgrade_satellites(cluster, broken, guest)
    before = knows(cluster, VM)
    old_disk = cluster.drbd_device("pve1", OLD).read_bytes()

    message = upgrade_failure(cluster, "--vmid", "100", "--image", str(broken.compressed), "--timeout", "5")

    assert "rolled back: VM 100 runs LINSTOR 1.33.3" in message, message
    if how == "lose":
        assert "lacks" in message and "migration lost data" in message, message
    assert knows(cluster, VM) == before
    assert "beforetheupgrade" in resource_groups(cluster, VM)
    assert cluster.drbd_device("pve1", OLD).read_bytes() == old_disk
    assert journal(cluster)["status"] == "rolled-back"


@pytest.mark.sim_scenario(**SCENARIO)
def test_rollback_on_request_before_commit(deployed: SimCluster, images: Images,
                                           guest: Guest) -> None:  # fmt: skip
    cluster = deployed
    prepare_then_upgrade_satellites(cluster, images[1], guest)
    before = knows(cluster, VM)
    assert run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed)) == 0
    add_resource_group(cluster, VM, "onlyinthenewone")
    # The deploy's rollback knows the first disk only, whose database is older now: refused.
    with pytest.raises(ApplianceError, match=f"boots from {NEW} since an upgrade"):
        run_deploy(cluster, ["--vmid", "100", "--rollback"])
    assert knows(cluster, VM)["version"] == "1.34.0"

    assert run_upgrade(cluster, "--vmid", "100", "--rollback") == 0

    assert knows(cluster, VM)["version"] == "1.33.3" and guest.versions[-1] == "1.33.3"
    assert knows(cluster, VM)["definitions"] == before["definitions"]
    assert "onlyinthenewone" not in resource_groups(cluster, VM)
    assert cluster.vm_config(100)["scsi0"].startswith(f"/dev/drbd/by-res/{OLD}/0")
    assert journal(cluster)["status"] == "rolled-back"
    assert slot_lines(cluster) == [f"OK VM 100 boots slot a ({OLD}, LINSTOR 1.33.3); slot b ({NEW}) holds a "
                                   "rolled-back upgrade and is written over by the next"]  # fmt: skip
    with pytest.raises(ApplianceError, match="rolled-back"):
        run_upgrade(cluster, "--vmid", "100", "--resume")


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, so the journal stays as the kill left it."""


STEPS = ["backup", "disk", "image", "units", "stop", "inject", "switch", "start", "verify"]


@pytest.mark.sim_scenario(**SCENARIO)
def test_a_kill_after_every_step_then_resume(deployed: SimCluster, images: Images,
                                             guest: Guest) -> None:  # fmt: skip
    cluster = deployed
    prepare_then_upgrade_satellites(cluster, images[1], guest)
    before = knows(cluster, VM)
    finish = Journal.finish_step
    for attempt, where in enumerate(STEPS):

        def finish_then_die(self: Journal, step: str, record: dict[str, object] | None = None,
                            where: str = where) -> None:  # fmt: skip
            finish(self, step, record)
            if step == where:
                raise Killed(step)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Journal, "finish_step", finish_then_die)
            with pytest.raises(Killed):
                if attempt == 0:
                    run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed))
                else:
                    run_upgrade(cluster, "--vmid", "100", "--resume")
        data = journal(cluster)
        assert data["status"] == "running" and data["steps"][where]["state"] == "done", where
        if attempt == 0:
            # A new upgrade is refused while this one is unfinished.
            with pytest.raises(ApplianceError, match="did not finish"):
                run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed))
    assert run_upgrade(cluster, "--vmid", "100", "--resume") == 0
    assert journal(cluster)["status"] == "completed"
    after = knows(cluster, VM)
    assert after["version"] == "1.34.0" and after["nodes"] == before["nodes"]
    assert set(before["definitions"]) <= set(after["definitions"])
    assert daytwo.online_satellites(cluster, VM) == ["pve1", "pve2"]
    assert guest.check_failures == []


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.34", ha_delay=0.05)
def test_downgrade_refused(on_node: SimCluster, fake_images: Callable[..., FakeImage], guest: Guest,
                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert run_deploy(on_node, deploy_args(fake_images("1.34.0").compressed, redundancy=2)) == 0
    config = on_node.vm_config(100)
    capsys.readouterr()

    message = upgrade_failure(on_node, "--vmid", "100", "--image", str(fake_images("1.33.3").compressed))

    assert "preflight found" in message and "nothing was changed" in message, message
    printed = capsys.readouterr()
    assert ("problem: the image has LINSTOR 1.33.3, older than the running controller's 1.34.0: LINSTOR has no "
            "downgrade path for its database") in printed.err + printed.out, printed
    assert knows(on_node, VM)["version"] == "1.34.0"
    assert on_node.vm_config(100) == config
    assert not (on_node.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").exists()


@pytest.mark.sim_scenario(**SCENARIO)
def test_satellites_upgraded_before_the_second_disk_existed_refused(deployed: SimCluster, images: Images,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The controller refuses satellites of another release, so it cannot create the second disk any more."""
    upgrade_satellites_by_hand(deployed, "1.34.0")
    before = knows(deployed, VM)
    message = upgrade_failure(deployed, "--vmid", "100", "--image", str(images[1].compressed))
    assert "preflight found 1 problem" in message, message
    printed = capsys.readouterr()
    assert f"cannot create the second disk {NEW}" in printed.err + printed.out
    assert knows(deployed, VM) == before
    assert not (deployed.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").exists()


@pytest.mark.sim_scenario(**SCENARIO)
def test_satellites_behind_without_satellites_refused(deployed: SimCluster, images: Images,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    before = knows(deployed, VM)
    message = upgrade_failure(deployed, "--vmid", "100", "--image", str(images[1].compressed))
    assert "preflight found 1 problem" in message, message
    printed = capsys.readouterr()
    assert ("the satellites on pve1 (1.33.3), pve2 (1.33.3) do not run LINSTOR 1.34.0; upgrade them with apt "
            "first, or let the upgrade do it with --satellites") in printed.err + printed.out
    assert knows(deployed, VM) == before
    assert not (deployed.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").exists()


@needs_fake_apt
@pytest.mark.sim_scenario(**SCENARIO, apt_versions={"linstor-common": ["1.33.3", "1.34.0"],
                                                    "linstor-satellite": ["1.33.3", "1.34.0"],
                                                    "linstor-controller": ["1.33.3", "1.34.0"]})
def test_upgrade_with_satellites(deployed: SimCluster, images: Images, guest: Guest) -> None:
    cluster = deployed
    # The second disk made beforehand, and the VM's database on its disk (the simulated VM writes a copy).
    assert run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed), "--prepare") == 0
    guest.persist()
    before = knows(cluster, VM)

    assert run_upgrade(cluster, "--vmid", "100", "--image", str(images[1].compressed), "--satellites") == 0

    assert knows(cluster, VM)["version"] == "1.34.0"
    assert knows(cluster, VM)["nodes"] == before["nodes"]
    assert daytwo.online_satellites(cluster, VM) == ["pve1", "pve2"]
    assert [cluster.satellite_version(node) for node in ("pve1", "pve2")] == ["1.34.0", "1.34.0"]  # type: ignore[attr-defined]
    assert journal(cluster)["steps"]["satellites"]["record"]["upgraded"] == ["pve1", "pve2"]


@needs_fake_apt
@pytest.mark.sim_scenario(**SCENARIO)
def test_a_version_apt_cannot_install_is_refused_at_preflight(deployed: SimCluster, images: Images,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The nodes' repository holds 1.33.3 only (the default): nothing may change."""
    cluster = deployed
    before = knows(cluster, VM)
    config = cluster.vm_config(100)

    message = upgrade_failure(cluster, "--vmid", "100", "--image", str(images[1].compressed), "--satellites")

    assert "preflight found 2 problems" in message and "nothing was changed" in message, message
    printed = capsys.readouterr()
    for node in ("pve1", "pve2"):
        # The repository has no 1.34.0 at all, so the pin is the image's own package version.
        assert f"apt on {node} cannot install linstor-common=1.34.0-1 linstor-satellite=1.34.0-1" in printed.err
    assert "E: Version '1.34.0-1' for 'linstor-common' was not found" in printed.err
    assert knows(cluster, VM) == before and cluster.vm_config(100) == config
    assert not (cluster.root("pve1") / "var/lib/linstor-appliance/upgrade-100.json").exists()


def signalled(cluster: SimCluster, args: list[str], point: str, signum: signal.Signals,
              tmp_path: Path) -> tuple[int, str]:  # fmt: skip
    """`linstor-appliance upgrade ARGS` as its own process on pve1, held at `point` and signalled there."""
    marker = tmp_path / f"paused-{point}"
    output = tmp_path / f"output-{point}"
    env = cluster.env("pve1")
    env["PYTHONPATH"] = f"{PROJECT}:{PROJECT / 'tests'}"
    env[PAUSE_ENV] = f"{point}:{marker}"
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "deploy.simcli", "upgrade", *args], env=env, stdout=sink,
                                   stderr=sink, stdin=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, f"the upgrade never reached {point}"
        time.sleep(0.05)
    process.send_signal(signum)
    code = process.wait(timeout=180)
    return code, output.read_text()


@pytest.mark.sim_scenario(**SCENARIO)
@pytest.mark.parametrize(("point", "signum"), [("after-image", signal.SIGTERM), ("after-stop", signal.SIGHUP),
                                               ("after-start", signal.SIGINT)])  # fmt: skip
def test_a_signal_ends_in_a_known_state(deployed: SimCluster, images: Images, guest: Guest, tmp_path: Path,
                                        point: str, signum: signal.Signals) -> None:  # fmt: skip
    """Before the VM stops, a signal stops the upgrade and --resume finishes it; after, the VM is switched back."""
    cluster = deployed
    prepare_then_upgrade_satellites(cluster, images[1], guest)
    before = knows(cluster, VM)

    code, output = signalled(cluster, ["--vmid", "100", "--image", str(images[1].compressed)], point, signum,
                             tmp_path)  # fmt: skip

    assert code == 1, output
    assert "Traceback" not in output
    data = journal(cluster)
    if point == "after-image":
        assert f"failed: interrupted by {signum.name}; continue with 'linstor-appliance upgrade --vmid 100 " \
               "--resume', or give it up with --rollback" in output, output
        assert data["status"] == "failed" and knows(cluster, VM) == before
        assert run_upgrade(cluster, "--vmid", "100", "--resume") == 0
        assert knows(cluster, VM)["version"] == "1.34.0"
        return
    assert f"interrupted by {signum.name}; rolled back: VM 100 runs LINSTOR 1.33.3" in output, output
    assert data["status"] == "rolled-back"
    assert knows(cluster, VM) == before
    assert cluster.vm_config(100)["scsi0"].startswith(f"/dev/drbd/by-res/{OLD}/0")
