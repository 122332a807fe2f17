"""storage.cfg parse and write rules (proxmox.md section 3; checklist 14-17)."""

from __future__ import annotations

import pytest

from .cluster import SimCluster
from .storage import parse_storage_cfg

pytestmark = pytest.mark.sim

MIXED = """\
# maintained by hand
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

zfspool: local-zfs
\tpool rpool/data
\tsparse
\tcontent images,rootdir

nfs: isos
\texport /srv/isos
\tpath /mnt/pve/isos
\tserver 10.0.0.50
\tcontent iso

drbd: drbdstorage
   resourcegroup defaultpool
   # comment inside a section does not end it
   content images,rootdir
   controller 10.0.0.1

drbd: drbdfast
\tresourcegroup fastpool
\tcontroller 10.0.0.1
\tcontent images
"""


def test_blank_line_ends_a_section_and_comments_do_not() -> None:
    parsed = parse_storage_cfg("8.3.0", MIXED)
    assert parsed.warnings == []
    assert parsed.ordered_ids() == ["local", "local-zfs", "isos", "drbdstorage", "drbdfast"]
    assert parsed.ids["drbdstorage"]["controller"] == "10.0.0.1"
    assert parsed.ids["drbdstorage"]["content"] == {"images": 1, "rootdir": 1}
    assert parsed.ids["drbdstorage"]["shared"] == 1  # drbd is in @SHARED_STORAGE
    assert parsed.ids["local-zfs"]["sparse"] == 1  # a bare boolean key means 1


def test_header_without_blank_line_is_ignored_and_merged_into_previous_section() -> None:
    """Checklist 17."""
    raw = (
        "drbd: first\n\tresourcegroup rg1\n\tcontroller 10.0.0.1\n"
        "drbd: second\n\tresourcegroup rg2\n\tcontent images\n"
    )
    parsed = parse_storage_cfg("8.3.0", raw, "/etc/pve/storage.cfg")
    assert parsed.warnings == [
        "file /etc/pve/storage.cfg line 4 (section 'first') - ignore config line: drbd: second",
        "file /etc/pve/storage.cfg line 5 (section 'first') - unable to parse value of 'resourcegroup': "
        "duplicate attribute",
    ]
    assert "second" not in parsed.ids
    assert parsed.ids["first"]["resourcegroup"] == "rg1"
    assert parsed.ids["first"]["content"] == {"images": 1}


def test_indented_line_after_blank_line_without_header() -> None:
    raw = "drbd: a\n\tresourcegroup rg\n\n\tcontroller 10.0.0.9\n"
    parsed = parse_storage_cfg("8.3.0", raw, "/etc/pve/storage.cfg")
    assert parsed.warnings == ["file /etc/pve/storage.cfg line 4 - ignore config line: \tcontroller 10.0.0.9"]
    assert "controller" not in parsed.ids["a"]


def test_unknown_key_warns_on_every_read() -> None:
    """Checklist 15: controllervm with plugin >= 6.0 (linstor.md section 2.4)."""
    raw = "drbd: drbdstorage\n\tresourcegroup rg\n\tcontrollervm 100\n"
    for version in ("7.0.1", "8.3.0"):
        parsed = parse_storage_cfg(version, raw, "/etc/pve/storage.cfg")
        assert parsed.warnings == [
            "file /etc/pve/storage.cfg line 3 (section 'drbdstorage') - unable to parse value of 'controllervm': "
            "unexpected property 'controllervm'"
        ]
        assert "controllervm" not in parsed.ids["drbdstorage"]
    assert parse_storage_cfg("5.2.2", raw).warnings == []
    assert parse_storage_cfg("5.2.2", raw).ids["drbdstorage"]["controllervm"] == "100"


def test_missing_required_option_skips_section() -> None:
    parsed = parse_storage_cfg("8.3.0", "drbd: broken\n\tcontroller 10.0.0.1\n", "/etc/pve/storage.cfg")
    assert parsed.warnings == [
        "file /etc/pve/storage.cfg line 2 (skip section 'broken'): missing value for required option 'resourcegroup'"
    ]
    assert "broken" not in parsed.ids


def test_unsupported_type_skips_section() -> None:
    parsed = parse_storage_cfg("8.3.0", "glusterfs: g\n\tserver x\n", "/etc/pve/storage.cfg")
    assert parsed.warnings == ["file /etc/pve/storage.cfg line 1 (skip section 'g'): unsupported type 'glusterfs'"]


