"""The stand-in LINSTOR controller and its packages, judged by LINBIT's own client, python-linstor.

Everything runs on 127.0.0.1 with ports picked by the kernel; no test needs root or the network.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import linstor
import pytest
from fixtures.build_standin import build_debs
from fixtures.linstor_standin import client, config_tool, database_tool
from fixtures.linstor_standin.config import load_config
from fixtures.linstor_standin.errors import DatabaseError
from fixtures.linstor_standin.server import StandinController

FIXTURES = Path(__file__).parent / "fixtures"
SAME = "1.34.0"


# -- helpers ---------------------------------------------------------------------------------------------------


def write_state(path: Path, **satellites: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"satellites": satellites}))
    return path


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text())["satellites"]


def sat(version: str = SAME, online: bool = True, controller: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"version": version, "online": online}
    if controller is not None:
        entry["controller"] = controller
    return entry


def raw(ctrl: StandinController, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    """One plain HTTP request: status, content type and the decoded body."""
    conn = http.client.HTTPConnection("127.0.0.1", ctrl.port, timeout=10)
    try:
        payload = body if isinstance(body, str) or body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read().decode()
        content_type = response.getheader("Content-Type", "")
        return response.status, content_type, json.loads(data) if content_type == "application/json" else data
    finally:
        conn.close()


def assert_error_rc(body: Any, code: int) -> None:
    assert isinstance(body, list) and body, body
    ret = body[0]["ret_code"]
    assert ret < 0, "LINSTOR writes error codes as negative signed 64-bit numbers"
    assert ret & linstor.consts.MASK_ERROR == linstor.consts.MASK_ERROR
    assert ret & 0x7FFF == code & 0x7FFF


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return write_state(tmp_path / "cluster.json", pve1=sat(), pve2=sat(), pve3=sat(), pve4=sat())


@pytest.fixture
def ctrl(tmp_path: Path, state_file: Path) -> Iterator[StandinController]:
    with StandinController(tmp_path / "linstordb.mv.db", SAME, cluster_state=state_file, controller_id="vm") as c:
        yield c


@pytest.fixture
def lin(ctrl: StandinController) -> Iterator[linstor.Linstor]:
    with linstor.Linstor(ctrl.linstor_url) as connection:
        yield connection


def make_cluster(lin: linstor.Linstor, pools: tuple[str, ...] = ("pve1", "pve2", "pve3")) -> None:
    for index, name in enumerate(("pve1", "pve2", "pve3", "pve4"), start=1):
        assert lin.all_api_responses_no_error(lin.node_create(name, "Satellite", f"10.0.0.{index}"))
    for name in pools:
        assert lin.all_api_responses_no_error(lin.storage_pool_create(name, "thin", "LVM_THIN", "pve/data"))


def placements(lin: linstor.Linstor, rsc: str) -> dict[str, list[str]]:
    return {r.node_name: r.flags for r in lin.resource_list_raise(filter_by_resources=[rsc]).resources}


# -- version and connecting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "rest_api"),
    [("1.34.0", "1.28.0"), ("1.33.3", "1.27.0"), ("1.32.3", "1.26.0"), ("1.20.1", "1.16.0"), ("1.17.0", "1.12.0")],
)
def test_controller_version_as_python_linstor_sees_it(tmp_path: Path, version: str, rest_api: str) -> None:
    with StandinController(tmp_path / "linstordb.mv.db", version) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        reported = lin.controller_version()
        assert (reported.version, reported.rest_api_version) == (version, rest_api)
        assert reported.git_hash and reported.build_time
        # connect() probes the version on a separate connection (looking for an HTTPS redirect), then asks again.
        assert list(ctrl.request_log).count(("GET", "/v1/controller/version")) == 3


def test_plain_http_is_answered_never_redirected(ctrl: StandinController) -> None:
    status, content_type, body = raw(ctrl, "GET", "/v1/controller/version")
    assert (status, content_type) == (200, "application/json")
    assert set(body) == {"version", "git_hash", "build_time", "rest_api_version"}


def test_health(ctrl: StandinController) -> None:
    status, content_type, _ = raw(ctrl, "GET", "/health")
    assert (status, content_type) == (200, "text/plain")


def test_health_fails_when_the_database_cannot_be_read(ctrl: StandinController) -> None:
    ctrl.db_path.write_bytes(b"H:2,block:\x00\x01 not json")
    status, _, text = raw(ctrl, "GET", "/health")
    assert status == 500
    assert text.startswith("Services not running: ")


def test_unknown_paths_and_bad_json_are_answered_with_apicallrc(ctrl: StandinController) -> None:
    status, content_type, body = raw(ctrl, "GET", "/v1/no-such-thing")
    assert (status, content_type) == (404, "application/json")
    assert_error_rc(body, linstor.consts.FAIL_UNKNOWN_ERROR)
    status, content_type, body = raw(ctrl, "POST", "/v1/nodes", "{not json")
    assert (status, content_type) == (400, "application/json")
    assert_error_rc(body, linstor.consts.FAIL_INVLD_REQUEST)


def test_multilinstor_falls_over_from_a_refused_controller(ctrl: StandinController) -> None:
    refused = f"linstor://127.0.0.1:{free_closed_port()}"
    multi = linstor.MultiLinstor([refused, ctrl.linstor_url])
    try:
        multi.connect()
        assert multi.controller_host() == ctrl.linstor_url
        assert multi.controller_version().version == SAME
    finally:
        multi.disconnect()
    with pytest.raises(linstor.LinstorNetworkError):
        linstor.MultiLinstor([refused]).connect()


# -- nodes -----------------------------------------------------------------------------------------------------


def test_node_create_and_list(lin: linstor.Linstor) -> None:
    replies = lin.node_create("pve1", "Satellite", "10.0.0.1")
    assert lin.all_api_responses_no_error(replies)
    assert replies[0].is_success() and "pve1" in replies[0].message
    assert lin.all_api_responses_no_error(lin.node_create("linstor-controller", "Controller", "127.0.0.1"))

    nodes = {n.name: n for n in lin.node_list_raise().nodes}
    assert set(nodes) == {"pve1", "linstor-controller"}
    satellite, controller = nodes["pve1"], nodes["linstor-controller"]
    assert (satellite.type, controller.type) == ("SATELLITE", "CONTROLLER")
    assert [(n.name, n.address, n.stlt_port, n.stlt_encryption_type) for n in satellite.net_interfaces] == [
        ("default", "10.0.0.1", 3366, "PLAIN")
    ]
    assert controller.net_interfaces[0].stlt_port == 3370

    only = lin.node_list_raise(filter_by_nodes=["PVE1"]).nodes
    assert [n.name for n in only] == ["pve1"]


def test_duplicate_node_is_an_error_like_linstor(lin: linstor.Linstor, ctrl: StandinController) -> None:
    lin.node_create("pve1", "Satellite", "10.0.0.1")
    replies = lin.node_create("PVE1", "Satellite", "10.0.0.9")
    assert replies[0].is_error(linstor.consts.FAIL_EXISTS_NODE)
    # LINSTOR's REST layer answers "exists" errors with 500 (only 3xx codes are 404s); the spec lists 500.
    body = {"name": "pve1", "type": "Satellite", "net_interfaces": [{"name": "default", "address": "10.0.0.1"}]}
    status, content_type, rcs = raw(ctrl, "POST", "/v1/nodes", body)
    assert (status, content_type) == (500, "application/json")
    assert_error_rc(rcs, linstor.consts.FAIL_EXISTS_NODE)
    status, _, rcs = raw(ctrl, "POST", "/v1/nodes", {**body, "name": "pve9", "type": "Remote_Spdk"})
    assert status == 500
    assert_error_rc(rcs, linstor.consts.FAIL_INVLD_NODE_TYPE)


# -- connection status -----------------------------------------------------------------------------------------


def statuses(lin: linstor.Linstor) -> dict[str, str]:
    return {n.name: n.connection_status for n in lin.node_list_raise().nodes}


def test_connection_status_follows_the_cluster_state(tmp_path: Path) -> None:
    state = write_state(
        tmp_path / "cluster.json",
        same=sat(),
        older=sat(version="1.33.3"),
        stopped=sat(online=False),
        elsewhere=sat(controller="host-controller"),
    )
    db = tmp_path / "linstordb.mv.db"
    with StandinController(db, SAME, cluster_state=state, controller_id="vm") as ctrl:
        with linstor.Linstor(ctrl.linstor_url) as lin:
            for index, name in enumerate(("same", "older", "stopped", "unknown"), start=1):
                lin.node_create(name, "Satellite", f"10.0.0.{index}")
            lin.node_create("here", "Controller", "127.0.0.1")
            lin.node_create("there", "Controller", "192.0.2.10")
            assert statuses(lin) == {
                "same": "ONLINE",
                "older": "VERSION_MISMATCH",
                "stopped": "OFFLINE",
                "unknown": "OFFLINE",
                "here": "ONLINE",
                "there": "OFFLINE",
            }
            # The satellites it connected to now follow it; the mismatched one stays where it was.
            assert read_state(state)["same"]["controller"] == "vm"
            assert "controller" not in read_state(state)["older"]

            # The simulation changes the file while the controller runs; every request reads it again.
            write_state(state, same=sat(online=False), older=sat(version=SAME, controller="vm"))
            assert statuses(lin)["same"] == "OFFLINE"
            assert statuses(lin)["older"] == "ONLINE"


def test_a_node_created_before_its_satellite_runs_is_connected_at_the_next_start(tmp_path: Path) -> None:
    state = write_state(tmp_path / "cluster.json", elsewhere=sat(controller="host-controller"))
    db = tmp_path / "linstordb.mv.db"
    with StandinController(db, SAME, cluster_state=state, controller_id="vm") as ctrl:
        with linstor.Linstor(ctrl.linstor_url) as lin:
            lin.node_create("pve9", "Satellite", "10.0.0.9")
            assert statuses(lin)["pve9"] == "OFFLINE"
    write_state(state, elsewhere=sat(controller="host-controller"), pve9=sat())
    with StandinController(db, SAME, cluster_state=state, controller_id="vm") as ctrl:
        with linstor.Linstor(ctrl.linstor_url) as lin:
            assert statuses(lin)["pve9"] == "ONLINE"


def test_the_most_recent_controller_wins_the_satellites(tmp_path: Path) -> None:
    state = write_state(tmp_path / "cluster.json", pve1=sat(), pve2=sat())
    first = StandinController(tmp_path / "a" / "linstordb.mv.db", SAME, cluster_state=state, controller_id="host")
    second = StandinController(tmp_path / "b" / "linstordb.mv.db", SAME, cluster_state=state, controller_id="vm")
    for ctrl in (first, second):
        ctrl.db_path.parent.mkdir()
    with first:
        with linstor.Linstor(first.linstor_url) as lin:
            lin.node_create("pve1", "Satellite", "10.0.0.1")
            lin.node_create("pve2", "Satellite", "10.0.0.2")
        shutil.copy(first.db_path, second.db_path)  # the old procedure: copy the database to the new controller
        with second, linstor.Linstor(second.linstor_url) as lin_vm:
            assert statuses(lin_vm) == {"pve1": "ONLINE", "pve2": "ONLINE"}
            with linstor.Linstor(first.linstor_url) as lin_host:
                assert statuses(lin_host) == {"pve1": "OTHER_CONTROLLER", "pve2": "OTHER_CONTROLLER"}
    assert {entry["controller"] for entry in read_state(state).values()} == {"vm"}


def test_without_a_state_file_every_satellite_is_offline(tmp_path: Path) -> None:
    with StandinController(tmp_path / "linstordb.mv.db", SAME) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        lin.node_create("pve1", "Satellite", "10.0.0.1")
        assert statuses(lin) == {"pve1": "OFFLINE"}


# -- resource groups, spawning and placing ---------------------------------------------------------------------


def test_spawn_places_diskful_on_pool_nodes_and_diskless_on_the_rest(lin: linstor.Linstor, state_file: Path) -> None:
    write_state(state_file, pve1=sat(), pve2=sat(), pve3=sat(), pve4=sat(), pve5=sat(online=False))
    make_cluster(lin, pools=("pve1", "pve2", "pve3"))
    lin.node_create("pve5", "Satellite", "10.0.0.5")
    lin.storage_pool_create("pve5", "thin", "LVM_THIN", "pve/data")
    lin.node_create("linstor-controller", "Controller", "127.0.0.1")
    assert lin.all_api_responses_no_error(
        lin.resource_group_create("drbdgrp", place_count=2, storage_pool="thin", diskless_on_remaining=True)
    )
    group = lin.resource_group_list_raise(filter_by_resource_groups=["drbdgrp"]).resource_groups[0]
    assert (group.select_filter.place_count, group.select_filter.diskless_on_remaining) == (2, True)

    replies = lin.resource_group_spawn("drbdgrp", "vm-100-disk-1", ["2G"])
    assert lin.all_api_responses_no_error(replies)
    placed = placements(lin, "vm-100-disk-1")
    diskful = {node for node, flags in placed.items() if "DRBD_DISKLESS" not in flags}
    diskless = {node for node, flags in placed.items() if "DRBD_DISKLESS" in flags}
    assert len(diskful) == 2 and diskful <= {"pve1", "pve2", "pve3"}
    # Every other online satellite gets a diskless replica; offline pve5 and the Controller node get nothing.
    assert diskless == {"pve1", "pve2", "pve3", "pve4"} - diskful
    rd = lin.resource_dfn_list_raise(filter_by_resource_definitions=["vm-100-disk-1"]).resource_definitions[0]
    assert rd.resource_group_name == "drbdgrp"
    assert [vd.size for vd in rd.volume_definitions] == [2 * 1024 * 1024]
    volume = lin.resource_list_raise(filter_by_nodes=[sorted(diskful)[0]]).resources[0].volumes[0]
    assert (volume.storage_pool_name, volume.device_path) == ("thin", "/dev/drbd1000")


def test_spawn_fails_cleanly_without_enough_satellites(lin: linstor.Linstor, ctrl: StandinController) -> None:
    make_cluster(lin, pools=("pve1",))
    status, _, rcs = raw(
        ctrl,
        "POST",
        "/v1/resource-groups/DfltRscGrp/spawn",
        {"resource_definition_name": "vm-101-disk-1", "volume_sizes": [1048576]},
    )
    assert status == 500
    assert any(rc["ret_code"] & 0x7FFF == linstor.consts.FAIL_NOT_ENOUGH_NODES & 0x7FFF for rc in rcs)
    status, _, _ = raw(ctrl, "POST", "/v1/resource-groups/nope/spawn", {"resource_definition_name": "x1"})
    assert status == 404


def test_plugin_flow_definitions_only_then_make_available_then_autoplace(lin: linstor.Linstor) -> None:
    """What linstor-proxmox 8.x does with `preferlocal yes` (linstor.md §2.7)."""
    make_cluster(lin)
    lin.resource_group_create("drbdgrp", place_count=2)
    props = {"DrbdOptions/Net/allow-two-primaries": "yes", "DrbdOptions/ExactSize": "no"}
    replies = lin._rest_request(
        "SpawnRscDfn",
        "POST",
        "/v1/resource-groups/drbdgrp/spawn",
        {
            "resource_definition_name": "pm-12cf742a",
            "volume_sizes": [4096],
            "definitions_only": True,
            "resource_definition_props": props,
        },
    )
    assert lin.all_api_responses_no_error(replies)
    assert any(r.is_info() and "no resources deployed" in r.message for r in replies)
    assert placements(lin, "pm-12cf742a") == {}

    assert lin.all_api_responses_no_error(lin.resource_make_available("pve3", "pm-12cf742a", diskful=True))
    assert placements(lin, "pm-12cf742a") == {"pve3": []}
    assert lin.all_api_responses_no_error(
        lin._rest_request("AutoPlaceRsc", "POST", "/v1/resource-definitions/pm-12cf742a/autoplace", {})
    )
    placed = placements(lin, "pm-12cf742a")
    assert len(placed) == 2 and "pve3" in placed and all(flags == [] for flags in placed.values())
    rd = lin.resource_dfn_list_raise(filter_by_resource_definitions=["pm-12cf742a"]).resource_definitions[0]
    assert props.items() <= rd.properties.items()


def test_make_available(lin: linstor.Linstor) -> None:
    make_cluster(lin, pools=("pve1", "pve2"))
    lin.node_create("linstor-controller", "Controller", "127.0.0.1")
    lin.resource_group_spawn("DfltRscGrp", "vm-100-disk-1", [1024 * 1024], definitions_only=True)
    # No replica holds the data yet, so even a diskless request gets a disk.
    assert lin.all_api_responses_no_error(lin.resource_make_available("pve1", "vm-100-disk-1"))
    assert lin.all_api_responses_no_error(lin.resource_make_available("pve4", "vm-100-disk-1"))
    assert placements(lin, "vm-100-disk-1") == {"pve1": [], "pve4": ["DISKLESS", "DRBD_DISKLESS"]}
    # Asking again is fine; asking for a disk where there is no pool is not.
    assert lin.all_api_responses_no_error(lin.resource_make_available("pve1", "vm-100-disk-1", diskful=True))
    assert lin.resource_make_available("pve4", "vm-100-disk-1", diskful=True)[0].is_error()
    # A Controller node cannot hold DRBD resources (linstor-server#184).
    assert lin.resource_make_available("linstor-controller", "vm-100-disk-1")[0].is_error()
    assert lin.resource_make_available("pve1", "no-such-rsc")[0].is_error(linstor.consts.FAIL_NOT_FOUND_RSC_DFN)


def test_resource_definition_properties_and_delete(lin: linstor.Linstor, ctrl: StandinController) -> None:
    make_cluster(lin)
    lin.resource_group_spawn("DfltRscGrp", "vm-100-disk-1", [1024], definitions_only=True)
    assert lin.all_api_responses_no_error(lin.resource_dfn_modify("vm-100-disk-1", {"Aux/pm/vmid": "100", "A/b": "c"}))
    assert lin.resource_dfn_props_list("vm-100-disk-1") == {"Aux/pm/vmid": "100", "A/b": "c"}
    lin.resource_dfn_modify("vm-100-disk-1", {}, delete_props=["A/b"])
    assert lin.resource_dfn_props_list("vm-100-disk-1") == {"Aux/pm/vmid": "100"}
    status, _, single = raw(ctrl, "GET", "/v1/resource-definitions/VM-100-DISK-1")
    assert status == 200 and single["name"] == "vm-100-disk-1"
    assert lin.all_api_responses_no_error(lin.resource_dfn_delete("vm-100-disk-1"))
    assert lin.resource_dfn_list_raise().resource_definitions == []
    assert raw(ctrl, "GET", "/v1/resource-definitions/vm-100-disk-1")[0] == 404


def test_resources_of_a_definition(lin: linstor.Linstor, ctrl: StandinController) -> None:
    make_cluster(lin)
    lin.resource_group_spawn("DfltRscGrp", "vm-100-disk-1", [1024])
    status, _, resources = raw(ctrl, "GET", "/v1/resource-definitions/vm-100-disk-1/resources")
    assert status == 200 and len(resources) == 2
    assert {r["name"] for r in resources} == {"vm-100-disk-1"}
    assert all(r["state"] == {"in_use": False} for r in resources)


# -- database --------------------------------------------------------------------------------------------------


def test_a_new_cluster_is_created_in_a_missing_or_empty_file(tmp_path: Path) -> None:
    db = tmp_path / "linstordb.mv.db"
    db.touch()
    with StandinController(db, SAME) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        groups = lin.resource_group_list_raise().resource_groups
        assert [(g.name, g.select_filter.place_count) for g in groups] == [("DfltRscGrp", 2)]
    document = json.loads(db.read_text())
    assert (document["format"], document["version"], document["linstor_version"]) == ("linstor-standin-db", 1, SAME)
    assert document["properties"]["Cluster/LocalID"]


def test_the_database_survives_a_restart(tmp_path: Path, state_file: Path) -> None:
    db = tmp_path / "linstordb.mv.db"
    with StandinController(db, "1.33.3") as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        lin.node_create("pve1", "Satellite", "10.0.0.1")
        lin.resource_group_create("drbdgrp", place_count=3)
        lin.resource_group_spawn("drbdgrp", "vm-100-disk-1", [1024], definitions_only=True)
        lin.resource_dfn_modify("vm-100-disk-1", {"Aux/pm/vmid": "100"})
    # Upgrading the controller keeps the data (and migrates the file to the new release).
    with StandinController(db, SAME, cluster_state=state_file) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        assert [n.name for n in lin.node_list_raise().nodes] == ["pve1"]
        assert {g.name for g in lin.resource_group_list_raise().resource_groups} == {"DfltRscGrp", "drbdgrp"}
        assert lin.resource_dfn_props_list("vm-100-disk-1") == {"Aux/pm/vmid": "100"}
    assert json.loads(db.read_text())["linstor_version"] == SAME


def test_incompatible_databases_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "linstordb.mv.db"
    db.write_bytes(b"H:2,block:4,blockSize:1000,chunk:2c\x00\x00")  # what a real H2 file starts like
    with pytest.raises(DatabaseError, match="not a linstor-standin-db"):
        StandinController(db, SAME).start()
    StandinController(db.with_name("new.mv.db"), SAME).start().stop()
    with pytest.raises(DatabaseError, match="newer than this controller"):
        StandinController(db.with_name("new.mv.db"), "1.33.3").start()


# -- versions of the database: migrate older, refuse newer, injected failures ----------------------------------


def older_cluster(tmp_path: Path, version: str) -> Path:
    """A database written by LINSTOR `version`: four nodes, two placed resource definitions, one property."""
    db = tmp_path / "linstordb.mv.db"
    states = write_state(tmp_path / f"cluster-{version}.json", **{f"pve{i}": sat(version) for i in range(1, 5)})
    with StandinController(db, version, cluster_state=states) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        make_cluster(lin)
        assert lin.all_api_responses_no_error(lin.resource_group_create("drbdgrp", place_count=2))
        for rd in ("vm-100-disk-1", "vm-101-disk-1"):
            assert lin.all_api_responses_no_error(lin.resource_group_spawn("drbdgrp", rd, ["1G"]))
        lin.resource_dfn_modify("vm-101-disk-1", {"Aux/pm/vmid": "101"})
    return db


def contents(db: dict[str, Any]) -> dict[str, Any]:
    """What a user keeps across an upgrade: nodes, groups, definitions, resources, properties (no version)."""
    return {key: db[key] for key in ("nodes", "resource_groups", "resource_definitions", "resources", "properties")}


def fail_migration(directory: Path, how: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "standin-fail-migration").write_text(f"{how}\n")
    return directory


@pytest.mark.parametrize(("older", "applied"), [("1.33.3", 1), ("1.21.0", 13)])
def test_an_older_database_is_migrated_at_start_and_keeps_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, older: str, applied: int
) -> None:
    db = older_cluster(tmp_path, older)
    before = json.loads(db.read_text())
    assert before["linstor_version"] == older and before["schema"][-1] == f"V1_{older.split('.')[1]}_0"
    with caplog.at_level("INFO", logger="linstor_standin"), StandinController(db, SAME) as ctrl:
        with linstor.Linstor(ctrl.linstor_url) as lin:
            assert lin.controller_version().version == SAME
            assert sorted(n.name for n in lin.node_list_raise().nodes) == ["pve1", "pve2", "pve3", "pve4"]
            assert lin.resource_dfn_props_list("vm-101-disk-1") == {"Aux/pm/vmid": "101"}
    assert re.search(rf"Applied {applied} migrations in \d+ms", caplog.text)
    after = json.loads(db.read_text())
    assert after["linstor_version"] == SAME
    assert after["schema"] == [f"V1_{minor}_0" for minor in range(1, 35)]
    assert contents(after) == contents(before)
    # Opening it again with the same release has nothing left to migrate.
    caplog.clear()
    with caplog.at_level("INFO", logger="linstor_standin"), StandinController(db, SAME):
        pass
    assert "Applied" not in caplog.text


@pytest.mark.parametrize(("written_by", "opened_by", "reason"), [
    ("1.34.0", "1.33.3", "newer than this controller"),
    ("1.20.1", "1.34.0", "upgrade through an intermediate release first"),
])  # fmt: skip
def test_a_database_the_release_cannot_open_is_refused_and_left_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, written_by: str, opened_by: str, reason: str
) -> None:
    db = older_cluster(tmp_path, written_by)
    before = db.read_bytes()
    with caplog.at_level("INFO", logger="linstor_standin"), pytest.raises(DatabaseError) as refused:
        StandinController(db, opened_by).start()
    assert str(refused.value).startswith("Database initialization error: ")
    assert reason in str(refused.value)
    assert "Database initialization error" in caplog.text
    assert db.read_bytes() == before


def test_a_database_holding_migrations_the_release_does_not_know_is_refused(tmp_path: Path) -> None:
    db = older_cluster(tmp_path, "1.33.3")
    document = json.loads(db.read_text())
    document["schema"].append("V1_33_1")  # same release, a migration from a later build
    db.write_text(json.dumps(document))
    before = db.read_bytes()
    with pytest.raises(DatabaseError, match="Database initialization error: .* does not know: V1_33_1"):
        StandinController(db, "1.33.3").start()
    assert db.read_bytes() == before


def test_the_packaged_controller_exits_non_zero_on_a_newer_database(tmp_path: Path) -> None:
    db = older_cluster(tmp_path, SAME)
    before = db.read_bytes()
    (tmp_path / "linstor.toml").write_text(
        f'[db]\nconnection_url = "jdbc:h2:{tmp_path}/linstordb"\n[http]\nlisten_addr = "127.0.0.1"\nport = 0\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "linstor_standin.server", f"--config-directory={tmp_path}", "--standin-version=1.33.3"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(FIXTURES)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Database initialization error" in result.stderr
    assert db.read_bytes() == before


def test_an_injected_migration_failure_leaves_a_marked_half_migrated_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = older_cluster(tmp_path, "1.32.3")
    before = json.loads(db.read_text())
    config = fail_migration(tmp_path / "etc", "fail")
    with caplog.at_level("INFO", logger="linstor_standin"), pytest.raises(DatabaseError) as failed:
        StandinController(db, SAME, config_directory=config).start()
    assert str(failed.value).startswith("Database initialization error: migration V1_34_0 failed")
    assert "Applied" not in caplog.text
    after = json.loads(db.read_text())
    assert after != before and after["migration_failed"] == "V1_34_0"
    assert after["schema"] == [*before["schema"], "V1_33_0"]
    # Nothing opens it again, neither the old release nor the new one without the injection.
    for version in ("1.32.3", SAME):
        with pytest.raises(DatabaseError, match="Database initialization error: .*half-migrated"):
            StandinController(db, version).start()


def test_an_injected_loss_drops_one_resource_definition_and_its_resources(tmp_path: Path) -> None:
    db = older_cluster(tmp_path, "1.33.3")
    before = json.loads(db.read_text())
    config = fail_migration(tmp_path / "etc", "lose")
    with StandinController(db, SAME, config_directory=config) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        assert [rd.name for rd in lin.resource_dfn_list_raise().resource_definitions] == ["vm-101-disk-1"]
        assert {r.name for r in lin.resource_list_raise().resources} == {"vm-101-disk-1"}
    after = json.loads(db.read_text())
    assert after["linstor_version"] == SAME
    assert {r["name"] for r in before["resources"]} == {"vm-100-disk-1", "vm-101-disk-1"}
    assert contents(after)["nodes"] == contents(before)["nodes"]


def test_an_injection_does_nothing_when_nothing_is_migrated(tmp_path: Path) -> None:
    db = older_cluster(tmp_path, SAME)
    before = db.read_bytes()
    config = fail_migration(tmp_path / "etc", "fail")
    with StandinController(db, SAME, config_directory=config) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        assert len(lin.resource_dfn_list_raise().resource_definitions) == 2
    assert db.read_bytes() == before
    (config / "standin-fail-migration").write_text("maybe\n")
    old = tmp_path / "old"
    old.mkdir()
    with pytest.raises(DatabaseError, match="write 'fail' or 'lose'"):
        StandinController(older_cluster(old, "1.33.3"), SAME, config_directory=config).start()


def test_a_failed_request_leaves_no_trace(lin: linstor.Linstor, ctrl: StandinController) -> None:
    make_cluster(lin, pools=())
    before = ctrl.db_path.read_text()
    replies = lin.resource_make_available("pve1", "nothing-here")
    assert replies[0].is_error()
    assert ctrl.db_path.read_text() == before


def test_backupdb_on_1_33_writes_a_zip_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "linstordb.mv.db"
    with StandinController(db, "1.33.3") as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        lin.node_create("pve1", "Satellite", "10.0.0.1")
        assert lin.all_api_responses_no_error(lin.controller_backupdb("before-upgrade"))
        with pytest.raises(linstor.LinstorError, match="Export DB is not support"):
            lin.controller_exportdb("nope")
        assert raw(ctrl, "POST", "/v1/controller/database/export", {"backup_name": "x"})[0] == 404
    with zipfile.ZipFile(tmp_path / "before-upgrade.zip") as archive:
        assert archive.namelist() == ["linstordb.mv.db"]
        assert [n["name"] for n in json.loads(archive.read("linstordb.mv.db"))["nodes"]] == ["pve1"]


def test_exportdb_on_1_34_writes_json_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "linstordb.mv.db"
    with StandinController(db, SAME) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        lin.node_create("pve1", "Satellite", "10.0.0.1")
        assert lin.all_api_responses_no_error(lin.controller_exportdb("export"))
        assert lin.all_api_responses_no_error(lin.controller_backupdb("still-there"))  # deprecated, not removed
    assert [n["name"] for n in json.loads((tmp_path / "export.json").read_text())["nodes"]] == ["pve1"]
    assert (tmp_path / "still-there.zip").is_file()


def test_backupdb_does_not_exist_before_1_18(tmp_path: Path) -> None:
    with StandinController(tmp_path / "linstordb.mv.db", "1.17.0") as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        with pytest.raises(linstor.LinstorError, match="Backup DB is not support"):
            lin.controller_backupdb("nope")
        status, content_type, body = raw(ctrl, "POST", "/v1/controller/backup/db", {"backup_name": "x"})
        assert (status, content_type) == (404, "application/json")
        assert_error_rc(body, linstor.consts.FAIL_UNKNOWN_ERROR)
    assert not (tmp_path / "x.zip").exists()


# -- tools: linstor-config, linstor-database, linstor ------------------------------------------------------------


def test_linstor_config_writes_the_toml_the_controller_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert config_tool.main(["create-db-file", "--dbtype=h2", "/var/lib/linstor/linstordb"]) == 0
    toml = tomllib.loads(capsys.readouterr().out)
    assert toml["db"]["connection_url"] == "jdbc:h2:/var/lib/linstor/linstordb"
    (tmp_path / "linstor.toml").write_text(f'[db]\nconnection_url = "jdbc:h2:{tmp_path}/linstordb"\n')
    config = load_config(tmp_path)
    assert (config.db_path, config.listen_addr, config.port) == (tmp_path / "linstordb.mv.db", "::", 3370)
    assert config_tool.main(["create-db-file", "--dbtype=postgresql", "x"]) == 1


def test_linstor_database_export_and_import(tmp_path: Path) -> None:
    (tmp_path / "linstor.toml").write_text(f'[db]\nconnection_url = "jdbc:h2:{tmp_path}/linstordb"\n')
    with StandinController(tmp_path / "linstordb.mv.db", SAME) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        lin.node_create("pve1", "Satellite", "10.0.0.1")
    assert database_tool.main(["export-db", "-c", str(tmp_path), str(tmp_path / "dump.json")]) == 0
    (tmp_path / "linstordb.mv.db").unlink()
    assert database_tool.main(["import-db", "--config-directory", str(tmp_path), str(tmp_path / "dump.json")]) == 0
    with StandinController(tmp_path / "linstordb.mv.db", SAME) as ctrl, linstor.Linstor(ctrl.linstor_url) as lin:
        assert [n.name for n in lin.node_list_raise().nodes] == ["pve1"]
    (tmp_path / "junk.json").write_text("{}")
    assert database_tool.main(["import-db", "-c", str(tmp_path), str(tmp_path / "junk.json")]) == 1


def test_linstor_client(ctrl: StandinController, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{ctrl.port}"
    assert client.main(["--controllers", address, "controller", "version"]) == 0
    assert capsys.readouterr().out.strip() == f"{SAME}; GIT-hash: linstor-standin"
    assert client.main(["--controllers", address, "node", "create", "pve1", "10.0.0.1"]) == 0
    assert (
        client.main(["--controllers", address, "node", "create", "--node-type", "controller", "vm", "127.0.0.1"]) == 0
    )
    assert client.main(["--controllers", address, "node", "create", "pve1", "10.0.0.1"]) == client.EXIT_API_ERROR
    assert "ERROR:" in capsys.readouterr().out
    assert client.main(["--controllers", address, "n", "l"]) == 0
    table = capsys.readouterr().out
    assert "| pve1" in table and "10.0.0.1:3366 (PLAIN)" in table and "Online" in table
    assert "| vm " in table and "CONTROLLER" in table
    refused = f"127.0.0.1:{free_closed_port()}"
    assert client.main(["--controllers", refused, "node", "list"]) == client.EXIT_CONNECTION_ERROR


# -- the packages ----------------------------------------------------------------------------------------------


def deb_info(deb: Path) -> dict[str, str]:
    text = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(" ") and fields:
            last = next(reversed(fields))
            fields[last] += "\n" + line.strip()
        elif ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value
    return fields


def deb_contents(deb: Path) -> dict[str, str]:
    """Path -> permission string, from ``dpkg-deb -c``."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    entries = {}
    for line in listing.splitlines():
        fields = line.split()
        entries[fields[5].removeprefix(".").rstrip("/") or "/"] = fields[0]
    return entries


