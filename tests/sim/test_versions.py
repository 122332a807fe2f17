"""Version probes: dpkg-query, pveversion, pvecm; and the scenario's storage.cfg knob."""

from __future__ import annotations

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim

SEVERAL = """\
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

# replicated storage for VMs
drbd: drbdstorage
\tresourcegroup defaultpool
\tcontroller 10.0.0.1
\tcontent images,rootdir

lvmthin: local-lvm
\tthinpool data
\tvgname pve
\tcontent rootdir,images

drbd: drbdbulk
\tresourcegroup bulk
\tcontroller 10.0.0.1
\tcontent images

pbs: backup
\tdatastore store1
\tserver 10.0.0.60
\tcontent backup
\tusername backup@pbs
"""


@pytest.mark.sim_scenario(plugin_version="5.2.2", linstor_version="1.20", pve_version="8.3.4")
def test_package_versions(sim_cluster: SimCluster) -> None:
    run = sim_cluster.run
    assert run("pve1", "dpkg-query", "-W", "-f=${Version}", "linstor-proxmox").stdout == "5.2.2"
    assert run("pve2", "dpkg-query", "-W", "linstor-satellite").stdout == "linstor-satellite\t1.20.0\n"
    assert run("pve1", "dpkg-query", "-W", "-f=${Version}\\n", "linstor-controller").stdout == "1.20.0\n"
    missing = run("pve2", "dpkg-query", "-W", "-f=${Version}", "linstor-controller")
    assert (missing.returncode, missing.stderr) == (1, "dpkg-query: no packages found matching linstor-controller\n")
    assert run("pve1", "pveversion").stdout == "pve-manager/8.3.4/2a5fa54a8503f96d (running kernel: 6.8.12-9-pve)\n"
    assert run("pve1", "pvesm", "apiinfo").stdout == "APIVER 10\nAPIAGE 1\n"


def test_pvecm_status(sim_cluster: SimCluster) -> None:
    out = sim_cluster.run("pve2", "pvecm", "status").stdout
    assert "Quorate:          Yes" in out
    assert "Expected votes:   3" in out
    assert "0x00000002          1 10.0.0.2 (local)" in out


@pytest.mark.sim_scenario(storage_cfg=SEVERAL, nodes=2)
def test_several_drbd_entries(sim_cluster: SimCluster) -> None:
    parsed = sim_cluster.storage_cfg()
    assert [sid for sid, cfg in parsed.items() if cfg["type"] == "drbd"] == ["drbdstorage", "drbdbulk"]
    assert sim_cluster.storage_cfg_warnings() == []
    status = sim_cluster.run("pve1", "pvesm", "status").stdout.splitlines()
    assert [line.split()[0] for line in status[1:]] == ["local", "drbdstorage", "local-lvm", "drbdbulk", "backup"]
