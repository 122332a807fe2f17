"""The simulated host controller, judged by python-linstor, and how satellites follow controllers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import linstor
import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def statuses(lin: linstor.Linstor) -> dict[str, str]:
    return {n.name: n.connection_status for n in lin.node_list_raise().nodes}


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.mark.parametrize(("knob", "version", "rest"), [
    ("1.20", "1.20.0", "1.16.0"), ("1.32", "1.32.3", "1.26.0"), ("1.33", "1.33.3", "1.27.0"),
    ("1.34", "1.34.0", "1.28.0"),
])  # fmt: skip
def test_endpoints_pass_python_linstor(make_sim_cluster, knob: str, version: str, rest: str) -> None:  # type: ignore[no-untyped-def]
    cluster: SimCluster = make_sim_cluster(nodes=3, linstor_version=knob)
    with linstor.Linstor(cluster.linstor_url(), timeout=10) as lin:
        info = lin.controller_version()
        assert (info.version, info.rest_api_version) == (version, rest)
        assert statuses(lin) == {"pve1": "ONLINE", "pve2": "ONLINE", "pve3": "ONLINE"}
        replies = lin.node_create("linstor-controller", "Controller", "10.0.0.100")
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        assert statuses(lin)["linstor-controller"] == "OFFLINE"
        groups = {g.name for g in lin.resource_group_list_raise().resource_groups}
        assert "defaultpool" in groups
        replies = lin.resource_group_spawn("defaultpool", "linstor_db", [200 * 1024])
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        replies = lin.resource_dfn_modify("linstor_db", {"Aux/appliance": "yes"}, [])
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        rd = lin.resource_dfn_list_raise(filter_by_resource_definitions=["linstor_db"]).resource_definitions[0]
        assert rd.properties["Aux/appliance"] == "yes"
        placed = {r.node_name for r in lin.resource_list_raise(filter_by_resources=["linstor_db"]).resources}
        assert len(placed) == 2
        spare = ({"pve1", "pve2", "pve3"} - placed).pop()
        replies = lin.resource_make_available(spare, "linstor_db", diskful=False)
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        assert wait_for(lambda: all("linstor_db" in cluster.drbd_devices(n) for n in cluster.nodes))
        replies = lin.resource_group_spawn("defaultpool", "later", [64 * 1024], definitions_only=True)
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        assert lin.resource_list_raise(filter_by_resources=["later"]).resources == []
        replies = lin.resource_auto_place("later", 2)
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
        assert len(lin.resource_list_raise(filter_by_resources=["later"]).resources) == 2
        root = cluster.root("pve1") / "var" / "lib" / "linstor"
        if version >= "1.18":
            replies = lin.controller_backupdb("before-move")
            assert linstor.Linstor.all_api_responses_no_error(replies), replies
            assert (root / "before-move.zip").is_file()
        if rest >= "1.28.0":
            replies = lin.controller_exportdb("export")
            assert linstor.Linstor.all_api_responses_no_error(replies), replies
            assert json.loads((root / "export.json").read_text())["format"] == "linstor-standin-db"
        else:
            with pytest.raises(linstor.LinstorError):
                lin.controller_exportdb("export")
        replies = lin.resource_dfn_delete("linstor_db")
        assert linstor.Linstor.all_api_responses_no_error(replies), replies
    assert wait_for(lambda: not any("linstor_db" in cluster.drbd_devices(n) for n in cluster.nodes))


def test_satellites_follow_the_latest_controller(sim_cluster: SimCluster, tmp_path: Path) -> None:
    """The migrated database is served identically; the old controller sees OTHER_CONTROLLER."""
    host_db = sim_cluster.root("pve1") / "var/lib/linstor/linstordb.mv.db"
    assert sim_cluster.run("pve1", "systemctl", "stop", "linstor-controller").returncode == 0
    appliance_root = tmp_path / "appliance"
    (appliance_root / "var/lib/linstor").mkdir(parents=True)
    shutil.copy2(host_db, appliance_root / "var/lib/linstor/linstordb.mv.db")
    url = sim_cluster.start_controller("10.0.0.100", appliance_root)
    with linstor.Linstor(url.replace("http://", "linstor://")) as lin:
        assert statuses(lin) == {"pve1": "ONLINE", "pve2": "ONLINE", "pve3": "ONLINE"}
        served = sorted(n.name for n in lin.node_list_raise().nodes)
    assert served == ["pve1", "pve2", "pve3"]
    assert {s["controller"] for s in sim_cluster.satellites().values()} == {"10.0.0.100:3370"}
    # Starting the host controller again takes the satellites back: the appliance loses them.
    assert sim_cluster.run("pve1", "systemctl", "start", "linstor-controller").returncode == 0
    with linstor.Linstor(url.replace("http://", "linstor://")) as lin:
        assert set(statuses(lin).values()) == {"OTHER_CONTROLLER"}
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        assert set(statuses(lin).values()) == {"ONLINE"}
    sim_cluster.stop_controller("10.0.0.100")


@pytest.mark.sim_scenario(satellite_versions={"pve3": "1.32"}, offline_nodes=("pve2",))
def test_version_mismatch_and_offline(sim_cluster: SimCluster) -> None:
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        assert statuses(lin) == {"pve1": "ONLINE", "pve2": "OFFLINE", "pve3": "VERSION_MISMATCH"}
    versions = sim_cluster.run("pve3", "dpkg-query", "-W", "-f=${Version}", "linstor-satellite")
    assert versions.stdout == "1.32.3"


def test_satellite_stop_and_node_loss(sim_cluster: SimCluster) -> None:
    assert sim_cluster.run("pve2", "systemctl", "stop", "linstor-satellite").returncode == 0
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        assert statuses(lin)["pve2"] == "OFFLINE"
    assert sim_cluster.run("pve2", "systemctl", "start", "linstor-satellite").returncode == 0
    with linstor.Linstor(sim_cluster.linstor_url()) as lin:
        assert statuses(lin)["pve2"] == "ONLINE"
    sim_cluster.node_offline("pve1")
    with pytest.raises(LookupError):
        sim_cluster.controller_url()
    with pytest.raises(linstor.LinstorNetworkError):
        linstor.MultiLinstor(["linstor://127.0.0.1:1"]).connect()