def extract(deb: Path, root: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def debs_134(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("debs-134")
    return {deb.name.split("_")[0]: deb for deb in build_debs(out, "1.34.0")}


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@needs_dpkg
def test_packages_are_named_and_versioned_like_linbits(debs_134: dict[str, Path]) -> None:
    assert set(debs_134) == {"linstor-common", "linstor-controller", "python-linstor", "linstor-client"}
    infos = {name: deb_info(deb) for name, deb in debs_134.items()}
    assert infos["linstor-common"]["Version"] == "1.34.0-1~standin1"
    assert infos["linstor-common"]["Architecture"] == "all"
    assert infos["linstor-common"]["Depends"] == "java-runtime-headless (>= 21), python3"
    assert infos["linstor-controller"]["Depends"] == "linstor-common (= 1.34.0-1~standin1), tar"
    assert infos["linstor-controller"]["Pre-Depends"] == "java-runtime-headless (>= 21)"
    assert infos["python-linstor"]["Version"] == f"{linstor_version()}-1~standin1"
    assert "python-linstor" in infos["linstor-client"]["Depends"]
    for name, info in infos.items():
        assert "TEST STAND-IN" in info["Description"], name
        assert "never" in info["Description"] and "production" in info["Description"], name


def linstor_version() -> str:
    return importlib.metadata.version("python-linstor")


@needs_dpkg
def test_controller_package_layout_and_unit(debs_134: dict[str, Path], tmp_path: Path) -> None:
    contents = deb_contents(debs_134["linstor-controller"])
    for script in ("Controller", "linstor-config", "linstor-database"):
        assert contents[f"/usr/share/linstor-server/bin/{script}"] == "-rwxr-xr-x"
    assert contents["/etc/linstor"].startswith("d")
    assert contents["/var/lib/linstor"] == "drwxr-x---"
    assert contents["/var/log/linstor-controller"] == "drwxr-x---"
    unit = extract(debs_134["linstor-controller"], tmp_path) / "lib/systemd/system/linstor-controller.service"
    lines = set(unit.read_text().splitlines())
    assert {
        "Type=notify",
        "DynamicUser=true",
        "User=linstor-controller",
        "Group=linstor",
        "ConfigurationDirectory=linstor",
        "ReadWritePaths=/var/lib/linstor /var/log/linstor-controller",
        "ExecStartPre=+/usr/bin/chown -hPR linstor-controller:root /var/lib/linstor /var/log/linstor-controller",
        "TimeoutStartSec=240s",
        "RestartForceExitStatus=70",
        "WantedBy=multi-user.target",
    } <= lines
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert exec_start.startswith(
        "ExecStart=/usr/share/linstor-server/bin/Controller --logs=/var/log/linstor-controller"
    )
    postinst = subprocess.run(
        ["dpkg-deb", "-I", str(debs_134["linstor-controller"]), "postinst"], check=True, capture_output=True, text=True
    ).stdout
    assert '/linstor-config" create-db-file --dbtype=h2 "$DB"' in postinst
    assert "systemctl" not in postinst and "deb-systemd-invoke" not in postinst


@needs_dpkg
def test_common_and_client_package_contents(debs_134: dict[str, Path]) -> None:
    common = deb_contents(debs_134["linstor-common"])
    assert "/usr/share/linstor-server/lib/linstor_standin/server.py" in common
    assert "/usr/share/linstor-server/lib/linstor_standin/VERSION" in common
    assert "/usr/share/linstor-server/lib/linstor_standin/client.py" not in common
    python_linstor = deb_contents(debs_134["python-linstor"])
    assert "/usr/lib/python3/dist-packages/linstor/linstorapi.py" in python_linstor
    assert deb_contents(debs_134["linstor-client"])["/usr/bin/linstor"] == "-rwxr-xr-x"


@needs_dpkg
def test_packages_for_1_33_run_as_root_on_the_default_jre(tmp_path: Path) -> None:
    debs = {deb.name.split("_")[0]: deb for deb in build_debs(tmp_path / "out", "1.33.3")}
    assert deb_info(debs["linstor-common"])["Depends"] == "default-jre-headless (>= 1.11), python3"
    assert deb_info(debs["linstor-controller"])["Version"] == "1.33.3-1~standin1"
    unit = extract(debs["linstor-controller"], tmp_path / "root") / "lib/systemd/system/linstor-controller.service"
    lines = set(unit.read_text().splitlines())
    assert "User=root" in lines and "Type=notify" in lines
    assert not any(line.startswith("DynamicUser") for line in lines)


@needs_dpkg
def test_packaged_controller_runs_on_the_standard_library_and_notifies_systemd(
    debs_134: dict[str, Path], tmp_path: Path
) -> None:
    root = extract(debs_134["linstor-common"], tmp_path / "root")
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "linstor.toml").write_text(
        f'[db]\nconnection_url = "jdbc:h2:{tmp_path}/linstordb"\n[http]\nlisten_addr = "127.0.0.1"\nport = 0\n'
    )
    notify_name = f"linstor-standin-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify_sock:
        notify_sock.bind("\0" + notify_name)
        notify_sock.settimeout(20)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(root / "usr/share/linstor-server/lib"),
            "NOTIFY_SOCKET": "@" + notify_name,
        }
        # -S: no site-packages, so the packaged controller can only use the standard library;
        # -W error: not even a warning (such as runpy's about a module imported twice) is acceptable.
        process = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-W",
                "error",
                "-m",
                "linstor_standin.server",
                f"--logs={tmp_path}",
                f"--config-directory={config_dir}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            message = notify_sock.recv(4096).decode()
            assert message.startswith("READY=1\n")
            url = message.split("listening on ", 1)[1].strip()
            with linstor.Linstor(url.replace("http://", "linstor://")) as lin:
                assert lin.controller_version().version == "1.34.0"  # read from the packaged VERSION file
            process.send_signal(signal.SIGTERM)
            assert notify_sock.recv(4096).decode() == "STOPPING=1"
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert json.loads((tmp_path / "linstordb.mv.db").read_text())["format"] == "linstor-standin-db"
    assert (tmp_path / "linstor-Controller.log").is_file()