def test_option_tables_per_plugin_version() -> None:
    """linstor.md section 2.2: options a plugin release does not know are unexpected properties."""
    raw = "drbd: d\n\tresourcegroup rg\n\texactsize yes\n\tallowtwoprimaries no\n\tclusterlocktimeout 5\n"
    assert len(parse_storage_cfg("8.3.0", raw).warnings) == 0
    assert [w.split("'")[-2] for w in parse_storage_cfg("7.0.1", raw).warnings] == [
        "exactsize", "allowtwoprimaries", "clusterlocktimeout",
    ]  # fmt: skip


def test_pvesm_set_rewrites_canonically(sim_cluster: SimCluster) -> None:
    """Checklist 16: tabs, required first, sorted, comments and unknown keys lost, local added on top."""
    (sim_cluster.state.pve / "storage.cfg").write_text(
        "# my comment\nnfs: isos\n\texport /srv/isos\n\tpath /mnt/pve/isos\n\tserver 10.0.0.50\n\tcontent iso\n\n"
        "drbd: drbdstorage\n   controller 10.0.0.1\n   content images,rootdir\n   resourcegroup defaultpool\n"
        "   controllervm 100\n"
    )
    result = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.1,10.0.0.2")
    assert result.returncode == 0, result.stderr
    assert "unexpected property 'controllervm'" in result.stderr
    text = sim_cluster.storage_cfg_text()
    blocks = text.split("\n\n")
    assert blocks[0].startswith("dir: local\n\tpath /var/lib/vz\n")
    assert "\tprune-backups keep-all=1" in blocks[0]
    assert blocks[1] == "nfs: isos\n\texport /srv/isos\n\tpath /mnt/pve/isos\n\tserver 10.0.0.50\n\tcontent iso"
    drbd_lines = blocks[2].split("\n")
    assert drbd_lines[0] == "drbd: drbdstorage"
    assert drbd_lines[1] == "\tresourcegroup defaultpool"
    assert drbd_lines[2] in ("\tcontent images,rootdir", "\tcontent rootdir,images")
    assert drbd_lines[3] == "\tcontroller 10.0.0.1,10.0.0.2"
    assert "#" not in text and "controllervm" not in text
    assert text.endswith("\n\n")
    again = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.1")
    assert again.returncode == 0 and again.stderr == ""


def test_content_order_is_unstable_across_rewrites(sim_cluster: SimCluster) -> None:
    seen = set()
    for _ in range(6):
        assert sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controller", "10.0.0.1").returncode == 0
        section = sim_cluster.storage_cfg_text().split("drbd: drbdstorage")[1]
        line = next(x for x in section.split("\n") if "content" in x)
        seen.add(line)
    assert seen == {"\tcontent images,rootdir", "\tcontent rootdir,images"}


@pytest.mark.sim_scenario(plugin_version="8.3.0")
def test_pvesm_set_controllervm_is_unknown_with_plugin_8(sim_cluster: SimCluster) -> None:
    """Checklist 14."""
    before = sim_cluster.storage_cfg_text()
    result = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controllervm", "100")
    assert result.returncode == 255
    assert result.stderr.splitlines()[:2] == ["Unknown option: controllervm", "400 unable to parse option"]
    assert sim_cluster.storage_cfg_text() == before


@pytest.mark.sim_scenario(plugin_version="5.2.2")
def test_pvesm_set_controllervm_works_with_plugin_5(sim_cluster: SimCluster) -> None:
    result = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--controllervm", "100")
    assert result.returncode == 0, result.stderr
    assert "\tcontrollervm 100\n" in sim_cluster.storage_cfg_text()


def test_pvesm_set_errors(sim_cluster: SimCluster) -> None:
    other_type = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--path", "/x")
    assert (other_type.returncode, other_type.stderr) == (255, "update storage failed: unexpected property 'path'\n")
    required = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--delete", "resourcegroup")
    assert required.stderr == "update storage failed: unable to delete required option 'resourcegroup'\n"
    missing = sim_cluster.run("pve1", "pvesm", "set", "nosuch", "--disable", "1")
    assert missing.stderr == "update storage failed: storage 'nosuch' does not exist\n"
    bad = sim_cluster.run("pve1", "pvesm", "set", "drbdstorage", "--statuscache", "9999")
    assert bad.returncode == 255
    assert bad.stderr.startswith(
        "400 Parameter verification failed.\nstatuscache: value must have a maximum value of 7200"
    )
