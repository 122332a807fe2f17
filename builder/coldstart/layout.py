"""Where cold-start support puts things on a Proxmox VE node, as paths relative to the node's root."""

from __future__ import annotations

from pathlib import Path

# The runtime on each node: gate, hook, retry and probe in one shell script.
SCRIPT = "usr/local/sbin/linstor-coldstart"
SETTINGS = "etc/linstor-coldstart.conf"
GATE_DROPIN = "etc/systemd/system/pve-guests.service.d/linstor-coldstart.conf"
LRM_DROPIN = "etc/systemd/system/pve-ha-lrm.service.d/linstor-coldstart.conf"
RETRY_SERVICE = "etc/systemd/system/linstor-coldstart-retry.service"
RETRY_TIMER = "etc/systemd/system/linstor-coldstart-retry.timer"
TIMER_UNIT = "linstor-coldstart-retry.timer"
HOOK_NAME = "linstor-coldstart-hook"

# What install changed on this node, so remove can undo exactly that.
NODE_RECORD = "var/lib/linstor-coldstart/installed.json"
# The script's refusals and lock slots: /run, so one boot's refusals are gone with it.
RUN_DIR = "run/linstor-coldstart"

# Cluster-wide (pmxcfs): which nodes have the runtime, which guests carry the hook, what was changed.
CLUSTER_RECORD = "etc/pve/linstor-coldstart.json"
CLUSTER_LOCK = "etc/pve/priv/lock/linstor-coldstart"

TEMPLATES = "image/templates/coldstart"


def at(root: Path, relative: str) -> Path:
    return root / relative
