"""Kills, failures and rollbacks: a deploy interrupted anywhere can be resumed or rolled back, and a rollback
leaves the host's controller running on byte-identical files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sim.cluster import SimCluster
from sim.scenario import linstor_package_version

from builder import log
from builder.deploy import backup
from builder.deploy.journal import Journal
from deploy.expect import assert_backup_matches_host, assert_deployed, assert_rolled_back, journal
from deploy.fakeimage import FakeImage
from deploy.harness import PROJECT, Guest, deploy_args, expect_failure, host_files, run_deploy, sim_env

pytestmark = pytest.mark.sim

BOUNDARIES = ["disk", "vm", "image", "register", "units", "handover", "inject", "start", "verify", "storage"]
# Two nodes with LINSTOR 1.20, so rollbacks also remove satellite drop-ins over SSH; resumes run on one
# node to keep the many kill points quick (what resuming does is the same on every node).
SCENARIO = {"nodes": 2, "linstor_version": "1.20", "ha_delay": 0.05}
SINGLE = {"nodes": 1, "linstor_version": "1.20", "ha_delay": 0.05}


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the deploy catches it, so no rollback runs."""


def kill_after(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    finish = Journal.finish_step

    def finish_then_die(self: Journal, step: str, record: dict[str, object] | None = None) -> None:
        finish(self, step, record)
        if step == key:
            raise Killed(step)

    monkeypatch.setattr(Journal, "finish_step", finish_then_die)


def kill_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    update = log.Progress.update

    def update_then_die(self: log.Progress, done: int) -> None:
        update(self, done)
        if self.label.startswith("Writing") and done >= self.total // 2:
            raise Killed("image write")

    monkeypatch.setattr(log.Progress, "update", update_then_die)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, make_sim_cluster: Callable[..., SimCluster],
            monkeypatch: pytest.MonkeyPatch) -> SimCluster:  # fmt: skip
    marker = request.node.get_closest_marker("single_node")
    made = make_sim_cluster(**(SINGLE if marker else SCENARIO))
    sim_env(made, "pve1", monkeypatch)
    return made


@pytest.fixture
def image(fake_images: Callable[..., FakeImage]) -> FakeImage:
    return fake_images(linstor_package_version(SCENARIO["linstor_version"]))


@pytest.fixture
def appliance(cluster: SimCluster, tmp_path: Path) -> Iterator[Guest]:
    with Guest(cluster, 100, "10.0.0.100", "linstor-appliance-100", tmp_path / "guest") as guest:
        yield guest


