"""A simulated Proxmox VE cluster with LINSTOR storage, for testing the deploy command. Test code only."""

from .cluster import SimCluster
from .scenario import Scenario

__all__ = ["Scenario", "SimCluster"]
