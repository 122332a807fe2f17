"""The product's SectionConfig reader (builder/sectionconfig.py) on proxmox.md section 3's cases.

Each case is also read by the simulation's own model of PVE (tests/sim/storage.py, checked against
pve-common and pve-storage): for the sections and keys the tool reads, both must end up with the same.
"""

from __future__ import annotations

import pytest
from sim.storage import parse_storage_cfg

from builder import sectionconfig
from builder.coldstart import pveconf
from builder.deploy import storagecfg

FILE = "/etc/pve/storage.cfg"
MIXED = """\
# maintained by hand
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

zfspool: local-zfs
\tpool rpool/data
\tsparse
\tcontent images,rootdir

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
CASES = {
    "mixed": MIXED,
    "header without blank line": ("drbd: first\n\tresourcegroup rg1\n\tcontroller 10.0.0.1\n"
                                  "drbd: second\n\tresourcegroup rg2\n\tcontent images\n"),  # fmt: skip
    "indented line after a blank line": "drbd: a\n\tresourcegroup rg\n\n\tcontroller 10.0.0.9\n",
    "unknown key": "drbd: drbdstorage\n\tresourcegroup rg\n\tcontrollervm 100\n\tcontroller 10.0.0.1\n",
    "missing required option": "drbd: broken\n\tcontroller 10.0.0.1\n\ndir: d\n\tpath /srv\n",
    "key of another type": "drbd: d\n\tresourcegroup rg\n\tpath /srv\n\tcontroller 10.0.0.5\n",
    "bad boolean": "drbd: d\n\tresourcegroup rg\n\tdisable maybe\n\ndrbd: e\n\tresourcegroup rg\n\tdisable yes\n",
    "duplicate key": "drbd: d\n\tresourcegroup rg\n\tcontroller 10.0.0.1\n\tcontroller 10.0.0.2\n",
}  # fmt: skip
READ = ("controller", "resourcegroup", "disable", "path", "apica", "apicrt", "apikey")


@pytest.mark.parametrize("text", CASES.values(), ids=list(CASES))
def test_the_reader_keeps_what_pve_keeps(text: str) -> None:
    ours = sectionconfig.parse_storage(text)
    pve = parse_storage_cfg("8.3.0", text, FILE)
    kept = {sid: {k: str(v) for k, v in cfg.items() if k in READ} for sid, cfg in pve.ids.items()
            if cfg["type"] in ("drbd", "dir") and (sid != "local" or "local" in ours.sections)}  # fmt: skip
    assert {sid: {k: v for k, v in s.values.items() if k in READ} for sid, s in ours.sections.items()
            if s.type in ("drbd", "dir")} == kept  # fmt: skip
    # The same warnings, except about content types (not checked here: the tool only looks for 'snippets').
    assert ours.warnings == [w for w in pve.warnings if "content type" not in w]


def test_header_after_properties_is_no_header() -> None:
    parsed = sectionconfig.parse_storage(CASES["header without blank line"])
    assert list(parsed.sections) == ["first"]
    assert parsed.sections["first"].values == {"resourcegroup": "rg1", "controller": "10.0.0.1", "content": "images"}
    assert parsed.warnings == [
        f"file {FILE} line 4 (section 'first') - ignore config line: drbd: second",
        f"file {FILE} line 5 (section 'first') - unable to parse value of 'resourcegroup': duplicate attribute",
    ]


def test_dropped_keys_and_sections() -> None:
    assert "controllervm" not in sectionconfig.parse_storage(CASES["unknown key"]).sections["drbdstorage"].values
    assert list(sectionconfig.parse_storage(CASES["missing required option"]).sections) == ["d"]
    assert sectionconfig.parse_storage(CASES["duplicate key"]).sections["d"].values["controller"] == "10.0.0.1"
    assert "path" not in sectionconfig.parse_storage(CASES["key of another type"]).sections["d"].values
    flags = sectionconfig.parse_storage(CASES["bad boolean"]).sections
    assert "disable" not in flags["d"].values and flags["e"].values["disable"] == "1"


def test_every_reader_of_the_tool_uses_it() -> None:
    """The deploy and the cold-start runtime see the same storages: a disabled one, a dropped key."""
    text = CASES["bad boolean"] + "\ndrbd: f\n\tresourcegroup rg\n\tcontroller 10.0.0.7\n\tcontroller 10.0.0.8\n"
    assert sorted(pveconf.drbd_only(pveconf.storages_in(text))) == ["d", "f"]
    assert pveconf.storages_in(text)["f"].controllers == ["10.0.0.7"]
    assert storagecfg.parse(text)["f"].controllers == ["10.0.0.7"]
    assert storagecfg.parse(text)["e"].options["disable"] == "1"


def test_ha_resources_keep_only_known_keys() -> None:
    text = "vm: 100\n\tstate ignored\n\nvm: 101\n\tstate bogus\n\tmax_restart 2\n\nct: 102\n\n"
    parsed = sectionconfig.parse_ha_resources(text)
    assert {sid: s.values for sid, s in parsed.sections.items()} == {"100": {"state": "ignored"},
                                                                     "101": {"max_restart": "2"}, "102": {}}
    assert parsed.warnings == ["file /etc/pve/ha/resources.cfg line 5 (section '101') - unable to parse value of "
                               "'state': value 'bogus' does not have a value in the enumeration "
                               "'started, stopped, enabled, disabled, ignored'"]  # fmt: skip