@needs_dpkg
@pytest.mark.skipif(shutil.which("bwrap") is None or os.geteuid() != 0, reason="needs bubblewrap as root")
def test_postinst_writes_the_config_and_backs_up_the_database(debs_134: dict[str, Path], tmp_path: Path) -> None:
    # The postinst works on absolute paths, so it runs in a root of its own: the two extracted packages,
    # with the host's /usr (for sh, coreutils and python3) bound in read-only. Nothing outside tmp_path
    # is touched: every mount point bubblewrap needs is created inside that root.
    root = extract(debs_134["linstor-common"], tmp_path / "root")
    extract(debs_134["linstor-controller"], root)
    shutil.rmtree(root / "lib")  # the unit file; /lib must become the usual link to usr/lib
    subprocess.run(["dpkg-deb", "--control", str(debs_134["linstor-controller"]), str(root / "control")], check=True)
    varlib = root / "var/lib/linstor"
    (varlib / "linstordb.mv.db").write_text("old database")
    command = [
        "bwrap", "--bind", str(root), "/",
        "--ro-bind", "/usr/bin", "/usr/bin",
        "--ro-bind", "/usr/lib", "/usr/lib",
        "--ro-bind-try", "/usr/lib64", "/usr/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--proc", "/proc",
        "--dev", "/dev",
        "/control/postinst", "configure",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 and "bwrap:" in result.stderr:
        pytest.skip(f"bubblewrap cannot run here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((root / "etc/linstor/linstor.toml").read_text())
    assert config["db"]["connection_url"] == "jdbc:h2:/var/lib/linstor/linstordb"
    backups = sorted(p.name for p in varlib.glob("linstordb.mv.db-*.bak"))
    assert len(backups) == 1 and backups[0][len("linstordb.mv.db-") :][:16].count("-") == 2
    assert (varlib / backups[0]).read_text() == "old database"
