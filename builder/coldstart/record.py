"""What install changed, written down so remove can put back exactly what was there before.

Two records: one per node (files and units on that node) and one in pmxcfs for what is shared by
the cluster (storage content, the guests' hookscripts, which nodes have the runtime). The shared one
is changed only under a pmxcfs cluster lock, as PVE's own tools do.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.coldstart import layout
from builder.errors import die

LOCK_TIMEOUT = 10.0


@dataclass
class NodeRecord:
    # path relative to the root -> previous content (None: the file did not exist).
    files: dict[str, str | None] = field(default_factory=dict)
    # the same for binary files (the tool), base64-encoded.
    binaries: dict[str, str | None] = field(default_factory=dict)
    # units this install enabled (and remove disables again).
    enabled: list[str] = field(default_factory=list)
    # directories that did not exist before (removed again when empty).
    dirs: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> NodeRecord | None:
        path = layout.at(root, layout.NODE_RECORD)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(files=dict(data.get("files", {})), binaries=dict(data.get("binaries", {})),
                   enabled=list(data.get("enabled", [])),
                   dirs=list(data.get("dirs", [])), settings=dict(data.get("settings", {})))  # fmt: skip

    def save(self, root: Path) -> None:
        path = layout.at(root, layout.NODE_RECORD)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"files": self.files, "binaries": self.binaries, "enabled": self.enabled, "dirs": self.dirs,
                "settings": self.settings}
        _atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def knows(self, relative: str) -> bool:
        return relative in self.files or relative in self.binaries

    def paths(self) -> list[str]:
        return [*self.files, *self.binaries]

    def remember(self, relative: str, previous: bytes | None, binary: bool) -> None:
        if binary:
            self.binaries[relative] = None if previous is None else base64.b64encode(previous).decode()
        else:
            self.files[relative] = None if previous is None else previous.decode("utf-8", "surrogateescape")

    def previous(self, relative: str) -> bytes | None:
        if relative in self.binaries:
            value = self.binaries[relative]
            return None if value is None else base64.b64decode(value)
        text = self.files.get(relative)
        return None if text is None else text.encode("utf-8", "surrogateescape")

    def forget(self, relative: str) -> bytes | None:
        previous = self.previous(relative)
        self.files.pop(relative, None)
        self.binaries.pop(relative, None)
        return previous

    def note_dirs(self, root: Path, path: Path) -> None:
        """Remember the parents of `path` that do not exist yet, before they are created."""
        for parent in [path.parent, *path.parent.parents]:
            if parent == root or parent.exists():
                break
            relative = str(parent.relative_to(root))
            if relative not in self.dirs:
                self.dirs.append(relative)

    @staticmethod
    def delete(root: Path) -> None:
        path = layout.at(root, layout.NODE_RECORD)
        path.unlink(missing_ok=True)
        for directory in (path.parent / "clearing", path.parent):
            with contextlib.suppress(OSError):
                directory.rmdir()


@dataclass
class ClusterRecord:
    nodes: list[str] = field(default_factory=list)
    # vmid -> the hookscript value the guest had before (None: none); only guests this tool gated.
    hooks: dict[str, str | None] = field(default_factory=dict)
    # The snippets storage, and its content list before install added `snippets` (None: it had it).
    snippets_storage: str = "local"
    content_before: str | None = None
    controller_vmid: int | None = None

    @classmethod
    def load(cls, root: Path) -> ClusterRecord | None:
        path = layout.at(root, layout.CLUSTER_RECORD)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(nodes=list(data.get("nodes", [])), hooks=dict(data.get("hooks", {})),
                   snippets_storage=str(data.get("snippets_storage", "local")),
                   content_before=data.get("content_before"), controller_vmid=data.get("controller_vmid"))  # fmt: skip

    def save(self, root: Path) -> None:
        data = {"nodes": sorted(self.nodes), "hooks": dict(sorted(self.hooks.items(), key=lambda i: int(i[0]))),
                "snippets_storage": self.snippets_storage, "content_before": self.content_before,
                "controller_vmid": self.controller_vmid}  # fmt: skip
        try:
            _atomic_write(layout.at(root, layout.CLUSTER_RECORD), json.dumps(data, indent=1, sort_keys=True) + "\n")
        except OSError as err:
            die(f"cannot write /{layout.CLUSTER_RECORD}: {err.strerror}",
                hint="the node needs quorum to change /etc/pve; check 'pvecm status'")

    @staticmethod
    def delete(root: Path) -> None:
        layout.at(root, layout.CLUSTER_RECORD).unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    # pmxcfs accepts write-then-rename; a crash never leaves half a record.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def cluster_lock(root: Path) -> Iterator[None]:
    """A pmxcfs cluster lock (mkdir in /etc/pve/priv/lock), so two nodes never edit the record at once."""
    lockdir = layout.at(root, layout.CLUSTER_LOCK)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            lockdir.mkdir()
            break
        except FileExistsError:
            pass
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            die("cannot take the cluster lock in /etc/pve", hint="the node needs quorum; check 'pvecm status'")
        if time.monotonic() >= deadline:
            die(f"the cluster lock /{layout.CLUSTER_LOCK} is held by another node",
                hint="wait until 'coldstart install/remove' finished there, then run this again")
        time.sleep(0.2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lockdir.rmdir()
