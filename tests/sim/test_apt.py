"""The fake apt on the nodes, satellites restarting onto what it installs, and controllers migrating databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import linstor
import pytest

from .cluster import SimCluster
from .controller import ControllerError

pytestmark = pytest.mark.sim

LINSTOR = ("linstor-common", "linstor-controller", "linstor-satellite")
BOTH = {name: ["1.33.3", "1.34.0"] for name in LINSTOR}
UPGRADE = ("linstor-common=1.34.0", "linstor-satellite=1.34.0")


def statuses(url: str) -> dict[str, str]:
    with linstor.Linstor(url.replace("http://", "linstor://"), timeout=10) as lin:
        return {n.name: n.connection_status for n in lin.node_list_raise().nodes}


def installed(cluster: SimCluster, node: str, package: str) -> str:
    return cluster.run(node, "dpkg-query", "-W", "-f=${Version}", package).stdout


def appliance_root(cluster: SimCluster, directory: Path) -> Path:
    """A copy of the host controller's database under a root of its own, as an appliance disk holds it."""
    (directory / "var/lib/linstor").mkdir(parents=True)
    shutil.copy2(cluster.root("pve1") / "var/lib/linstor/linstordb.mv.db", directory / "var/lib/linstor")
    return directory


@pytest.mark.sim_scenario(nodes=2, apt_versions=BOTH)
def test_madison_and_policy_show_the_repository(sim_cluster: SimCluster) -> None:
    madison = sim_cluster.run("pve2", "apt-cache", "madison", "linstor-satellite")
    assert madison.returncode == 0
    assert madison.stdout == (
        "linstor-satellite |     1.34.0 | https://packages.linbit.com/public proxmox-8/drbd-9 amd64 Packages\n"
        "linstor-satellite |     1.33.3 | https://packages.linbit.com/public proxmox-8/drbd-9 amd64 Packages\n"
    )
    policy = sim_cluster.run("pve2", "apt-cache", "policy", "linstor-satellite").stdout.splitlines()
    assert policy[:3] == ["linstor-satellite:", "  Installed: 1.33.3", "  Candidate: 1.34.0"]
    assert " *** 1.33.3 500" in policy
    policy = sim_cluster.run("pve2", "apt-cache", "policy", "linstor-controller").stdout.splitlines()
    assert policy[1:3] == ["  Installed: (none)", "  Candidate: 1.34.0"]


@pytest.mark.sim_scenario(nodes=2)
def test_by_default_the_repository_holds_only_the_clusters_version(sim_cluster: SimCluster) -> None:
    madison = sim_cluster.run("pve2", "apt-cache", "madison", "linstor-common").stdout
    assert [line.split("|")[1].strip() for line in madison.splitlines()] == ["1.33.3"]
    result = sim_cluster.run("pve2", "apt-get", "install", "-y", *UPGRADE)
    assert (result.returncode, result.stderr) == (100, "E: Version '1.34.0' for 'linstor-common' was not found\n")
    assert installed(sim_cluster, "pve2", "linstor-satellite") == "1.33.3"
    assert sim_cluster.run("pve2", "apt-get", "update").returncode == 0


@pytest.mark.sim_scenario(nodes=3, apt_versions=BOTH)
def test_an_upgraded_satellite_restarts_onto_the_new_version(sim_cluster: SimCluster, tmp_path: Path) -> None:
    assert sim_cluster.satellite_version("pve2") == "1.33.3"
    result = sim_cluster.run("pve2", "apt-get", "install", "-y", "-q", "--only-upgrade", *UPGRADE)
    assert result.returncode == 0, result.stderr
    assert installed(sim_cluster, "pve2", "linstor-satellite") == "1.34.0"
    assert installed(sim_cluster, "pve2", "linstor-common") == "1.34.0"
    assert sim_cluster.satellite_version("pve2") == "1.34.0"
    # The host controller (1.33.3) now refuses pve2; a 1.34.0 controller takes it (and only it).
    assert statuses(sim_cluster.controller_url()) == {"pve1": "ONLINE", "pve2": "VERSION_MISMATCH", "pve3": "ONLINE"}
    url = sim_cluster.start_controller("10.0.0.100", appliance_root(sim_cluster, tmp_path / "vm"), "1.34.0")
    assert statuses(url) == {"pve1": "VERSION_MISMATCH", "pve2": "ONLINE", "pve3": "VERSION_MISMATCH"}


