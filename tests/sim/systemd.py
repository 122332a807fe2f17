"""systemd on a simulated node: unit files, enablement symlinks, active states, drop-ins.

Unit files live under `<root>/lib/systemd/system`, admin drop-ins under
`<root>/etc/systemd/system/<unit>.d/*.conf`, enablement is the real symlink in
`<root>/etc/systemd/system/<target>.wants/`. What is running, and which configuration each unit
had when systemd last loaded it (daemon-reload), is kept in sim/systemd/<node>.json.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .state import SimState

UNIT_DIR = "lib/systemd/system"
ETC_DIR = "etc/systemd/system"

# Unit files as the packages ship them (linstor.md sections 4 and 5; PVE units abridged).
UNIT_FILES: dict[str, str] = {
    "linstor-controller.service": """\
[Unit]
Description=LINSTOR Controller Service
Wants=network-online.target
After=network-online.target
Before=pvedaemon.service

[Service]
Type=simple
ExecStart=/usr/share/linstor-server/bin/Controller --logs=/var/log/linstor-controller --config-directory=/etc/linstor
PrivateTmp=yes
RestartForceExitStatus=70

[Install]
WantedBy=multi-user.target
""",
    "linstor-satellite.service": """\
[Unit]
Description=LINSTOR Satellite Service
Wants=network-online.target
After=network-online.target
Before=pvedaemon.service

[Service]
Type=simple
ExecStart=/usr/share/linstor-server/bin/Satellite --logs=/var/log/linstor-satellite --config-directory=/etc/linstor
PrivateTmp=yes
RestartForceExitStatus=70

[Install]
WantedBy=multi-user.target
""",
    "drbd.service": """\
[Unit]
Description=DRBD -- please disable. Instead, use the per resource drbd@.target template unit.
Documentation=man:drbd.service(7)
Wants=network-online.target sshd.service
After=network-online.target sshd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/lib/drbd/scripts/drbd start
ExecStop=/lib/drbd/scripts/drbd stop

[Install]
WantedBy=multi-user.target
""",
    "drbd@.service": """\
[Unit]
Description=(Re)configure DRBD resource %I
Documentation=man:drbd.service(7)
PartOf=drbd@%i.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/lib/drbd/scripts/drbd-service-shim.sh adjust %I
ExecStop=/lib/drbd/scripts/drbd-service-shim.sh down %I
""",
    "drbd@.target": """\
[Unit]
Description=DRBD resource %I
Documentation=man:drbd.service(7)
Requires=drbd@%i.service
After=drbd@%i.service
Before=drbd-configured.target

[Install]
WantedBy=multi-user.target
""",
    "drbd-configured.target": """\
[Unit]
Description=All DRBD resources configured
Documentation=man:drbd.service(7)

[Install]
WantedBy=multi-user.target
""",
    "pve-cluster.service": "[Unit]\nDescription=The Proxmox VE cluster filesystem\n\n[Service]\nType=forking\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "corosync.service": "[Unit]\nDescription=Corosync Cluster Engine\n\n[Service]\nType=notify\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "pvedaemon.service": "[Unit]\nDescription=PVE API Daemon\n\n[Service]\nType=forking\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "pve-ha-lrm.service": "[Unit]\nDescription=PVE Local HA Resource Manager Daemon\n\n[Service]\nType=forking\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "pve-ha-crm.service": "[Unit]\nDescription=PVE Cluster HA Resource Manager Daemon\n\n[Service]\nType=forking\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "pve-guests.service": """\
[Unit]
Description=PVE guests
ConditionPathExists=/usr/bin/prlimit
Wants=pvestatd.service
Wants=pveproxy.service
Wants=spiceproxy.service
Wants=pve-firewall.service
Wants=lxc.service
After=pveproxy.service
After=pvestatd.service
After=spiceproxy.service
After=pve-firewall.service
After=lxc.service
After=pve-ha-crm.service pve-ha-lrm.service

