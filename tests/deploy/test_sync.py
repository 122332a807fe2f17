"""`linstor-appliance sync` when a node joins or leaves the simulated cluster.

A joining node must be able to reach the controller (the allowlist inside the VM names it) and to run
the controller VM (a replica of its disk and the boot units), and a second sync must change nothing.
"""

from __future__ import annotations

import json

import linstor
import pytest
from sim import guests
from sim.cluster import SimCluster

from builder import cli, status, sync
from builder.status import options
from deploy.fakeimage import FakeImage
from deploy.harness import (
    Guest,
    SimDirectory,
    coldstart_install,
    deploy_args,
    environment,
    give_package,
    run_deploy,
    state_snapshot,
)

pytestmark = pytest.mark.sim
VMID = 100
RES = "linstor-appliance-100"


def run_sync(cluster: SimCluster, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with environment(cluster, "pve1"):
        code = sync.run(cluster.root("pve1"), None, directory=SimDirectory(cluster, "pve1"))
    return code, capsys.readouterr().out


def checks(cluster: SimCluster, capsys: pytest.CaptureFixture[str]) -> dict[str, list[dict[str, str]]]:
    parsed = cli.make_parser().parse_args(["status", "--json", "--timeout", "5"])
    capsys.readouterr()
    status.run(options.from_args(parsed, root=cluster.root("pve1")), directory=SimDirectory(cluster, "pve1"))
    found: dict[str, list[dict[str, str]]] = {}
    for line in json.loads(capsys.readouterr().out)["checks"]:
        found.setdefault(line["check"], []).append(line)
    return found


def allowlist_in_vm(cluster: SimCluster) -> str:
    root = guests.root(cluster.state, VMID)
    assert root is not None
    return (root / "etc/nftables.conf").read_text()


@pytest.mark.sim_scenario(nodes=3, ha_delay=0.05)
def test_node_joins_then_leaves(on_node: SimCluster, image: FakeImage, guest: Guest,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    code, out = run_sync(on_node, capsys)
    assert (code, out.strip()) == (0, "- nothing to change")
    # The cold-start helper is in use: the admin installed it on every node.
    for node in on_node.nodes:
        give_package(on_node, node)
        coldstart_install(on_node, node)

    # pve4 is installed (with this package), joins with pvecm add, and the admin registers it in LINSTOR.
    assert on_node.join("pve4", "10.0.0.4") == []
    give_package(on_node, "pve4")
    with linstor.Linstor(on_node.linstor_url("10.0.0.100"), timeout=10) as lin:
        assert not any(r.is_error() for r in lin.node_create("pve4", "SATELLITE", "10.0.0.4"))
    on_node.settle()
    before = checks(on_node, capsys)
    assert before["firewall"][0]["status"] == "CRITICAL"
    assert any("pve4 has no replica" in line["text"] for line in before["replicas"])
    assert "10.0.0.4" not in allowlist_in_vm(on_node)

    code, out = run_sync(on_node, capsys)
    assert code == 0, out
    assert "allowlist in VM 100" in out and "pve4: diskless replica" in out and "pve4: drbd" in out
    # One sync is enough for the helper too: it is installed once pve4 has the disk it waits for.
    assert "pve4: cold-start helper installed" in out
    # pve4 reaches the controller: the ruleset the VM loads names it.
    assert "10.0.0.4" in allowlist_in_vm(on_node)
    # pve4 can run the VM: the disk is up there, and it comes up at boot without a controller.
    on_node.settle()
    assert RES in on_node.drbd_devices("pve4")
    assert any(on_node.unit_enabled("pve4", unit) == "enabled" for unit in (f"drbd@{RES}.target", "drbd.service"))
    after = checks(on_node, capsys)
    for check in ("firewall", "replicas", "drbd pve4", "satellite pve4"):
        assert all(line["status"] == "OK" for line in after[check]), after[check]
    assert on_node.run("pve1", "ha-manager", "crm-command", "migrate", f"vm:{VMID}", "pve4").returncode == 0
    for _ in range(50):
        on_node.settle()
        if on_node.vm_running_on(VMID) == "pve4":
            break
    assert on_node.vm_running_on(VMID) == "pve4"

    # Nothing left to do: a second sync changes nothing.
    snapshot = state_snapshot(on_node)
    code, out = run_sync(on_node, capsys)
    assert (code, out.strip()) == (0, "- nothing to change")
    assert state_snapshot(on_node) == snapshot

    # pve3 leaves the cluster: it drops out of the allowlist; its replica is the admin's to delete.
    on_node.delnode("pve3")
    code, out = run_sync(on_node, capsys)
    assert "10.0.0.3" not in allowlist_in_vm(on_node)
    assert "10.0.0.4" in allowlist_in_vm(on_node)
    assert code == 1 and f"linstor resource delete pve3 {RES}" in out
