"""Fixtures of the simulated cluster for the tests in this folder."""

from .fixtures import make_sim_cluster, pytest_configure, sim_cluster, sim_scenario

__all__ = ["make_sim_cluster", "pytest_configure", "sim_cluster", "sim_scenario"]
