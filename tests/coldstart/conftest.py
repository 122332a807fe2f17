"""Fixtures for the coldstart tests: a deployed appliance cluster on the live simulation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sim.cluster import SimCluster
from sim.scenario import Scenario

from .appliance import Appliance, Deployment, deploy


@pytest.fixture
def appliance(make_sim_cluster: Callable[..., SimCluster],
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., Appliance]:  # fmt: skip
    """make(ha_guests, boot_guests, other_guests=None, nodes=3, **deploy_options) -> a deployed cluster.

    HA runs hookscripts from this test process (the simulation's background tick): they must find
    the simulated curl and state on PATH, as they find PVE's tools on a real node.
    """

    def make(ha_guests: dict[int, str], boot_guests: dict[int, str], other_guests: dict[int, str] | None = None,
             **options: Any) -> Appliance:  # fmt: skip
        def start(scenario: Scenario) -> SimCluster:
            cluster = make_sim_cluster(scenario)
            env = cluster.env("pve1")
            monkeypatch.setenv("PATH", env["PATH"])
            monkeypatch.setenv("PVE_SIM_STATE", env["PVE_SIM_STATE"])
            return cluster

        return deploy(start, Deployment(ha_guests, boot_guests, other_guests or {}, **options))

    return make
