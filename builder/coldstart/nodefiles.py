"""The files and units cold-start support adds to one node, and taking them away again."""

from __future__ import annotations

import contextlib
from pathlib import Path

from builder import log
from builder.coldstart import layout, nodetool
from builder.coldstart.record import NodeRecord
from builder.coldstart.settings import Settings
from builder.errors import die
from builder.resources import render
from builder.run import run

EXECUTABLE = 0o755
PLAIN = 0o644


def wanted(settings: Settings, controller_vmid: int, resource: str, snippets_dir: str, local_fallback: bool,
           packaged: bool, packaged_units: bool = False) -> dict[str, tuple[str | bytes, int]]:  # fmt: skip
    """Relative path -> (content, mode) of every file a node gets; with `packaged`, the package's tool is used,
    with `packaged_units` its retry units too (only a non-default interval is written, as a drop-in)."""
    snippet = f"{snippets_dir.strip('/')}/{layout.HOOK_NAME}"
    command = layout.tool_command(packaged)
    tool = layout.PACKAGED_TOOL if packaged else layout.ZIPAPP_TOOL
    python = "" if packaged else layout.NODE_PYTHON
    t = layout.TEMPLATES
    files: dict[str, tuple[str | bytes, int]] = {
        snippet: (render(f"{t}/hook.sh.j2", snippet=snippet, tool=tool, python=python), EXECUTABLE),
        layout.SETTINGS: (render(f"{t}/linstor-coldstart.conf.j2", controller_vmid=controller_vmid,
                                 local_fallback="yes" if local_fallback else "no",
                                 boot_wait=settings.boot_wait, hook_wait=settings.hook_wait,
                                 probe_timeout=settings.probe_timeout, clear_wait=settings.clear_wait), PLAIN),
        layout.GATE_DROPIN: (render(f"{t}/pve-guests.conf.j2", resource=resource, command=command), PLAIN),
        layout.LRM_DROPIN: (render(f"{t}/pve-ha-lrm.conf.j2", resource=resource), PLAIN),
    }  # fmt: skip
    if not packaged_units:
        files[layout.RETRY_SERVICE] = (render(f"{t}/linstor-coldstart-retry.service.j2", command=command), PLAIN)
        files[layout.RETRY_TIMER] = (render(f"{t}/linstor-coldstart-retry.timer.j2",
                                            interval=settings.retry_interval), PLAIN)  # fmt: skip
    elif settings.retry_interval != Settings().retry_interval:
        # The packaged timer has the default; a copy in /etc would hide the package's updates of the unit.
        files[layout.RETRY_INTERVAL_DROPIN] = (render(f"{t}/retry-interval.conf.j2",
                                                      interval=settings.retry_interval), PLAIN)  # fmt: skip
    if not packaged:
        files[layout.ZIPAPP_TOOL] = (nodetool.archive(), EXECUTABLE)
    return files


def write(root: Path, files: dict[str, tuple[str | bytes, int]], record: NodeRecord) -> None:
    """Write what differs; the first time a path is touched its previous content is recorded."""
    for relative, (content, mode) in files.items():
        path = layout.at(root, relative)
        current = path.read_bytes() if path.is_file() else None
        if not record.knows(relative):
            record.remember(relative, current, binary=isinstance(content, bytes))
        data = content.encode() if isinstance(content, str) else content
        if current == data and (path.stat().st_mode & 0o777) == mode:
            continue
        record.note_dirs(root, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)


def drop_stale(root: Path, files: dict[str, tuple[str | bytes, int]], record: NodeRecord) -> None:
    """Files an earlier install wrote that this one no longer wants (e.g. another snippets storage)."""
    for relative in [r for r in record.paths() if r not in files]:
        restore(root, relative, record.forget(relative))


def restore(root: Path, relative: str, previous: bytes | None) -> None:
    path = layout.at(root, relative)
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(previous)


def remove_dirs(root: Path, dirs: list[str]) -> None:
    """Directories install created, deepest first, if nothing else was put there since."""
    for relative in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        with contextlib.suppress(OSError):
            layout.at(root, relative).rmdir()


def systemctl(*args: str, check: bool = True) -> str:
    # systemctl acts on the node it runs on; the root prefix only applies to files.
    return run(["systemctl", *args], capture=True, check=check).stdout.strip()


def unit_enabled(unit: str) -> bool:
    return systemctl("is-enabled", unit, check=False) in ("enabled", "static", "alias", "indirect")


def enable_units(root: Path, resource: str, record: NodeRecord) -> None:
    """The retry timer, and the controller VM's DRBD unit if neither it nor drbd.service is enabled."""
    # systemctl creates the .wants directories; remove takes away the ones that were not there.
    for wants in ("timers.target.wants", "multi-user.target.wants"):
        record.note_dirs(root, layout.at(root, f"etc/systemd/system/{wants}/unit"))
    systemctl("daemon-reload")
    drbd_unit = f"drbd@{resource}.target"
    if not unit_enabled(drbd_unit) and not unit_enabled("drbd.service"):
        if systemctl("show", "-p", "LoadState", "--value", drbd_unit, check=False) != "loaded":
            die(f"neither {drbd_unit} nor drbd.service is enabled, and this drbd-utils has no drbd@.target",
                hint="enable drbd.service so the controller VM's disk comes up at boot, then run this again")
        log.info(f"enabling {drbd_unit}: it brings the controller VM's disk up at boot without a controller")
        systemctl("enable", drbd_unit)
        record.enabled.append(drbd_unit)
    if not unit_enabled(layout.TIMER_UNIT):
        record.enabled.append(layout.TIMER_UNIT)
    systemctl("enable", "--now", layout.TIMER_UNIT)


def remove(root: Path, record: NodeRecord) -> None:
    if layout.TIMER_UNIT in record.enabled:
        systemctl("disable", "--now", layout.TIMER_UNIT, check=False)
        systemctl("stop", layout.TIMER_UNIT.replace(".timer", ".service"), check=False)
    for unit in record.enabled:
        if unit != layout.TIMER_UNIT:
            systemctl("disable", unit, check=False)
    for relative in record.paths():
        restore(root, relative, record.previous(relative))
    remove_dirs(root, record.dirs)
    systemctl("daemon-reload", check=False)
