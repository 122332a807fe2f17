"""Argument parsing, dispatch to builder.commands.<verb>, and the one top-level error handler."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from builder import __version__, log
from builder.errors import ApplianceError

# Each name is a module in builder.commands with add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "build": "Build the appliance disk image with mkosi",
    "boot": "Boot an appliance image in QEMU with the serial console as terminal",
    "deploy": "Deploy the appliance as a highly available controller VM on a Proxmox VE cluster",
    "coldstart": "Make guests on DRBD storage wait for the controller after a cluster-wide outage",
    "backup": "Back up the appliance's LINSTOR database from outside the VM, onto every node or a storage",
    "restore": "Bring the appliance back from a backup, or the controller back onto this node",
    "upgrade": "Upgrade the appliance to another LINSTOR release on a second disk, switching back if it fails",
    "status": "Show the appliance's health (exit 0 ok, 1 warning, 2 critical)",
    "sync": "Bring the appliance up to date with the cluster's nodes (allowlist, boot units, replicas)",
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linstor-appliance",
        description="Build and deploy a highly available LINSTOR controller VM for Proxmox VE.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every command that is run")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        module = importlib.import_module(f"builder.commands.{name}")
        command_parser = sub.add_parser(name, help=summary, description=summary)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


# `coldstart <action>` run by a node's hookscript and units: handled before the parser imports every command.
NODE_ACTIONS = ("gate", "hook", "retry", "probe")


def main(argv: Sequence[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    if len(words) >= 2 and words[0] == "coldstart" and words[1] in NODE_ACTIONS:
        from builder.coldstart import node

        sys.exit(node.main(words[1:]))
    parser = make_parser()
    args = parser.parse_args(argv)
    log.set_verbose(args.verbose or args.debug)
    try:
        code = args._module.run(args)
    except ApplianceError as error:
        if args.debug:
            raise
        # One line: what is wrong, then what to do about it.
        log.write(sys.stderr, f"error: {error}")
        sys.exit(1)
    except KeyboardInterrupt as error:
        if args.debug:
            raise
        log.write(sys.stderr, f"error: interrupted{f' by {error}' if str(error) else ''}")
        sys.exit(130)
    except Exception as error:
        if args.debug:
            raise
        # Not foreseen by the code (a parse error, a library's own exception): still one line, and the way to more.
        log.write(sys.stderr, f"error: unexpected {type(error).__name__}: {error}; run the command again with "
                              "--debug to see where it happened, and report it")  # fmt: skip
        sys.exit(1)
    sys.exit(code)