[Service]
Environment="PVE_LOG_ID=pve-guests"
ExecStartPre=-/usr/share/pve-manager/helpers/pve-startall-delay
ExecStart=/usr/bin/pvesh --nooutput create /nodes/localhost/startall
ExecStop=-/usr/bin/vzdump -stop
ExecStop=/usr/bin/pvesh --nooutput create /nodes/localhost/stopall
Type=oneshot
RemainAfterExit=yes
TimeoutSec=infinity

[Install]
WantedBy=multi-user.target
Alias=pve-manager.service
""",
    "ssh.service": "[Unit]\nDescription=OpenBSD Secure Shell server\n\n[Service]\nType=notify\n\n"
    "[Install]\nWantedBy=multi-user.target\n",
}

# Started on a fresh node in this order unless the scenario says otherwise.
DEFAULT_ENABLED = ["corosync.service", "pve-cluster.service", "pvedaemon.service", "pve-ha-crm.service",
                   "pve-ha-lrm.service", "pve-guests.service", "ssh.service", "linstor-satellite.service"]  # fmt: skip


class UnitNotFound(Exception):
    pass


def normalize(name: str) -> str:
    """systemctl appends .service to a name without a unit suffix."""
    suffixes = (".service", ".target", ".mount", ".socket", ".timer", ".path", ".slice", ".scope", ".device")
    return name if name.endswith(suffixes) else f"{name}.service"


def template_of(unit: str) -> str | None:
    """'drbd@r0.target' -> 'drbd@.target'."""
    if "@" not in unit:
        return None
    prefix, rest = unit.split("@", 1)
    suffix = rest[rest.rfind(".") :]
    instance = rest[: rest.rfind(".")]
    return f"{prefix}@{suffix}" if instance else None


def instance_of(unit: str) -> str:
    return unit.split("@", 1)[1].rsplit(".", 1)[0] if "@" in unit else ""


def unit_file(state: SimState, node: str, unit: str) -> Path | None:
    root = state.node_root(node)
    for base in (root / ETC_DIR, root / UNIT_DIR):
        for candidate in (unit, template_of(unit)):
            if candidate and (base / candidate).is_file() and not (base / candidate).is_symlink():
                return base / candidate
    return None


def exists(state: SimState, node: str, unit: str) -> bool:
    return unit_file(state, node, unit) is not None


def dropins(state: SimState, node: str, unit: str) -> list[Path]:
    root = state.node_root(node)
    found: dict[str, Path] = {}
    names = [unit] + ([template_of(unit)] if template_of(unit) else [])
    for base in (root / UNIT_DIR, root / ETC_DIR):
        for name in names:
            directory = base / f"{name}.d"
            if directory.is_dir():
                for path in sorted(directory.glob("*.conf")):
                    found[path.name] = path
    return [found[name] for name in sorted(found)]


def fingerprint(state: SimState, node: str, unit: str) -> str:
    digest = hashlib.sha1()
    main = unit_file(state, node, unit)
    for path in ([main] if main else []) + dropins(state, node, unit):
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def parsed_unit(state: SimState, node: str, unit: str) -> dict[str, dict[str, list[str]]]:
    """The unit with its drop-ins merged: section -> key -> values in order (an empty value resets)."""
    merged: dict[str, dict[str, list[str]]] = {}
    main = unit_file(state, node, unit)
    for path in ([main] if main else []) + dropins(state, node, unit):
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                merged.setdefault(section, {})
                continue
            if "=" in line and section:
                key, value = (part.strip() for part in line.split("=", 1))
                values = merged[section].setdefault(key, [])
                if value == "":
                    values.clear()
                else:
                    values.append(value.replace("%i", instance_of(unit)).replace("%I", instance_of(unit)))
    return merged


def environment_of(parsed: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in parsed.get("Service", {}).get("Environment", []):
        for item in _split_env(value):
            if "=" in item:
                key, val = item.split("=", 1)
                env[key] = val
    return env


def _split_env(value: str) -> list[str]:
    items: list[str] = []
    current = ""
    quote = ""
    for char in value:
        if quote:
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in "\"'":
            quote = char
        elif char.isspace():
            if current:
                items.append(current)
            current = ""
        else:
            current += char
    if current:
        items.append(current)
    return items


def wanted_by(state: SimState, node: str, unit: str) -> list[str]:
    install = parsed_unit(state, node, unit).get("Install", {})
    targets: list[str] = []
    for value in install.get("WantedBy", []) + install.get("RequiredBy", []):
        targets.extend(value.split())
    return targets


# --- runtime state -----------------------------------------------------------------------------
def _runtime(state: SimState, node: str) -> dict[str, Any]:
    data = dict(state.read(f"systemd/{node}.json", {}))
    data.setdefault("active", {})
    data.setdefault("loaded", {})
    data.setdefault("env", {})
    return data


def _save(state: SimState, node: str, data: dict[str, Any]) -> None:
    state.write(f"systemd/{node}.json", data)


def active_state(state: SimState, node: str, unit: str) -> str:
    if not state.node_online(node):
        return "inactive"
    return str(_runtime(state, node)["active"].get(unit, "inactive"))


def is_active(state: SimState, node: str, unit: str) -> bool:
    return active_state(state, node, unit) == "active"


def set_active(state: SimState, node: str, unit: str, value: str) -> None:
    data = _runtime(state, node)
    if value == "inactive":
        data["active"].pop(unit, None)
    else:
        data["active"][unit] = value
    if value == "active":
        # A service runs with the configuration systemd had loaded when it started.
        if unit not in data["loaded"] and exists(state, node, unit):
            data["loaded"][unit] = fingerprint(state, node, unit)
            data.setdefault("loaded_env", {})[unit] = environment_of(parsed_unit(state, node, unit))
        data["env"][unit] = data.get("loaded_env", {}).get(unit, {})
    _save(state, node, data)


def loaded_environment(state: SimState, node: str, unit: str) -> dict[str, str]:
    return dict(_runtime(state, node)["env"].get(unit, {}))


def needs_reload(state: SimState, node: str, unit: str) -> bool:
    loaded = _runtime(state, node)["loaded"].get(unit)
    return loaded is not None and loaded != fingerprint(state, node, unit)


def daemon_reload(state: SimState, node: str) -> None:
    data = _runtime(state, node)
    units = set(data["loaded"]) | set(all_units(state, node))
    data["loaded"] = {}
    data["loaded_env"] = {}
    for unit in sorted(units):
        if exists(state, node, unit):
            data["loaded"][unit] = fingerprint(state, node, unit)
            data["loaded_env"][unit] = environment_of(parsed_unit(state, node, unit))
    _save(state, node, data)


def mark_loaded(state: SimState, node: str, unit: str) -> None:
    """First reference to a unit: systemd loads it as it is on disk now."""
    data = _runtime(state, node)
    if unit not in data["loaded"] and exists(state, node, unit):
        data["loaded"][unit] = fingerprint(state, node, unit)
        data.setdefault("loaded_env", {})[unit] = environment_of(parsed_unit(state, node, unit))
        _save(state, node, data)


def all_units(state: SimState, node: str) -> list[str]:
    base = state.node_root(node) / UNIT_DIR
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def enablement_links(state: SimState, node: str, unit: str) -> list[Path]:
    root = state.node_root(node)
    return [root / ETC_DIR / f"{target}.wants" / unit for target in wanted_by(state, node, unit)]


def is_enabled(state: SimState, node: str, unit: str) -> str:
    root = state.node_root(node)
    masked = root / ETC_DIR / unit
    if masked.is_symlink() and str(masked.readlink()) == "/dev/null":
        return "masked"
    if not wanted_by(state, node, unit):
        return "static"
    links = enablement_links(state, node, unit)
    return "enabled" if any(link.is_symlink() for link in links) else "disabled"


def enabled_units(state: SimState, node: str) -> list[str]:
    wants = state.node_root(node) / ETC_DIR
    found: list[str] = []
    if wants.is_dir():
        for directory in sorted(wants.glob("*.wants")):
            found.extend(sorted(p.name for p in directory.iterdir() if p.is_symlink()))
    return found


def install_units(state: SimState, node: str, with_controller: bool) -> None:
    base = state.node_root(node) / UNIT_DIR
    base.mkdir(parents=True, exist_ok=True)
    for name, text in UNIT_FILES.items():
        if name == "linstor-controller.service" and not with_controller:
            continue
        (base / name).write_text(text)
