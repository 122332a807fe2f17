"""Fake `pvecm status` / `pvecm nodes` (corosync votequorum view of the local node)."""

from __future__ import annotations

import sys
import time

from ._cli import Context, Fail, run


def _members(ctx: Context) -> list[tuple[int, str, str]]:
    nodes = ctx.state.nodes()
    if not ctx.state.node_quorate(ctx.node) and nodes[ctx.node].get("quorum_blocked"):
        # A partitioned node sees only itself.
        return [(nodes[ctx.node]["nodeid"], ctx.node, nodes[ctx.node]["ip"])]
    return [(info["nodeid"], name, info["ip"]) for name, info in nodes.items() if info.get("online")]


def cmd_status(ctx: Context) -> int:
    nodes = ctx.state.nodes()
    members = _members(ctx)
    expected = len(nodes)
    needed = expected // 2 + 1
    quorate = ctx.state.node_quorate(ctx.node)
    me = nodes[ctx.node]
    print("Cluster information\n-------------------\nName:             pve-sim\nConfig Version:   3\n"
          "Transport:        knet\nSecure auth:      on\n")  # fmt: skip
    print("Quorum information\n------------------")
    print(f"Date:             {time.strftime('%a %b %e %H:%M:%S %Y', time.localtime(ctx.state.now()))}")
    print("Quorum provider:  corosync_votequorum")
    print(f"Nodes:            {len(members)}")
    print(f"Node ID:          0x{me['nodeid']:08x}")
    print("Ring ID:          1.5")
    print(f"Quorate:          {'Yes' if quorate else 'No'}\n")
    print("Votequorum information\n----------------------")
    print(f"Expected votes:   {expected}\nHighest expected: {expected}\nTotal votes:      {len(members)}")
    print(f"Quorum:           {needed} {'' if quorate else 'Activity blocked'}".rstrip())
    print(f"Flags:            {'Quorate ' if quorate else ''}\n")
    print("Membership information\n----------------------\n    Nodeid      Votes Name")
    for nodeid, name, ip in sorted(members):
        print(f"0x{nodeid:08x}          1 {ip}{' (local)' if name == ctx.node else ''}")
    return 0


def cmd_nodes(ctx: Context) -> int:
    print("\nMembership information\n----------------------\n    Nodeid      Votes Name")
    for nodeid, name, _ in sorted(_members(ctx)):
        print(f"{nodeid:>10} {1:>10} {name}{' (local)' if name == ctx.node else ''}")
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    if argv[:1] == ["status"]:
        return cmd_status(ctx)
    if argv[:1] == ["nodes"]:
        return cmd_nodes(ctx)
    raise Fail(f"sim: pvecm {' '.join(argv)} is not simulated", 2)


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
