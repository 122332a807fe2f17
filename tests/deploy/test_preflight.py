"""Every preflight problem on its own: a clear line in the report, a non-zero exit, and nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import linstor
import pytest
from sim.cluster import SimCluster, remove_tree
from sim.scenario import Scenario

from builder.deploy import firewall
from deploy.fakeimage import FakeImage
from deploy.harness import PROJECT, deploy_args, expect_failure, sim_env, state_snapshot

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    """One cluster for the cases that only differ in what the command line asks for."""
    directory = tmp_path_factory.mktemp("preflight")
    cluster = SimCluster(Scenario(nodes=3, plugin_version="8.3.0", linstor_version="1.33"), directory / "sim")
    cluster.start()
    yield cluster
    cluster.close()
    remove_tree(directory)


@pytest.fixture
def here(shared: SimCluster, monkeypatch: pytest.MonkeyPatch) -> SimCluster:
    sim_env(shared, "pve1", monkeypatch)
    return shared


@pytest.fixture
def image133(fake_images: Callable[..., FakeImage]) -> FakeImage:
    return fake_images("1.33.3")


def refused(cluster: SimCluster, args: list[str], capsys: pytest.CaptureFixture[str], node: str = "pve1") -> str:
    """Run the deploy, expect preflight to stop it without a change; return the problem lines."""
    before = state_snapshot(cluster)
    message = expect_failure(cluster, args, node)
    assert state_snapshot(cluster) == before
    report = capsys.readouterr().err
    problems = [line.strip().removeprefix("problem: ") for line in report.splitlines() if "problem: " in line]
    assert message.startswith(f"preflight found {len(problems)} problem"), (message, report)
    return "\n".join(problems)


CASES = {
    "storage-missing": (["--storage", "nosuch"], "storage 'nosuch' does not exist in /etc/pve/storage.cfg; use a drbd "
                        "storage (drbd storages here: drbdstorage)"),
    "storage-not-drbd": (["--storage", "local-lvm"], "storage 'local-lvm' is of type lvmthin, not drbd"),
    "controllervm-on-8.3.0": (["--strategy", "controllervm"], "--strategy controllervm needs the plugin's "
                              "controllervm option, which linstor-proxmox 8.3.0 no longer has (removed in 6.0.0)"),
    "bridge": (["--bridge", "vmbr9"], "bridge vmbr9 does not exist on pve1, pve2, pve3"),
    "ip-of-a-node": (["--ip", "10.0.0.2/24"], "10.0.0.2 is the address of node pve2"),
    "redundancy": (["--redundancy", "4"], "--redundancy 4 needs 4 LINSTOR satellites, the cluster has 3"),
    "disk-too-small": (["--disk-size", "8M"], "the image needs 0.05 GiB but the VM disk has 0.01 GiB"),
    "name-of-a-node": (["--name", "pve2"], "LINSTOR already has a node named pve2 (satellite at 10.0.0.2)"),
    "backup-storage": (["--backup-storage", "local-lvm"], "storage 'local-lvm' does not hold backups"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_option_problems(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                         case: str) -> None:  # fmt: skip
    extra, expected = CASES[case]
    args = [a for a in deploy_args(image133.compressed) if a not in ("--ip", "10.0.0.100/24") or "--ip" not in extra]
    problems = refused(here, args + extra, capsys)
    assert expected in problems
    assert len(problems.splitlines()) == 1, problems


def test_not_root(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "linstor-appliance deploy must run as root" in refused(here, deploy_args(image133.raw), capsys)


def test_not_a_proxmox_node(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    bin_dir = tmp_path / "bin"
    shutil.copytree(here.state.bin, bin_dir)
    (bin_dir / "pveversion").unlink()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
    assert "this is not a Proxmox VE node" in refused(here, deploy_args(image133.raw), capsys)


def test_a_firewall_nft_refuses_stops_the_deploy_before_anything_changes(
        here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The check step 7 makes on the rendered ruleset runs in preflight too, while the host controller still runs."""
    overlapping = ("table inet linstor_appliance {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                   "\t\telements = { 10.0.0.0/24, 10.0.0.1 }\n\t}\n}\n")  # fmt: skip
    monkeypatch.setattr(firewall, "ruleset", lambda *args, **kwargs: overlapping)
    problems = refused(here, deploy_args(image133.compressed), capsys)
    assert "nft rejects the firewall for the VM" in problems and "conflicting intervals" in problems, problems
    assert here.unit_active("pve1", "linstor-controller") == "active"


