"""Fake `ssh [options] [user@]host [command...]` between simulated nodes (OpenSSH 9.2 messages)."""

from __future__ import annotations

import sys

from ._cli import Context, Fail, run
from .remote import resolve_host, run_on, unreachable

# OpenSSH options that take an argument.
WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")


def main(ctx: Context, argv: list[str]) -> int:
    index = 0
    destination = None
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if arg.startswith("-") and len(arg) > 1:
            letter = arg[1]
            if letter in WITH_ARG and len(arg) == 2:
                index += 2
            else:
                index += 1
            continue
        break
    if index >= len(argv):
        raise Fail("usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface] [-b bind_address]\n"
                   "           [-c cipher_spec] [-D [bind_address:]port] [-E log_file] [-e escape_char]\n"
                   "           destination [command [argument ...]]", 255)  # fmt: skip
    destination = argv[index]
    command = argv[index + 1 :]
    host = destination.split("@", 1)[-1]
    node = ctx.node if host in ("localhost", "127.0.0.1", "::1") else resolve_host(ctx.state, host)
    if node is None:
        if host.replace(".", "").isdigit():
            raise Fail(unreachable(host), 255)
        raise Fail(f"ssh: Could not resolve hostname {host}: Name or service not known", 255)
    if not ctx.state.node_online(node):
        raise Fail(unreachable(host), 255)
    if not command:
        raise Fail("sim: interactive ssh sessions are not simulated; pass a command", 255)
    # Like OpenSSH: the words are joined with spaces and the remote shell parses them again.
    text = " ".join(command) if len(command) > 1 else command[0]
    return run_on(ctx.state, node, text)


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
