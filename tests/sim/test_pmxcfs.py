"""/etc/pve semantics: read-only without quorum, size limit, locks (proxmox.md section 4; checklist 23)."""

from __future__ import annotations

import os

import pytest

from . import pmxcfs
from .cluster import SimCluster

pytestmark = pytest.mark.sim


@pytest.mark.sim_scenario(cfs_lock_timeout=1.0)
def test_no_quorum_makes_etc_pve_read_only(sim_cluster: SimCluster) -> None:
    sim_cluster.lose_quorum("pve3")
    pve = sim_cluster.root("pve3") / "etc" / "pve"
    assert (pve / "storage.cfg").stat().st_mode & 0o777 == 0o444
    assert pve.stat().st_mode & 0o777 == 0o555
    with pytest.raises(PermissionError):
        (pve / "storage.cfg").write_text("x")
    with pytest.raises(PermissionError):
        (pve / "new.cfg").write_text("x")
    created = sim_cluster.run("pve3", "qm", "create", "300")
    assert (created.returncode, created.stderr) == (255, "cluster not ready - no quorum?\n")
    storage = sim_cluster.run("pve3", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.2")
    assert storage.returncode == 255
    assert storage.stderr.splitlines()[-1] == (
        "update storage failed: cfs-lock 'file-storage_cfg' error: got lock request timeout"
    )
    assert "trying to acquire cfs lock 'file-storage_cfg' ..." in storage.stderr
    assert "quorum No quorum on node 'pve3'!" in sim_cluster.run("pve3", "ha-manager", "status").stdout
    # The quorate majority still writes; pve3 sees the old state until quorum returns.
    assert sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.2").returncode == 0
    assert "controller 10.0.0.2" not in (pve / "storage.cfg").read_text()
    sim_cluster.regain_quorum("pve3")
    assert "controller 10.0.0.2" in (pve / "storage.cfg").read_text()
    assert sim_cluster.run("pve3", "qm", "create", "300").returncode == 0


def test_quorum_follows_majority(make_sim_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster = make_sim_cluster(nodes=3, cfs_lock_timeout=0.5)
    cluster.node_offline("pve3")
    assert "Quorate:          Yes" in cluster.run("pve1", "pvecm", "status").stdout
    cluster.node_offline("pve2")
    status = cluster.run("pve1", "pvecm", "status").stdout
    assert "Quorate:          No" in status and "Activity blocked" in status
    assert cluster.run("pve1", "qm", "create", "101").stderr == "cluster not ready - no quorum?\n"


def test_file_size_limit_and_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(pmxcfs.PmxcfsError, match="File too large"):
        pmxcfs.set_contents(tmp_path, "big.cfg", "x" * (pmxcfs.MAX_FILE_SIZE + 1))
    pmxcfs.set_contents(tmp_path, "ok.cfg", "fine\n")
    assert [p.name for p in tmp_path.iterdir()] == ["ok.cfg"]
    (tmp_path / "priv" / "lock").mkdir(parents=True)
    with pmxcfs.cfs_lock(tmp_path, "file-storage_cfg", now=0.0):
        assert (tmp_path / "priv" / "lock" / "file-storage_cfg").is_dir()
        with pytest.raises(pmxcfs.PmxcfsError, match="cfs-lock 'file-storage_cfg' error: got lock request timeout"):
            with pmxcfs.cfs_lock(tmp_path, "file-storage_cfg", now=0.0, timeout=0.2):
                pass
    assert not (tmp_path / "priv" / "lock" / "file-storage_cfg").exists()
    stale = tmp_path / "priv" / "lock" / "domain-ha"
    stale.mkdir()
    os.utime(stale, (0, 0))
    with pmxcfs.cfs_lock(tmp_path, "domain-ha", now=1000.0, timeout=0.2):
        pass  # older than 120 s: expired by pmxcfs
