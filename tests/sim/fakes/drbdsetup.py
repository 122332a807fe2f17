"""Fake `drbdsetup status [<res>] [--json]` (drbd-utils 9): this node's role and its peers' roles.

A node is Primary while something holds the device open for writing (see drbd.py). Python code that
writes a device file directly is not counted: that is the simulation's known gap.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .. import drbd
from ._cli import Context, Fail, run


def _resource(ctx: Context, res: str) -> dict[str, Any]:
    primaries = drbd.primaries(ctx.state, res)
    peers = [n for n in ctx.state.node_names() if n != ctx.node and drbd.is_up(ctx.state, n, res)]
    return {
        "name": res, "node-id": ctx.state.node_names().index(ctx.node), "role":
        "Primary" if ctx.node in primaries else "Secondary", "suspended": False,
        "devices": [{"volume": 0, "minor": 1000, "disk-state": "UpToDate"}],
        "connections": [
            {"peer-node-id": ctx.state.node_names().index(peer), "name": peer,
             "connection-state": "Connected" if ctx.state.node_online(peer) else "Connecting",
             "peer-role": "Primary" if peer in primaries else "Secondary" if ctx.state.node_online(peer)
             else "Unknown"}
            for peer in peers
        ],
    }  # fmt: skip


def main(ctx: Context, argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if not args or args[0] != "status":
        raise Fail("sim: only 'drbdsetup status' is simulated", 20)
    names = args[1:] or drbd.devices_on(ctx.state, ctx.node)
    found = []
    for res in names:
        if not drbd.is_up(ctx.state, ctx.node, res):
            raise Fail(f"{res}: No such resource", 10)
        found.append(_resource(ctx, res))
    if "--json" in argv:
        print(json.dumps(found, indent=2))
        return 0
    for item in found:
        print(f"{item['name']} role:{item['role']}")
        for peer in item["connections"]:
            print(f"  {peer['name']} role:{peer['peer-role']}")
    return 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
