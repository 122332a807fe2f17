"""Fake `ping [-c N] [-W S] host` (iputils): an address answers when it belongs to an online node or a
running LINSTOR controller of the simulation (e.g. the appliance's, started with start_controller)."""

from __future__ import annotations

import sys

from .. import network
from ._cli import Context, Fail, run

WITH_ARG = set("cWwisItQ")


def main(ctx: Context, argv: list[str]) -> int:
    hosts = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("-") and len(arg) > 1:
            if arg[1] in WITH_ARG and len(arg) == 2:
                index += 1
            continue
        hosts.append(arg)
    if len(hosts) != 1:
        raise Fail("ping: usage error: Destination address required", 2)
    host = hosts[0]
    node = ctx.state.node_by_host(host)
    up = (node is not None and ctx.state.node_online(node)) or host in network.endpoints(ctx.state)
    if not up:
        print(f"PING {host} ({host}) 56(84) bytes of data.\n\n--- {host} ping statistics ---\n"
              "1 packets transmitted, 0 received, 100% packet loss, time 0ms\n")  # fmt: skip
        return 1
    print(f"PING {host} ({host}) 56(84) bytes of data.\n64 bytes from {host}: icmp_seq=1 ttl=64 time=0.3 ms\n\n"
          f"--- {host} ping statistics ---\n1 packets transmitted, 1 received, 0% packet loss, time 0ms")  # fmt: skip
    return 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
