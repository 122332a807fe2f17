"""Fixtures of the deploy tests: fake appliance images per LINSTOR release, and a deploy-ready cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sim.cluster import SimCluster
from sim.scenario import linstor_package_version

from deploy import fakeimage
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, sim_env


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "single_node: run a fault test on a one-node cluster")


@pytest.fixture(autouse=True)
def _root_only(request: pytest.FixtureRequest) -> None:
    if os.geteuid() != 0 and request.node.get_closest_marker("sim"):
        pytest.skip("deploys on the simulated cluster mount loop devices and need root")


@pytest.fixture(scope="session")
def fake_images(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., FakeImage]:
    """fake_images(linstor_version, dpkg_version=None) -> a cached FakeImage."""
    built: dict[tuple[str, str | None], FakeImage] = {}

    def make(linstor_version: str, dpkg_version: str | None = None) -> FakeImage:
        key = (linstor_version, dpkg_version)
        if key not in built:
            directory = tmp_path_factory.mktemp(f"image-{linstor_version}")
            built[key] = fakeimage.build(directory, linstor_version, dpkg_version)
        return built[key]

    return make


@pytest.fixture
def image(sim_cluster: SimCluster, fake_images: Callable[..., FakeImage]) -> FakeImage:
    """The image matching the cluster's LINSTOR release."""
    return fake_images(linstor_package_version(sim_cluster.scenario.linstor_version))


@pytest.fixture
def on_node(sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> SimCluster:
    """This process acts as a root shell on pve1 of the cluster (fakes first on PATH)."""
    sim_env(sim_cluster, "pve1", monkeypatch)
    return sim_cluster


@pytest.fixture
def guest(on_node: SimCluster, tmp_path: Path) -> Iterator[Guest]:
    """The appliance in VM 100 at 10.0.0.100 (device-path resource name)."""
    with Guest(on_node, 100, "10.0.0.100", "linstor-appliance-100", tmp_path / "guest") as running:
        yield running
