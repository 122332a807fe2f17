"""Everything that happens in the cluster without a command being run: HA and satellites catching up.

Fakes call tick() before they act; the pytest fixture also ticks from a background thread so
that state a test polls for (a VM started by HA, a DRBD device made available through the REST
API) appears without a command in between, as it would on a real cluster.
"""

from __future__ import annotations

from . import ha, satellite
from .state import SimState


def tick(state: SimState) -> None:
    with state.locked():
        satellite.sync_all(state)
        ha.tick(state)
