"""A dropped SSH session (SIGHUP), `kill` (SIGTERM) or Ctrl-C (SIGINT) ends a deploy in a known state.

The real command line tool runs as its own process on pve1 of the simulated cluster (deploy/simcli.py),
held at a step boundary or in the middle of the image write or the injection (builder/testpoint.py), and
signalled there, with its terminal gone for SIGHUP. Before the host's controller stopped it stops cleanly
and --resume continues; after that it rolls back by itself. Either way no loop device, mount or DRBD
Primary role of the VM disk is left behind.
"""

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

from builder.deploy import controller
from builder.testpoint import ENV as PAUSE_ENV
from deploy.expect import assert_backup_matches_host, assert_deployed, assert_rolled_back, journal
from deploy.fakeimage import FakeImage
from deploy.harness import PROJECT, Guest, SimDirectory, deploy_args, host_files, run_deploy, sim_env

pytestmark = pytest.mark.sim

SCENARIO = {"nodes": 1, "linstor_version": "1.20", "ha_delay": 0.05}
RESOURCE = "linstor-appliance-100"
RESUME = ["--vmid", "100", "--resume"]


@pytest.fixture
def cluster(make_sim_cluster: Callable[..., SimCluster], monkeypatch: pytest.MonkeyPatch) -> SimCluster:
    made = make_sim_cluster(**SCENARIO)
    sim_env(made, "pve1", monkeypatch)
    return made


@pytest.fixture
def image(fake_images: Callable[..., FakeImage]) -> FakeImage:
    return fake_images(linstor_package_version(str(SCENARIO["linstor_version"])))


@pytest.fixture
def appliance(cluster: SimCluster, tmp_path: Path) -> Iterator[Guest]:
    with Guest(cluster, 100, "10.0.0.100", RESOURCE, tmp_path / "guest") as guest:
        yield guest


def start(cluster: SimCluster, args: list[str], point: str, tmp_path: Path, *,
          terminal: bool = True) -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    """`linstor-appliance deploy ARGS` as a process on pve1, held at `point`; returns once it waits there.

    Its output goes to tmp_path/output-<point>; without `terminal` it goes to a pipe that is closed once the
    deploy waits, as the terminal of a dropped SSH session is gone: the deploy must not fail writing to it."""
    marker = tmp_path / f"paused-{point}"
    env = cluster.env("pve1")
    env["PYTHONPATH"] = f"{PROJECT}:{PROJECT / 'tests'}"
    env[PAUSE_ENV] = f"{point}:{marker}"
    command = [sys.executable, "-m", "deploy.simcli", "deploy", *args]
    if terminal:
        with (tmp_path / f"output-{point}").open("wb") as sink:
            process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL)
        reader = None
    else:
        read_end, write_end = os.pipe()
        process = subprocess.Popen(command, env=env, stdout=write_end, stderr=write_end, stdin=subprocess.DEVNULL)
        os.close(write_end)
        reader = os.fdopen(read_end, "rb")
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None:
            text = reader.read().decode() if reader else output_of(tmp_path, point)
            raise AssertionError(f"the deploy ended before {point}: {text}")
        assert time.monotonic() < deadline, f"the deploy never reached {point}"
        time.sleep(0.05)
    if reader is not None:
        reader.close()
    return process, marker


def output_of(tmp_path: Path, point: str) -> str:
    path = tmp_path / f"output-{point}"
    return path.read_text() if path.exists() else ""


def signalled(cluster: SimCluster, args: list[str], point: str, signum: signal.Signals,
              tmp_path: Path) -> tuple[int, str]:  # fmt: skip
    """Signal the deploy at `point` (SIGHUP with its terminal gone); its exit code and output."""
    process, _ = start(cluster, args, point, tmp_path, terminal=signum != signal.SIGHUP)
    process.send_signal(signum)
    code = process.wait(timeout=180)
    return code, output_of(tmp_path, point)


def assert_nothing_held(cluster: SimCluster) -> None:
    device = cluster.drbd_device("pve1", RESOURCE)
    loops = subprocess.run(["losetup", "--associated", str(device)], capture_output=True, text=True, check=True)
    assert loops.stdout.strip() == "", loops.stdout
    # Mounts of loop devices over this cluster's files (others may be testing beside us).
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        source = line.split(" - ", 1)[1].split()[1]
        if source.startswith("/dev/loop"):
            backing = Path(f"/sys/block/{Path(source).name}/loop/backing_file")
            assert not (backing.exists() and str(cluster.state.dir) in backing.read_text()), line
    assert cluster.drbd_primary(RESOURCE) == []


def assert_old_controller_answers(cluster: SimCluster) -> None:
    assert cluster.unit_active("pve1", "linstor-controller") == "active"
    endpoint = controller.host_endpoint(cluster.root("pve1"))
    assert controller.probe(SimDirectory(cluster, "pve1"), endpoint) is not None