def test_image_does_not_match_its_checksum(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:  # fmt: skip
    copy = tmp_path / "image"
    shutil.copytree(image133.directory, copy)
    with (copy / "linstor-controller.raw").open("r+b") as handle:
        handle.seek(2 * 2**20)
        handle.write(b"bitrot")
    problems = refused(here, deploy_args(copy / "linstor-controller.raw"), capsys)
    assert "linstor-controller.raw does not match its SHA256SUMS; copy the image again" in problems


def test_image_of_another_linstor_version(here: SimCluster, fake_images: Callable[..., FakeImage],
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    problems = refused(here, deploy_args(fake_images("1.34.0").compressed), capsys)
    assert ("LINSTOR versions differ: the controller on this node 1.33.3, the satellite on pve1 1.33.3, the satellite "
            "on pve2 1.33.3, the satellite on pve3 1.33.3, the image 1.34.0") in problems


def test_something_answers_on_the_address(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:  # fmt: skip
    here.start_controller("10.0.0.100", tmp_path / "other")
    try:
        problems = refused(here, deploy_args(image133.raw), capsys)
    finally:
        here.stop_controller("10.0.0.100")
    assert problems == "something already answers on 10.0.0.100; give the VM an unused address"


def test_ssh_to_a_node_fails(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f'#!/bin/sh\ncase "$*" in *root@10.0.0.3*) echo "root@10.0.0.3: Permission denied '
                                 f'(publickey)." >&2; exit 255;; esac\nexec {here.state.bin}/ssh "$@"\n')  # fmt: skip
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    problems = refused(here, deploy_args(image133.raw), capsys)
    assert problems == ("cannot run commands on pve3 over SSH: root@10.0.0.3: Permission denied (publickey).; make "
                        "'ssh -o BatchMode=yes root@10.0.0.3 true' work from this node")


def test_controller_not_on_this_node(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    sim_env(here, "pve2", monkeypatch)
    problems = refused(here, deploy_args(image133.raw), capsys, node="pve2")
    assert "/etc/linstor/linstor.toml does not exist on this node; run the deploy on the node that runs the LINSTOR " \
           "controller" in problems


def test_database_is_not_h2(here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str]) -> None:
    toml = here.root("pve1") / "etc/linstor/linstor.toml"
    original = toml.read_text()
    toml.write_text('[db]\n  connection_url = "jdbc:postgresql://localhost/linstor"\n')
    try:
        problems = refused(here, deploy_args(image133.raw), capsys)
    finally:
        toml.write_text(original)
    assert "the controller uses a postgresql database (jdbc:postgresql://localhost/linstor)" in problems


def test_linstor_resource_name_taken(here: SimCluster, image133: FakeImage,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with linstor.Linstor(here.linstor_url()) as lin:
        lin.resource_group_spawn("defaultpool", "linstor-appliance-101", [4096], definitions_only=True)
    problems = refused(here, deploy_args(image133.raw, vmid=101), capsys)
    assert "a LINSTOR resource linstor-appliance-101 already exists and was not made by this deploy" in problems


def test_a_failing_cluster_status_read_does_not_hide_other_problems(
        here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:  # fmt: skip
    """pvesh cannot read the cluster status (pmxcfs is not answering), and the backup storage does not exist:
    both are reported."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pvesh").write_text('#!/bin/sh\ncase "$*" in *"get /cluster/status"*) echo "ipcc_send_rec[1] failed: '
                                   'Connection refused" >&2; exit 111;; esac\n'
                                   f'exec {here.state.bin}/pvesh "$@"\n')  # fmt: skip
    (bin_dir / "pvesh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    problems = refused(here, deploy_args(image133.raw, "--backup-storage", "nosuch"), capsys)
    assert "'pvesh get /cluster/status --output-format json' failed with exit code 111: ipcc_send_rec[1] failed: " \
           "Connection refused" in problems, problems
    assert "backup storage 'nosuch' does not exist" in problems, problems


def test_a_failing_http_settings_read_does_not_hide_other_problems(
        here: SimCluster, image133: FakeImage, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    toml = here.root("pve1") / "etc/linstor/linstor.toml"
    original = toml.read_text()
    toml.write_text(original + "\n[http\n")
    try:
        problems = refused(here, deploy_args(image133.raw, "--backup-storage", "nosuch"), capsys)
    finally:
        toml.write_text(original)
    assert "linstor.toml is not valid TOML" in problems, problems
    assert "backup storage 'nosuch' does not exist" in problems, problems


# Problems that need a cluster of their own.
SCENARIOS = {
    "not-quorate": ({"no_quorum_nodes": ("pve1",)}, "the Proxmox VE cluster is not quorate"),
    "controller-down": ({"controller_down": True}, "the LINSTOR controller does not run on this node (pve1)"),
    "vmid-taken": ({"existing_vms": {100: "pve2"}}, "VMID 100 is taken: VM 100 (vm100) on pve2"),
    "plugin-5.2.2-on-pve-8.4": ({"plugin_version": "5.2.2"}, "linstor-proxmox 5.2.2 supports storage APIVER up to 10, "
                                "this Proxmox VE has 11, so the plugin cannot load"),
    "satellite-version": ({"satellite_versions": {"pve3": "1.33.2"}}, "LINSTOR versions differ"),
}


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_cluster_problems(make_sim_cluster: Callable[..., SimCluster], image133: FakeImage,
                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                          case: str) -> None:  # fmt: skip
    knobs, expected = SCENARIOS[case]
    cluster = make_sim_cluster(nodes=3, linstor_version="1.33", cfs_lock_timeout=1.0, **knobs)
    sim_env(cluster, "pve1", monkeypatch)
    assert expected in refused(cluster, deploy_args(image133.raw), capsys)


def test_every_problem_is_reported(make_sim_cluster: Callable[..., SimCluster], image133: FakeImage,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A node powered off, a satellite stopped, a bad bridge: all of it in one report."""
    cluster = make_sim_cluster(nodes=4, linstor_version="1.33", offline_nodes=("pve4",))
    assert cluster.run("pve3", "systemctl", "stop", "linstor-satellite").returncode == 0
    sim_env(cluster, "pve1", monkeypatch)
    problems = refused(cluster, deploy_args(image133.raw, "--bridge", "vmbr1"), capsys)
    assert problems.splitlines() == [
        "node pve4 is offline; start it: every node must bring the VM disk up at boot",
        "LINSTOR satellites not online: pve3 (offline), pve4 (offline); start them ('systemctl start "
        "linstor-satellite') and check 'linstor node list'",
        "bridge vmbr1 does not exist on pve1, pve2, pve3; HA may start the VM on any node: create the bridge "
        "everywhere or choose another --bridge",
    ]


def test_plugin_not_installed(make_sim_cluster: Callable[..., SimCluster], image133: FakeImage,
                              capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cluster = make_sim_cluster(nodes=1, linstor_version="1.33")
    packages = json.loads((cluster.state.sim / "packages.json").read_text())
    del packages["pve1"]["linstor-proxmox"]
    (cluster.state.sim / "packages.json").write_text(json.dumps(packages))
    sim_env(cluster, "pve1", monkeypatch)
    problems = refused(cluster, deploy_args(image133.raw, redundancy=1), capsys)
    assert "the linstor-proxmox plugin is not installed; install linstor-proxmox from LINBIT" in problems


def test_command_line_exit_code_and_report(shared: SimCluster, image133: FakeImage) -> None:
    """As the admin sees it: the problems, one error line, exit code 1."""
    env = shared.env("pve1")
    env["PYTHONPATH"] = str(PROJECT)
    toml = shared.root("pve1") / "etc/linstor/linstor.toml"
    original = toml.read_text()
    toml.write_text(original + f"\n[http]\n  port = {shared.controller_url().rsplit(':', 1)[1]}\n")
    try:
        args = deploy_args(image133.raw, "--bridge", "vmbr9")
        command = " ".join([sys.executable, "-m", "builder", "deploy", *args])
        result = subprocess.run(["ssh", "root@pve1", command], env=env, capture_output=True, text=True, timeout=120)
    finally:
        toml.write_text(original)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert "  problem: bridge vmbr9 does not exist on pve1, pve2, pve3; HA may start the VM on any node: create " \
           "the bridge everywhere or choose another --bridge" in lines
    assert lines[-1] == "error: preflight found 1 problem (listed above); nothing was changed; fix them and run the " \
                        "deploy again"
    assert not (shared.root("pve1") / "var/lib/linstor-appliance").exists()
