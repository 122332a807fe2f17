"""Running commands and writing files on the cluster's nodes: directly on this node, OpenSSH elsewhere.

The other nodes are reached as root with OpenSSH in batch mode (PVE nodes trust each other's root
keys), so a missing key fails at once instead of asking for a password. Files on this node are
written under the root prefix; on other nodes through a small shell command that writes a temporary
file and renames it, so a half-written drop-in never exists.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import die
from builder.run import run

SSH_BASE = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    local: bool = False


class Transport:
    def __init__(self, root: Path, ssh_options: Sequence[str] = (), user: str = "root") -> None:
        self.root = root
        self.ssh_options = tuple(ssh_options)
        self.user = user

    def ssh_argv(self, node: Node, command: str) -> list[str]:
        extra = [item for option in self.ssh_options for item in ("-o", option)]
        # Everything after the destination is the remote command; '--' ends ssh's own options before it.
        return ["ssh", *SSH_BASE, *extra, "--", f"{self.user}@{node.address}", command]

    def reachable(self, node: Node) -> str | None:
        """None if a command runs on the node, else why not."""
        if node.local:
            return None
        result = run(self.ssh_argv(node, "true"), capture=True, check=False, timeout=60)
        if result.returncode == 0:
            return None
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"ssh exited with code {result.returncode}"

    def run(self, node: Node, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        if node.local:
            result = run(argv, capture=True, check=False, input=input, timeout=timeout)
        else:
            result = run(self.ssh_argv(node, shlex.join(argv)), capture=True, check=False, input=input,
                         timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            where = "" if node.local else f" on {node.name}"
            last = _last_line(result.stderr) or _last_line(result.stdout)
            detail = f": {last}" if last else ""
            die(f"'{shlex.join(argv)}' failed{where} with exit code {result.returncode}{detail}",
                hint=None if node.local else f"check that {node.name} is reachable: 'ssh root@{node.address}'")
        return result

    def script(self, node: Node, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A small sh script with positional arguments: several commands in one round trip to a node."""
        return self.run(node, ["sh", "-c", script, "sh", *args], check=check)

    def read_file(self, node: Node, path: str) -> str | None:
        if node.local:
            try:
                return (self.root / path.lstrip("/")).read_text()
            except FileNotFoundError:
                return None
        result = run(self.ssh_argv(node, f"cat {shlex.quote(path)} 2>/dev/null || exit 3"), capture=True,
                     check=False)  # fmt: skip
        if result.returncode == 3:
            return None
        if result.returncode != 0:
            die(f"cannot read {path} on {node.name}: {_last_line(result.stderr)}",
                hint=f"check 'ssh root@{node.address}'")
        return result.stdout

    def write_file(self, node: Node, path: str, text: str, mode: int = 0o644) -> None:
        if node.local:
            target = self.root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
            tmp.write_text(text)
            tmp.chmod(mode)
            os.replace(tmp, target)
            return
        directory, quoted = shlex.quote(str(Path(path).parent)), shlex.quote(path)
        script = (f"mkdir -p {directory} && cat > {quoted}.tmp && chmod {mode:o} {quoted}.tmp && "
                  f"mv -f {quoted}.tmp {quoted}")  # fmt: skip
        result = run(self.ssh_argv(node, script), capture=True, check=False, input=text)
        if result.returncode != 0:
            die(f"cannot write {path} on {node.name}: {_last_line(result.stderr)}",
                hint=f"check 'ssh root@{node.address}'")

    def remove_file(self, node: Node, path: str) -> None:
        if node.local:
            target = self.root / path.lstrip("/")
            target.unlink(missing_ok=True)
            if target.parent.is_dir() and not any(target.parent.iterdir()) and target.parent.name.endswith(".d"):
                target.parent.rmdir()
            return
        quoted = shlex.quote(path)
        directory = shlex.quote(str(Path(path).parent))
        # Drop-in folders that become empty go too; anything else in them stays.
        script = f"rm -f {quoted} && (rmdir {directory} 2>/dev/null || true)"
        result = run(self.ssh_argv(node, script), capture=True, check=False)
        if result.returncode != 0:
            die(f"cannot remove {path} on {node.name}: {_last_line(result.stderr)}",
                hint=f"check 'ssh root@{node.address}'")


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
