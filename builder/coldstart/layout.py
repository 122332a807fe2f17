"""Where cold-start support puts things on a Proxmox VE node, as paths relative to the node's root."""

from __future__ import annotations

from pathlib import Path

# The tool on a node, which the hookscript, the gate and the retry timer run as
# `<tool> coldstart gate|hook|retry|probe`. The Debian package installs it as PACKAGED_TOOL; where that
# is missing, `coldstart install` copies the tool there as a zipapp (ZIPAPP_TOOL), run by NODE_PYTHON.
PACKAGED_TOOL = "usr/bin/linstor-appliance"
ZIPAPP_TOOL = "usr/local/lib/linstor-appliance/linstor-appliance.pyz"
NODE_PYTHON = "/usr/bin/python3"
# The oldest Python the tool runs on (pyproject.toml's requires-python).
MIN_PYTHON = (3, 11)

SETTINGS = "etc/linstor-coldstart.conf"
GATE_DROPIN = "etc/systemd/system/pve-guests.service.d/linstor-coldstart.conf"
LRM_DROPIN = "etc/systemd/system/pve-ha-lrm.service.d/linstor-coldstart.conf"
RETRY_SERVICE = "etc/systemd/system/linstor-coldstart-retry.service"
RETRY_TIMER = "etc/systemd/system/linstor-coldstart-retry.timer"
# Where the package is installed its retry units are used as they are; a non-default interval goes here.
RETRY_INTERVAL_DROPIN = "etc/systemd/system/linstor-coldstart-retry.timer.d/interval.conf"
# Where the Debian package puts its units (debhelper on Debian 12; /usr/lib on Debian 13).
PACKAGED_UNIT_DIRS = ("lib/systemd/system", "usr/lib/systemd/system")
TIMER_UNIT = "linstor-coldstart-retry.timer"
HOOK_NAME = "linstor-coldstart-hook"

# What install changed on this node, so remove can undo exactly that.
NODE_RECORD = "var/lib/linstor-coldstart/installed.json"
# HA errors the retry timer is clearing: kept across a reboot.
CLEARING_DIR = "var/lib/linstor-coldstart/clearing"
# The runtime's refusals and lock slots: /run, so one boot's refusals are gone with it.
RUN_DIR = "run/linstor-coldstart"

# Cluster-wide (pmxcfs): which nodes have the runtime, which guests carry the hook, what was changed.
CLUSTER_RECORD = "etc/pve/linstor-coldstart.json"
CLUSTER_LOCK = "etc/pve/priv/lock/linstor-coldstart"

TEMPLATES = "image/templates/coldstart"


def at(root: Path, relative: str) -> Path:
    return root / relative


def tool_command(packaged: bool) -> str:
    """The command line, up to the subcommand, that runs the tool on a node."""
    return f"/{PACKAGED_TOOL}" if packaged else f"{NODE_PYTHON} /{ZIPAPP_TOOL}"


def root_of(tool: str) -> Path:
    """The root the tool runs in, from its own path: `/` on a node; tests install under a directory."""
    for relative in (ZIPAPP_TOOL, PACKAGED_TOOL):
        if tool.endswith("/" + relative):
            return Path(tool[: -len(relative)] or "/")
    return Path("/")
