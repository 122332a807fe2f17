"""pytest fixtures for the simulated cluster.

    @pytest.mark.sim_scenario(nodes=3, plugin_version="8.3.0", linstor_version="1.33")
    def test_something(sim_cluster):
        result = sim_cluster.run("pve1", "qm", "status", "100")

`make_sim_cluster(**knobs)` builds further clusters inside one test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import SimCluster, remove_tree
from .scenario import Scenario


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_scenario(**knobs): Scenario knobs for the sim_cluster fixture")


@pytest.fixture
def sim_scenario(request: pytest.FixtureRequest) -> Scenario:
    """The Scenario for `sim_cluster`: from a `sim_scenario` marker, else the defaults."""
    marker = request.node.get_closest_marker("sim_scenario")
    knobs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    return Scenario(**knobs)


@pytest.fixture
def make_sim_cluster(tmp_path: Path) -> Iterator[Callable[..., SimCluster]]:
    started: list[SimCluster] = []
    counter = itertools.count()

    def make(scenario: Scenario | None = None, **knobs: Any) -> SimCluster:
        cluster = SimCluster(scenario or Scenario(**knobs), tmp_path / f"sim{next(counter)}")
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.close()
        remove_tree(cluster.directory)


@pytest.fixture
def sim_cluster(sim_scenario: Scenario, make_sim_cluster: Callable[..., SimCluster]) -> SimCluster:
    """A running simulated cluster for the test's scenario."""
    return make_sim_cluster(sim_scenario)