# Each interruption before step 6, in deploy order, with the three signals in turn: each --resume continues
# from one point and is interrupted at the next.
BEFORE_HANDOVER = [("after-disk", signal.SIGHUP), ("after-vm", signal.SIGTERM), ("mid-write", signal.SIGINT),
                   ("after-image", signal.SIGHUP), ("after-register", signal.SIGTERM),
                   ("after-units", signal.SIGINT)]  # fmt: skip
STEP_OF = {"mid-write": "image", "mid-inject": "inject"}


def test_signal_before_handover_stops_cleanly_and_resume_continues(cluster: SimCluster, image: FakeImage,
                                                                   appliance: Guest, tmp_path: Path) -> None:
    for attempt, (point, signum) in enumerate(BEFORE_HANDOVER, 1):
        args = deploy_args(image.compressed, redundancy=1) if attempt == 1 else RESUME
        code, output = signalled(cluster, args, point, signum, tmp_path)
        assert code == 1, (point, output)
        data = journal(cluster)
        assert data["status"] == "failed" and data["error"] == f"interrupted by {signum.name}", point
        step = STEP_OF.get(point, point.removeprefix("after-"))
        assert data["failed_step"] in (step, _next(step)), point
        if signum != signal.SIGHUP:
            assert f"was interrupted by {signum.name}; continue with 'linstor-appliance deploy --vmid 100 " \
                   "--resume'" in output, output
            assert "Traceback" not in output
        assert_old_controller_answers(cluster)
        assert_nothing_held(cluster)
    assert run_deploy(cluster, RESUME) == 0
    assert appliance.check_failures == []
    assert_deployed(cluster, image, redundancy=1)


def _next(step: str) -> str:
    order = ["disk", "vm", "image", "register", "units", "handover", "inject", "start", "verify", "storage",
             "backupjob"]  # fmt: skip
    return order[order.index(step) + 1]


class Stop(BaseException):
    pass


@pytest.mark.parametrize(("point", "signum"), [
    ("after-handover", signal.SIGHUP), ("mid-inject", signal.SIGHUP), ("after-inject", signal.SIGTERM),
    ("after-start", signal.SIGINT), ("after-verify", signal.SIGHUP), ("after-storage", signal.SIGTERM),
])  # fmt: skip
def test_signal_after_handover_rolls_back(cluster: SimCluster, image: FakeImage, appliance: Guest, tmp_path: Path,
                                          point: str, signum: signal.Signals) -> None:  # fmt: skip
    storage_cfg = cluster.storage_cfg()
    # Steps 1 to 5 in this process (quicker); the rest by the command line tool, signalled at `point`.
    from builder.deploy.journal import Journal

    finish = Journal.finish_step

    def stop_after_units(self: Journal, step: str, record: dict[str, object] | None = None) -> None:
        finish(self, step, record)
        if step == "units":
            raise Stop

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Journal, "finish_step", stop_after_units)
        with pytest.raises(Stop):
            run_deploy(cluster, deploy_args(image.compressed, redundancy=1))
    before = host_files(cluster)
    code, output = signalled(cluster, RESUME, point, signum, tmp_path)
    assert code == 1, output
    if signum != signal.SIGHUP:
        assert f"was interrupted by {signum.name}; rolled back: the LINSTOR controller on this node runs again" \
               in output, output
        assert "Traceback" not in output
    data = journal(cluster)
    assert data["status"] == "rolled-back" and data["error"] == f"interrupted by {signum.name}"
    assert_rolled_back(cluster, before, storage_cfg)
    assert_old_controller_answers(cluster)
    assert_nothing_held(cluster)


def test_signals_during_the_rollback_do_not_cut_it_short(cluster: SimCluster,
                                                         fake_images: Callable[..., FakeImage],
                                                         appliance: Guest, tmp_path: Path) -> None:  # fmt: skip
    """Step 9 fails (the image carries another linstor-controller than its manifest says, so the appliance keeps
    its controller stopped) and the deploy rolls back; Ctrl-C, a hangup and `kill` during the rollback are noted,
    and the rollback still completes."""
    liar = fake_images("1.20.0", dpkg_version="1.20.1-1")
    storage_cfg = cluster.storage_cfg()
    process, marker = start(cluster, deploy_args(liar.raw, "--wait-timeout", "2", redundancy=1), "rollback", tmp_path)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        process.send_signal(signum)
        time.sleep(0.1)
    marker.unlink()
    code = process.wait(timeout=180)
    text = output_of(tmp_path, "rollback")
    assert code == 1, text
    assert "step 9 (Verify the controller in the VM) failed" in text and "rolled back:" in text, text
    assert "(ignored SIGINT, SIGHUP, SIGTERM while rolling back)" in text, text
    # The host's files are those of the backup taken at step 6, byte for byte.
    assert_rolled_back(cluster, host_files(cluster), storage_cfg)
    assert_backup_matches_host(cluster)
    assert_nothing_held(cluster)
