"""make dist: one file that a Proxmox VE node's own python3 runs, without pip, a venv or the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sim.cluster import SimCluster

from deploy.fakeimage import FakeImage
from deploy.harness import deploy_args, state_snapshot

pytestmark = pytest.mark.sim

PROJECT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What 'make dist' builds (the same tool and interpreter; without make's venv refresh)."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip("no system python3")
    target = tmp_path_factory.mktemp("dist") / "linstor-appliance.pyz"
    subprocess.run([sys.executable, str(PROJECT / "tools/make-dist"), str(target)], check=True, capture_output=True)
    return target


def system_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # -S: not even the system's site-packages; everything must come from the archive.
    return subprocess.run([SYSTEM_PYTHON, "-S", *args], capture_output=True, text=True, cwd="/",
                          env=env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})  # fmt: skip


def test_the_archive_is_reproducible_and_carries_its_dependencies(pyz: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyz"
    subprocess.run([sys.executable, str(PROJECT / "tools/make-dist"), str(again)], check=True, capture_output=True)
    assert again.read_bytes() == pyz.read_bytes()
    listing = system_python("-m", "zipfile", "-l", str(pyz)).stdout
    for name in ("__main__.py", "builder/deploy/runner.py", "builder/_data/netplan/config.yaml.j2",
                 "builder/_data/image/templates/deploy/nftables.conf.j2", "jinja2/environment.py",
                 "markupsafe/_native.py", "linstor/linstorapi.py", "licenses/python-linstor/COPYING"):  # fmt: skip
        assert name in listing, name
    assert not [line for line in listing.splitlines() if line.split(" ")[0].endswith(".so")]


def test_help_runs_on_the_system_python(pyz: Path) -> None:
    top = system_python(str(pyz), "--help")
    assert top.returncode == 0 and "deploy" in top.stdout, top.stderr
    deploy = system_python(str(pyz), "deploy", "--help")
    assert deploy.returncode == 0 and "--dry-run" in deploy.stdout and "--rollback" in deploy.stdout


@pytest.mark.sim_scenario(nodes=3, linstor_version="1.33")
def test_dry_run_on_a_node(pyz: Path, sim_cluster: SimCluster, image: FakeImage) -> None:
    """As the README says: copy the file to the node, run it with python3 as root. Through ssh, the tool sees the
    simulated node's files at their real paths; the controller is found through linstor.toml."""
    toml = sim_cluster.root("pve1") / "etc/linstor/linstor.toml"
    toml.write_text(toml.read_text() + f"\n[http]\n  port = {sim_cluster.controller_url().rsplit(':', 1)[1]}\n")
    before = state_snapshot(sim_cluster)
    env = sim_cluster.env("pve1")
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    command = " ".join([SYSTEM_PYTHON, "-S", str(pyz), "deploy", *deploy_args(image.compressed, "--dry-run")])
    result = subprocess.run(["ssh", "root@pve1", command], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "[pve1] pvesm set drbdstorage --controller 10.0.0.100" in result.stdout
    assert result.stderr.splitlines()[-1] == "dry run: nothing was changed"
    assert state_snapshot(sim_cluster) == before
