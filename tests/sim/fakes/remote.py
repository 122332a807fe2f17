"""Running a command "on another node": its PVE_SIM_* environment and, where possible, its file system.

As root, the command runs in a private mount namespace with the node's root overlaid on /etc,
/var/lib and /dev (overlayfs, the node's directories as upper layers), so a remote
`cat > /etc/systemd/system/x.service.d/override.conf` or `ls /var/lib/linstor` acts on that
node's files. Without root (or unshare) the command runs unmapped with cwd at the node's root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..state import ENV_NODE, ENV_ROOT, SimState

OVERLAID = ("etc", "var/lib", "dev")


def node_env(state: SimState, node: str) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_NODE] = node
    env[ENV_ROOT] = str(state.node_root(node))
    env["HOME"] = "/root"
    return env


def can_overlay() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and sys.platform.startswith("linux")


def mount_script(state: SimState, node: str) -> str:
    root = state.node_root(node)
    work = state.sim / "ovl" / f"{node}-{os.getpid()}"
    lines = ["set -e"]
    for index, sub in enumerate(OVERLAID):
        upper = root / sub
        upper.mkdir(parents=True, exist_ok=True)
        workdir = work / str(index)
        workdir.mkdir(parents=True, exist_ok=True)
        lines.append(f"mount -t overlay overlay -o lowerdir=/{sub},upperdir={upper},workdir={workdir} /{sub}")
    return "\n".join(lines)


def run_on(state: SimState, node: str, command: str, stdin: int | None = None) -> int:
    """Run `command` with /bin/sh on `node`; returns its exit code."""
    env = node_env(state, node)
    root = state.node_root(node)
    if can_overlay():
        script = mount_script(state, node) + "\ncd /root 2>/dev/null || cd /\nexec /bin/sh -c \"$SIM_REMOTE_CMD\"\n"
        env["SIM_REMOTE_CMD"] = command
        argv = ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", script]
        try:
            return subprocess.run(argv, env=env, stdin=stdin, check=False).returncode
        finally:
            shutil.rmtree(state.sim / "ovl" / f"{node}-{os.getpid()}", ignore_errors=True)
    return subprocess.run(["/bin/sh", "-c", command], env=env, cwd=str(root), stdin=stdin, check=False).returncode


def resolve_host(state: SimState, host: str) -> str | None:
    return state.node_by_host(host.split("@", 1)[-1])


def unreachable(host: str) -> str:
    return f"ssh: connect to host {host} port 22: No route to host"


def path_on(state: SimState, node: str, path: str) -> Path:
    return state.node_root(node) / path.lstrip("/") if path.startswith("/") else state.node_root(node) / "root" / path
