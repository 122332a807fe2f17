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


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser()
    args = parser.parse_args(argv)
    log.set_verbose(args.verbose or args.debug)
    try:
        code = args._module.run(args)
    except ApplianceError as error:
        if args.debug:
            raise
        # One line: what is wrong, then what to do about it.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
