"""Scenario knobs: cluster sizes and validation."""

from __future__ import annotations

import json

import pytest

from .scenario import Scenario

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("size", [1, 5])
def test_cluster_sizes(make_sim_cluster, size: int) -> None:  # type: ignore[no-untyped-def]
    cluster = make_sim_cluster(nodes=size)
    nodes = json.loads(cluster.run("pve1", "pvesh", "get", "/nodes", "--output-format", "json").stdout)
    assert sorted(n["node"] for n in nodes) == [f"pve{i}" for i in range(1, size + 1)]
    assert "Quorate:          Yes" in cluster.run(f"pve{size}", "pvecm", "status").stdout
    result = cluster.run(f"pve{size}", "qm", "create", "100", "--scsi0", "drbdstorage:1")
    assert result.returncode == 0, result.stderr


def test_scenario_validation_and_round_trip() -> None:
    with pytest.raises(ValueError, match="1 to 5 nodes"):
        Scenario(nodes=6)
    with pytest.raises(ValueError, match="unknown node 'pve4'"):
        Scenario(nodes=3, offline_nodes=("pve4",))
    scenario = Scenario(nodes=2, existing_vms={100: "pve2"}, offline_nodes=("pve2",), plugin_version="7.0.1")
    assert Scenario.from_json(scenario.to_json()) == scenario
