"""The image is never written into a disk another node may be using.

This node's DRBD knows only the peers it is connected to; LINSTOR hears from every satellite. And two
Primaries (for live migration) are allowed only once the image is written and verified."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import linstor
import pytest
from sim.cluster import SimCluster
from sim.scenario import linstor_package_version

from builder import log
from builder.deploy.journal import Journal
from deploy.expect import assert_deployed, journal
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, deploy_args, expect_failure, run_deploy, sim_env

pytestmark = pytest.mark.sim

RESOURCE = "linstor-appliance-100"
TWO_PRIMARIES = "DrbdOptions/Net/allow-two-primaries"
# drbdsetup as on a node whose connection to pve2 is down (StandAlone): pve2 is missing from its peers.
CUT_OFF_DRBDSETUP = """#!/usr/bin/env python3
import json, subprocess, sys
result = subprocess.run(["{real}", *sys.argv[1:]], capture_output=True, text=True)
if result.returncode == 0 and "--json" in sys.argv:
    resources = json.loads(result.stdout)
    for resource in resources:
        resource["connections"] = [c for c in resource["connections"] if c["name"] != "pve2"]
    print(json.dumps(resources))
else:
    sys.stdout.write(result.stdout)
sys.stderr.write(result.stderr)
sys.exit(result.returncode)
"""


class Stop(BaseException):
    pass


def stop_after(patch: pytest.MonkeyPatch, key: str) -> None:
    finish = Journal.finish_step

    def finish_then_stop(self: Journal, step: str, record: dict[str, object] | None = None) -> None:
        finish(self, step, record)
        if step == key:
            raise Stop(step)

    patch.setattr(Journal, "finish_step", finish_then_stop)


def stop_mid_write(patch: pytest.MonkeyPatch) -> None:
    update = log.Progress.update

    def update_then_stop(self: log.Progress, done: int) -> None:
        update(self, done)
        if self.label.startswith("Writing") and done >= self.total // 2:
            raise Stop("image write")

    patch.setattr(log.Progress, "update", update_then_stop)


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
    with Guest(cluster, 100, "10.0.0.100", RESOURCE, tmp_path / "guest") as guest:
        yield guest


def two_primaries(cluster: SimCluster) -> str | None:
    with linstor.Linstor(cluster.linstor_url()) as lin:
        rd = lin.resource_dfn_list_raise(filter_by_resource_definitions=[RESOURCE]).resource_definitions[0]
    value = rd.properties.get(TWO_PRIMARIES)
    return None if value is None else str(value)


def test_primary_on_a_node_this_node_does_not_see(cluster: SimCluster, image: FakeImage, appliance: Guest,  # fmt: skip
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pve2 holds the disk Primary but pve1's DRBD is not connected to it: LINSTOR's resource list tells."""
    with pytest.MonkeyPatch.context() as patch:
        stop_after(patch, "vm")
        with pytest.raises(Stop):
            run_deploy(cluster, deploy_args(image.compressed, redundancy=2))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = cluster.state.bin / "drbdsetup"
    (bin_dir / "drbdsetup").write_text(CUT_OFF_DRBDSETUP.format(real=real))
    (bin_dir / "drbdsetup").chmod(0o755)
    with monkeypatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}:{cluster.env('pve1')['PATH']}")
        with cluster.drbd_open("pve2", RESOURCE) as device:
            written_before = device.read_bytes()
            message = expect_failure(cluster, ["--vmid", "100", "--resume"])
            assert device.read_bytes() == written_before, "the image was written into a disk in use"
    assert message.startswith(f"step 3 (Write the image to the VM disk) failed: LINSTOR reports {RESOURCE} in use "
                              "(DRBD Primary) on pve2"), message  # fmt: skip
    assert "--resume" in message
    assert journal(cluster)["status"] == "failed"
    assert cluster.unit_active("pve1", "linstor-controller") == "active"
    # Once pve2 lets go, the deploy continues.
    assert run_deploy(cluster, ["--vmid", "100", "--resume"]) == 0
    assert_deployed(cluster, image, redundancy=2)


def test_two_primaries_only_once_the_image_is_verified(cluster: SimCluster, image: FakeImage,
                                                       appliance: Guest) -> None:  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        stop_after(patch, "disk")
        with pytest.raises(Stop):
            run_deploy(cluster, deploy_args(image.compressed, redundancy=2))
    assert two_primaries(cluster) == "no"
    with pytest.MonkeyPatch.context() as patch:
        stop_mid_write(patch)
        with pytest.raises(Stop):
            run_deploy(cluster, ["--vmid", "100", "--resume"])
    assert two_primaries(cluster) == "no"
    with pytest.MonkeyPatch.context() as patch:
        stop_after(patch, "image")
        with pytest.raises(Stop):
            run_deploy(cluster, ["--vmid", "100", "--resume"])
    assert two_primaries(cluster) == "yes"
    assert run_deploy(cluster, ["--vmid", "100", "--resume"]) == 0
    assert_deployed(cluster, image, redundancy=2)
