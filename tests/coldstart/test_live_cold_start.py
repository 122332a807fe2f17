"""A total outage on the live simulation: every node powered off and on again, with and without coldstart.

The live simulation runs the real installed script (the hook through HA and startall, the retry
as the timer would), but without a boot timeline: nodes come up one after another, startall runs
without the pve-guests gate (as if its bound had passed) and HA retries every 0.3 s. The seeded
runs with real timing are in test_cold_boot.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .appliance import Appliance, install_everywhere, node_script, wait_for

pytestmark = pytest.mark.sim

Make = Callable[..., Appliance]
HA_GUESTS = {101: "pve1", 102: "pve2", 103: "pve1"}
BOOT_GUESTS = {201: "pve1", 202: "pve3"}


def outage(app: Appliance, order: tuple[str, ...]) -> None:
    """Power fails everywhere; it comes back node by node; the controller answers 2 s after its VM started."""
    cluster = app.cluster
    for node in cluster.nodes:
        cluster.node_offline(node)
    app.sync()
    assert not app.controller_running()
    app.answer_after = 2.0
    for node in order:
        cluster.node_online(node)


def test_cold_start_with_coldstart(appliance: Make) -> None:
    app = appliance(HA_GUESTS, BOOT_GUESTS)
    cluster = app.cluster
    # The simulation runs hooks inside its one HA tick: no waiting there (test_scripts.py covers it).
    install_everywhere(cluster, "--hook-wait", "0")
    outage(app, ("pve2", "pve3", "pve1"))
    answered = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        app.sync()
        if app.controller_running():
            answered = answered or cluster.state.now()
            for node in cluster.nodes:  # what linstor-coldstart-retry.timer does every 15 s
                assert node_script(cluster, node, "retry").returncode == 0
        if all(cluster.vm_status(v) == "running" for v in app.guests):
            break
        time.sleep(0.3)
    assert {v: cluster.vm_status(v) for v in app.guests} == {v: "running" for v in app.guests}
    assert answered is not None
    first = app.start_time(app.controller_vmid)
    assert first is not None
    for vmid in app.guests:
        started = app.start_time(vmid)
        assert started is not None and started > first and started >= answered - 0.5, vmid


def test_cold_start_without_coldstart_leaves_guests_down(appliance: Make) -> None:
    """The seed's failure: the controller VM comes up, the guests that tried before its controller stay down."""
    app = appliance(HA_GUESTS, BOOT_GUESTS)
    cluster = app.cluster
    outage(app, ("pve2", "pve3", "pve1"))
    assert wait_for(lambda: cluster.vm_status(app.controller_vmid) == "running", timeout=20)

    def ha_states() -> dict[str, str]:
        return {sid: s["state"] for sid, s in cluster.ha_services().items() if sid != f"vm:{app.controller_vmid}"}

    # The appliance boots slower than HA's restart and relocate budget runs out (about a minute on PVE).
    assert wait_for(lambda: ha_states() == {f"vm:{v}": "error" for v in HA_GUESTS}, timeout=30)
    app.answer_after = 0.0
    app.sync()
    assert app.controller_running()
    time.sleep(3)
    cluster.settle()
    assert {v: cluster.vm_status(v) for v in app.guests} == {v: "stopped" for v in app.guests}
    assert ha_states() == {f"vm:{v}": "error" for v in HA_GUESTS}