def kill_mid_handover(monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after the host's controller stopped, before its files are backed up."""

    def die(*args: object) -> None:
        raise Killed("handover")

    monkeypatch.setattr(backup, "create", die)


def redundancy(cluster: SimCluster) -> int:
    return len(cluster.nodes)


def interrupted(cluster: SimCluster, image: FakeImage, where: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        kill_at(patch, where)
        with pytest.raises(Killed):
            run_deploy(cluster, deploy_args(image.compressed, redundancy=redundancy(cluster)))
    data = journal(cluster)
    assert data["status"] == "running"
    if where == "mid-write":
        assert data["steps"]["image"]["state"] == "started"
    elif where == "mid-handover":
        assert data["steps"]["handover"]["state"] == "started"
        assert cluster.unit_active("pve1", "linstor-controller") == "inactive"
    else:
        assert data["steps"][where]["state"] == "done"


# Every kill point in deploy order: each resume continues from one point and is killed at the next.
KILL_CHAIN = ["disk", "vm", "mid-write", "image", "register", "units", "mid-handover", "handover", "inject", "start",
              "verify", "storage"]  # fmt: skip


def kill_at(patch: pytest.MonkeyPatch, where: str) -> None:
    if where == "mid-write":
        kill_mid_write(patch)
    elif where == "mid-handover":
        kill_mid_handover(patch)
    else:
        kill_after(patch, where)


@pytest.mark.single_node
def test_resume_completes_after_a_kill_at_every_point(cluster: SimCluster, image: FakeImage,
                                                      appliance: Guest) -> None:  # fmt: skip
    """Killed at each step boundary and in the middle of the image write and of the handover, in turn: every
    --resume continues where the journal says, and the last one completes the deploy."""
    first = [*deploy_args(image.compressed, redundancy=1)]
    for attempt, where in enumerate(KILL_CHAIN, 1):
        with pytest.MonkeyPatch.context() as patch:
            kill_at(patch, where)
            with pytest.raises(Killed):
                run_deploy(cluster, first if attempt == 1 else ["--vmid", "100", "--resume"])
        data = journal(cluster)
        assert data["status"] == "running" and data["attempts"] == attempt, where
        step = {"mid-write": "image", "mid-handover": "handover"}.get(where, where)
        assert data["steps"][step]["state"] == ("started" if where.startswith("mid-") else "done"), where
    assert run_deploy(cluster, ["--vmid", "100", "--resume"]) == 0
    assert appliance.check_failures == []
    assert_deployed(cluster, image, redundancy=1)
    assert journal(cluster)["attempts"] == len(KILL_CHAIN) + 1


@pytest.mark.parametrize("where", [*BOUNDARIES, "mid-write", "mid-handover"])
def test_rollback_after_a_kill(cluster: SimCluster, image: FakeImage, appliance: Guest, where: str) -> None:
    storage_cfg = cluster.storage_cfg()
    interrupted(cluster, image, where)
    before = host_files(cluster)
    if journal(cluster)["steps"].get("handover", {}).get("record", {}).get("backup"):
        # Once the controller stopped, its files are the backup's, and stay so.
        assert_backup_matches_host(cluster)
    assert run_deploy(cluster, ["--vmid", "100", "--rollback"]) == 0
    assert_rolled_back(cluster, before, storage_cfg)


def test_rollback_of_a_completed_deploy(cluster: SimCluster, image: FakeImage, appliance: Guest) -> None:
    storage_cfg = cluster.storage_cfg()
    assert run_deploy(cluster, deploy_args(image.raw, redundancy=2)) == 0
    before = host_files(cluster)
    assert_backup_matches_host(cluster)
    assert run_deploy(cluster, ["--vmid", "100", "--rollback"]) == 0
    assert_rolled_back(cluster, before, storage_cfg)
    # A new deploy reuses what the rolled-back one left (VM, disk, Controller node) and completes.
    assert run_deploy(cluster, deploy_args(image.raw, redundancy=2)) == 0
    assert_deployed(cluster, image, redundancy=2)


def test_failure_after_step_6_rolls_back_by_itself(cluster: SimCluster, fake_images: Callable[..., FakeImage],
                                                   appliance: Guest) -> None:  # fmt: skip
    """The image says 1.20.0 in its manifest but carries another linstor-controller: the appliance's boot check
    keeps the controller stopped, step 9 times out, and the deploy rolls back."""
    liar = fake_images("1.20.0", dpkg_version="1.20.1-1")
    storage_cfg = cluster.storage_cfg()
    message = expect_failure(cluster, deploy_args(liar.raw, "--wait-timeout", "4", redundancy=2))
    assert message.startswith("step 9 (Verify the controller in the VM) failed: the LINSTOR controller in VM 100 "
                              "answering at 10.0.0.100:3370 did not happen within 4s")  # fmt: skip
    assert "rolled back: the LINSTOR controller on this node runs again" in message
    assert any("linstor-controller 1.20.1 is installed, but the cluster runs LINSTOR 1.20.0" in text
               for text in appliance.check_failures)  # fmt: skip
    assert_rolled_back(cluster, host_files(cluster), storage_cfg)
    assert_backup_matches_host(cluster)


def test_failure_before_step_6_leaves_the_controller_running(cluster: SimCluster, image: FakeImage,
                                                             appliance: Guest) -> None:  # fmt: skip
    """Step 3 refuses while a peer holds the disk Primary; the controller was never stopped, so no rollback."""
    interrupted(cluster, image, "vm")
    with cluster.drbd_open("pve2", "linstor-appliance-100"):
        message = expect_failure(cluster, ["--vmid", "100", "--resume"])
    assert "linstor-appliance-100 is Primary on pve2" in message and "--resume" in message
    assert journal(cluster)["status"] == "failed"
    assert cluster.unit_active("pve1", "linstor-controller") == "active"
    assert run_deploy(cluster, ["--vmid", "100", "--resume"]) == 0
    assert_deployed(cluster, image, redundancy=2)


def test_unfinished_deploy_must_be_resumed_or_rolled_back(cluster: SimCluster, image: FakeImage) -> None:
    interrupted(cluster, image, "register")
    message = expect_failure(cluster, deploy_args(image.compressed, redundancy=2))
    assert message.startswith("an earlier deploy of VM 100 did not finish (running)")
    changed = expect_failure(cluster, ["--vmid", "100", "--resume", "--ip", "10.0.0.101/24"])
    assert changed.startswith("--ip differs from the unfinished deploy of VM 100")


FAKE_ZSTD = """#!/bin/sh
# Decompresses like zstd, but stops halfway through and waits to be killed: a deploy killed mid-write.
if [ "$1" = "-dc" ]; then
    echo $PPID > {pidfile}
    {zstd} -dc -- "$3" | head -c {half}
    echo $$ >> {pidfile}
    exec sleep 600
fi
exec {zstd} "$@"
"""


def test_sigkill_in_the_middle_of_the_image_write(cluster: SimCluster, image: FakeImage, appliance: Guest,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """A real SIGKILL of the command-line tool, run as root on pve1 (through ssh, so it sees the node's files at
    their real paths), while it writes the image; then --resume completes."""
    # Steps 1 and 2 in this process: the simulation creates DRBD device nodes in the node's root, which an
    # ssh session that is already running does not see (its overlay was mounted before).
    interrupted(cluster, image, "vm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pidfile = tmp_path / "pids"
    (bin_dir / "zstd").write_text(FAKE_ZSTD.format(pidfile=pidfile, zstd="/usr/bin/zstd", half=24 * 2**20))
    (bin_dir / "zstd").chmod(0o755)
    # The tool reaches the host controller where linstor.toml says, as on a real node.
    toml = cluster.root("pve1") / "etc/linstor/linstor.toml"
    toml.write_text(toml.read_text() + f"\n[http]\n  port = {cluster.controller_url().rsplit(':', 1)[1]}\n")
    env = cluster.env("pve1")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["PYTHONPATH"] = str(PROJECT)
    command = f"{sys.executable} -m builder deploy --vmid 100 --resume"
    process = subprocess.Popen(["ssh", "root@pve1", command], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not pidfile.exists() or len(pidfile.read_text().split()) < 2:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read() if process.stdout else "the deploy ended")
        assert time.monotonic() < deadline, "the deploy never reached the image write"
        time.sleep(0.1)
    deploy_pid, zstd_pid = (int(p) for p in pidfile.read_text().split())
    time.sleep(0.3)
    os.kill(deploy_pid, signal.SIGKILL)
    os.kill(zstd_pid, signal.SIGKILL)
    output = process.communicate(timeout=30)[0]
    assert "Writing linstor-controller.raw.zst: 50%" in output
    data = journal(cluster)
    assert data["status"] == "running" and data["steps"]["image"]["state"] == "started"
    assert cluster.unit_active("pve1", "linstor-controller") == "active"
    assert run_deploy(cluster, ["--vmid", "100", "--resume"]) == 0
    assert_deployed(cluster, image, redundancy=2)
