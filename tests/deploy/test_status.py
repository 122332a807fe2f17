"""`linstor-appliance status` on a deployed simulated cluster: healthy, then one fault at a time.

Each fault must turn up as its own line with the monitoring exit status (0 ok, 1 warning, 2 critical), and
status must change nothing it looks at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from sim.cluster import SimCluster

from builder import cli, status
from builder.deploy import firewall
from builder.deploy import journal as journals
from builder.status import backups, checks, options
from deploy.fakeimage import FakeImage
from deploy.harness import Guest, SimDirectory, deploy_args, run_deploy, state_snapshot

pytestmark = pytest.mark.sim
VMID = 100


def run_status(cluster: SimCluster, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, dict]]:
    parsed = cli.make_parser().parse_args(["status", "--json", "--timeout", "5", *extra])
    capsys.readouterr()
    code = status.run(options.from_args(parsed, root=cluster.root("pve1")), directory=SimDirectory(cluster, "pve1"))
    report = json.loads(capsys.readouterr().out)
    assert report["exit"] == code
    return code, {f"{c['check']}|{c['text']}": c for c in report["checks"]}


def write_backup(cluster: SimCluster, node: str, age_hours: float) -> None:
    folder = cluster.root(node) / backups.folder(VMID).lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - age_hours * 3600))
    name = f"{stamp}-0123456789ab.json"
    (folder / name).write_text("{}")
    (folder / f"{name}.sha256").write_text(f"{'0' * 64}  {name}\n")


def healthy(cluster: SimCluster) -> None:
    """What a looked-after appliance has besides the deploy: a fresh backup and the cold-start helper."""
    write_backup(cluster, "pve2", 2)
    for node in cluster.nodes:
        marker = cluster.root(node) / checks.COLDSTART_MARKER.lstrip("/")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")


def find(lines: dict[str, dict], check: str) -> list[dict]:
    return [line for line in lines.values() if line["check"] == check]


@pytest.mark.sim_scenario(nodes=3, ha_delay=0.05)
def test_healthy_appliance_is_ok_and_status_changes_nothing(on_node: SimCluster, image: FakeImage,
                                                             guest: Guest, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    healthy(on_node)
    before = state_snapshot(on_node)
    code, lines = run_status(on_node, capsys)
    assert code == 0, [line for line in lines.values() if line["status"] != "OK"]
    checked = {line["check"] for line in lines.values()}
    assert {"deploy", "vm", "ha", "protection", "slot", "controller", "replicas", "firewall", "coldstart", "backup",
            "storage drbdstorage"} <= checked
    assert {f"satellite {n}" for n in on_node.nodes} | {f"drbd {n}" for n in on_node.nodes} <= checked
    assert state_snapshot(on_node) == before


def _unfinished(c: SimCluster) -> None:
    j = journals.Journal.load(journals.path_for(c.root("pve1") / "var/lib/linstor-appliance", VMID))
    assert j is not None
    j.set_status("failed", failed_step="start")


def _no_protection(c: SimCluster) -> None:
    owner = c.vm_owner(VMID)
    assert owner is not None
    assert c.run(owner, "qm", "set", str(VMID), "--protection", "0").returncode == 0


def _storage_elsewhere(c: SimCluster) -> None:
    assert c.run("pve1", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.1").returncode == 0


def _controller_down(c: SimCluster) -> None:
    c.stop_controller("10.0.0.100")


def _satellite_offline(c: SimCluster) -> None:
    assert c.run("pve3", "systemctl", "stop", "linstor-satellite").returncode == 0


def _old_backup(c: SimCluster) -> None:
    for node in c.nodes:
        for path in (c.root(node) / backups.folder(VMID).lstrip("/")).glob("*"):
            path.unlink()
    write_backup(c, "pve3", 30)


def _ancient_backup(c: SimCluster) -> None:
    _no_backup(c)
    write_backup(c, "pve3", 80)


def _no_backup(c: SimCluster) -> None:
    for node in c.nodes:
        for path in (c.root(node) / backups.folder(VMID).lstrip("/")).glob("*"):
            path.unlink()


def _coldstart_missing(c: SimCluster) -> None:
    (c.root("pve3") / checks.COLDSTART_MARKER.lstrip("/")).unlink()


def _allowlist_stale(c: SimCluster) -> None:
    from sim import guests

    root = guests.root(c.state, VMID)
    assert root is not None
    # The ruleset a deploy would have written before pve3 joined: its address is missing.
    stale = firewall.ruleset((22, 3370, 3371), firewall.allowlist(["10.0.0.1", "10.0.0.2"], []), vmid=VMID)
    assert stale != (root / "etc/nftables.conf").read_text()
    (root / "etc/nftables.conf").write_text(stale)


def _agent_down(c: SimCluster) -> None:
    from sim import guests

    guests.unregister(c.state, VMID)


FAULTS: dict[str, tuple[Callable[[SimCluster], None], int, str, str]] = {
    "unfinished deploy": (_unfinished, 2, "deploy", "--resume"),
    "no protection": (_no_protection, 1, "protection", "--protection 1"),
    "storage not repointed": (_storage_elsewhere, 2, "storage drbdstorage", "pvesm set drbdstorage"),
    "controller down": (_controller_down, 2, "controller", "linstor-controller"),
    "satellite offline": (_satellite_offline, 2, "satellite pve3", "linstor-satellite"),
    "backup older than 26 h": (_old_backup, 1, "backup", "linstor-appliance backup"),
    "backup older than 72 h": (_ancient_backup, 2, "backup", "linstor-appliance backup"),
    "no backup": (_no_backup, 2, "backup", "linstor-appliance backup"),
    "cold-start helper missing": (_coldstart_missing, 1, "coldstart", "coldstart install"),
    "allowlist stale": (_allowlist_stale, 2, "firewall", "linstor-appliance sync"),
    "guest agent down": (_agent_down, 1, "firewall", "check that qemu-guest-agent runs in the VM"),
}


@pytest.mark.sim_scenario(nodes=3, ha_delay=0.05)
@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_each_fault_is_one_line_with_its_exit_status(on_node: SimCluster, image: FakeImage, guest: Guest,
                                                     capsys: pytest.CaptureFixture[str], fault: str) -> None:
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    healthy(on_node)
    make, code, check, hint = FAULTS[fault]
    make(on_node)
    got, lines = run_status(on_node, capsys)
    assert got == code, [line for line in lines.values() if line["status"] != "OK"]
    bad = [line for line in lines.values() if line["status"] != "OK"]
    assert [line["check"] for line in bad if line["check"] == check], bad
    assert any(hint in (line["hint"] or "") for line in bad if line["check"] == check), bad


@pytest.mark.sim_scenario(nodes=3, ha_delay=0.05)
def test_a_node_down_is_reported_and_the_rest_still_checked(on_node: SimCluster, image: FakeImage, guest: Guest,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert run_deploy(on_node, deploy_args(image.compressed, redundancy=2)) == 0
    healthy(on_node)
    down = next(n for n in on_node.nodes if n not in ("pve1", on_node.vm_running_on(VMID)))
    on_node.node_offline(down)
    code, lines = run_status(on_node, capsys)
    assert code == 2
    assert [line["status"] for line in find(lines, f"satellite {down}")] == ["CRITICAL"]
    assert [(line["status"], line["text"]) for line in find(lines, f"drbd {down}")] == [("WARNING", "node is offline")]
    # The VM, the controller and the other nodes were still looked at.
    assert [line["status"] for line in find(lines, "controller")] == ["OK"]
    assert all(line["status"] == "OK" for n in on_node.nodes if n != down for line in find(lines, f"drbd {n}"))