@pytest.mark.sim_scenario(nodes=2, apt_versions=BOTH)
def test_simulate_changes_nothing(sim_cluster: SimCluster) -> None:
    result = sim_cluster.run("pve2", "apt-get", "install", "-s", *UPGRADE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Inst linstor-satellite [1.33.3] (1.34.0 LINBIT:proxmox-8 [amd64])" in lines
    assert "Inst linstor-common [1.33.3] (1.34.0 LINBIT:proxmox-8 [amd64])" in lines
    assert installed(sim_cluster, "pve2", "linstor-satellite") == "1.33.3"
    assert sim_cluster.satellite_version("pve2") == "1.33.3"


@pytest.mark.sim_scenario(nodes=2, apt_versions={**BOTH, "linstor-common": ["1.33.3"]})
def test_the_satellite_cannot_leave_linstor_common_behind(sim_cluster: SimCluster) -> None:
    for argv in (["linstor-satellite=1.34.0"], ["--dry-run", "linstor-satellite=1.34.0"]):
        result = sim_cluster.run("pve2", "apt-get", "install", "-y", *argv)
        assert result.returncode == 100
        assert (
            " linstor-satellite : Depends: linstor-common (= 1.34.0) but 1.33.3 is to be installed\n" in result.stderr
        )
        assert result.stderr.endswith("E: Unable to correct problems, you have held broken packages.\n")
    assert installed(sim_cluster, "pve2", "linstor-satellite") == "1.33.3"


@pytest.mark.sim_scenario(nodes=2, apt_versions=BOTH)
def test_apt_pulls_linstor_common_along_when_its_candidate_fits(sim_cluster: SimCluster) -> None:
    result = sim_cluster.run("pve2", "apt-get", "install", "-y", "linstor-satellite=1.34.0")
    assert result.returncode == 0, result.stderr
    assert installed(sim_cluster, "pve2", "linstor-common") == "1.34.0"
    mixed = sim_cluster.run("pve2", "apt-get", "install", "-y", "--allow-downgrades", "linstor-common=1.33.3",
                            "linstor-satellite=1.34.0")  # fmt: skip
    assert mixed.returncode == 100 and "unmet dependencies" in mixed.stderr


@pytest.mark.sim_scenario(nodes=2, linstor_version="1.34", apt_versions=BOTH)
def test_a_downgrade_needs_allow_downgrades(sim_cluster: SimCluster) -> None:
    back = ("linstor-common=1.33.3", "linstor-satellite=1.33.3")
    refused = sim_cluster.run("pve2", "apt-get", "install", "-y", *back)
    assert (refused.returncode, refused.stderr) == (
        100,
        "E: Packages were downgraded and -y was used without --allow-downgrades.\n",
    )
    assert sim_cluster.satellite_version("pve2") == "1.34.0"
    done = sim_cluster.run("pve2", "apt-get", "install", "-y", "--allow-downgrades", *back)
    assert done.returncode == 0, done.stderr
    assert sim_cluster.satellite_version("pve2") == "1.33.3"


@pytest.mark.sim_scenario(nodes=3, apt_versions=BOTH, apt_versions_by_node={"pve3": {"linstor-satellite": ["1.33.3"]}})
def test_a_node_can_have_its_own_repository(sim_cluster: SimCluster) -> None:
    assert sim_cluster.run("pve2", "apt-get", "install", "-y", "-s", *UPGRADE).returncode == 0
    result = sim_cluster.run("pve3", "apt-get", "install", "-y", "-s", *UPGRADE)
    assert (result.returncode, result.stderr) == (100, "E: Version '1.34.0' for 'linstor-satellite' was not found\n")
    skipped = sim_cluster.run("pve2", "apt-get", "install", "-y", "--only-upgrade", "linstor-controller=1.34.0")
    assert skipped.returncode == 0
    assert "Skipping linstor-controller, it is not installed and only upgrades are requested." in skipped.stdout
    assert installed(sim_cluster, "pve2", "linstor-controller") == ""


@pytest.mark.sim_scenario(nodes=2, apt_versions=BOTH)
def test_upgrading_the_host_controller_migrates_its_database(sim_cluster: SimCluster) -> None:
    upgrade = ("linstor-common=1.34.0", "linstor-controller=1.34.0", "linstor-satellite=1.34.0")
    result = sim_cluster.run("pve1", "apt-get", "install", "-y", *upgrade)
    assert result.returncode == 0, result.stderr
    with linstor.Linstor(sim_cluster.linstor_url(), timeout=10) as lin:
        assert lin.controller_version().version == "1.34.0"
    db = sim_cluster.controller_db()
    assert (db["linstor_version"], db["schema"][-1]) == ("1.34.0", "V1_34_0")
    assert statuses(sim_cluster.controller_url()) == {"pve1": "ONLINE", "pve2": "VERSION_MISMATCH"}


def test_a_controller_refuses_a_newer_database(sim_cluster: SimCluster, tmp_path: Path) -> None:
    root = appliance_root(sim_cluster, tmp_path / "vm")
    sim_cluster.start_controller("10.0.0.100", root, "1.34.0")
    sim_cluster.stop_controller("10.0.0.100")
    before = (root / "var/lib/linstor/linstordb.mv.db").read_bytes()
    with pytest.raises(ControllerError, match="Database initialization error: .*newer than this controller"):
        sim_cluster.start_controller("10.0.0.100", root, "1.33.3")
    assert (root / "var/lib/linstor/linstordb.mv.db").read_bytes() == before


def test_an_injected_failure_fails_the_controller_start_in_the_simulation(
    sim_cluster: SimCluster, tmp_path: Path
) -> None:
    root = appliance_root(sim_cluster, tmp_path / "vm")
    (root / "etc/linstor").mkdir(parents=True)
    (root / "etc/linstor/standin-fail-migration").write_text("fail\n")
    with pytest.raises(ControllerError, match="Database initialization error: migration V1_34_0 failed"):
        sim_cluster.start_controller("10.0.0.100", root, "1.34.0")
    db = json.loads((root / "var/lib/linstor/linstordb.mv.db").read_text())
    assert (db["linstor_version"], db["migration_failed"]) == ("1.33.3", "V1_34_0")
    assert "10.0.0.100" not in sim_cluster.controller_endpoints()
