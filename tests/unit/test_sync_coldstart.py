"""sync's cold-start step on a node whose replica sync has just made: it waits for the disk's .res file.

A fake transport stands in for the nodes (the simulated cluster writes .res files at once, so the wait
cannot be seen there).
"""

from __future__ import annotations

import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

from builder import sync
from builder.deploy.pve import ClusterNode
from builder.deploy.remote import Node
from builder.status.checks import COLDSTART_MARKER

RES = "/var/lib/linstor.d/linstor-appliance-100.res"


class Nodes:
    """read_file and run as the deploy's Transport has them; pve4's .res file appears after `res_after` reads."""

    def __init__(self, res_after: int | None) -> None:
        self.res_after = res_after
        self.res_reads = 0
        self.ran: list[tuple[str, list[str]]] = []

    def read_file(self, node: Node, path: str) -> str | None:
        if path == COLDSTART_MARKER:
            return "{}" if node.name != "pve4" else None
        if path == RES and node.name == "pve4":
            self.res_reads += 1
            return "resource" if self.res_after is not None and self.res_reads > self.res_after else None
        raise AssertionError(f"unexpected read of {path} on {node.name}")

    def run(self, node: Node, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.ran.append((node.name, argv))
        return subprocess.CompletedProcess(argv, 0, "", "")


def step(nodes: Nodes) -> sync.Changes:
    ctx: Any = SimpleNamespace(transport=nodes, options=SimpleNamespace(vmid=100, resource="linstor-appliance-100"),
                               pve=SimpleNamespace(vm_config=lambda vmid: {}))  # fmt: skip
    members = [ClusterNode(name, f"10.0.0.{n}", online=True, local=n == 1)
               for n, name in enumerate(("pve1", "pve2", "pve4"), start=1)]  # fmt: skip
    changes = sync.Changes()
    sync.sync_coldstart(ctx, members, changes)
    return changes


def test_install_waits_for_the_new_replicas_res_file() -> None:
    nodes = Nodes(res_after=3)
    changes = step(nodes)
    assert nodes.res_reads == 4  # the install ran only once the file was there
    assert nodes.ran == [("pve4", ["linstor-appliance", "coldstart", "install"])]
    assert changes.done == ["pve4: cold-start helper installed"] and changes.problems == []


def test_no_res_file_in_time_is_a_problem_line_and_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync, "RES_FILE_WAIT_S", 1)
    nodes = Nodes(res_after=None)
    changes = step(nodes)
    assert nodes.ran == []
    assert changes.problems == [f"pve4: no {RES} after 1 s, so the cold-start helper cannot be installed there yet; "
                                "run sync again"]  # fmt: skip
