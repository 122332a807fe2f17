"""linstor-appliance coldstart install|remove|status: start order after a cluster-wide outage."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from builder.coldstart import install as installer
from builder.coldstart import status
from builder.coldstart.settings import Settings

DEFAULTS = Settings()
# Every wait is bounded, and so are the bounds: pve-guests holds up the node's boot while the gate waits,
# and a waiting hook holds its guest's configuration lock and an LRM worker.
MAX_BOOT_WAIT = 3600
MAX_HOOK_WAIT = 600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="install the gate, hook and retry timer on this node (idempotent)",
                             description="Install cold-start support on this node. Run it on every node; the "
                             "guests on DRBD storage get the hook once every node has it.")  # fmt: skip
    install.add_argument("--controller-vmid", type=int, metavar="ID",
                         help="the controller VM (default: the VM whose disk is /dev/drbd/by-res/<res>/0)")
    install.add_argument("--snippets-storage", default=DEFAULTS.snippets_storage, metavar="STORAGE",
                         help="directory storage for the hookscript (default: %(default)s)")
    install.add_argument("--boot-wait", type=_bounded(MAX_BOOT_WAIT), default=DEFAULTS.boot_wait, metavar="SECONDS",
                         help="how long pve-guests waits for a controller at boot, at most "
                         f"{MAX_BOOT_WAIT} (default: %(default)s)")
    install.add_argument("--hook-wait", type=_bounded(MAX_HOOK_WAIT), default=DEFAULTS.hook_wait, metavar="SECONDS",
                         help="how long the hook of an HA guest may wait for a controller, at most "
                         f"{MAX_HOOK_WAIT} (default: %(default)s)")
    install.add_argument("--retry-interval", type=_seconds, default=DEFAULTS.retry_interval, metavar="SECONDS",
                         help="how often refused starts are retried (default: %(default)s)")
    for name, text in (("remove", "undo install on this node, restoring what was there before"),
                       ("status", "show, per guest, what it waits for")):  # fmt: skip
        sub.add_parser(name, help=text, description=text)
    for action in sub.choices.values():
        action.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                            help="the node's file system root (default: /)")


def _bounded(most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _seconds(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most} seconds")
        return value

    return parse


def _seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    if args.action == "install":
        retry = max(args.retry_interval, 1)
        installer.install(root, Settings(controller_vmid=args.controller_vmid, snippets_storage=args.snippets_storage,
                                         boot_wait=args.boot_wait, hook_wait=args.hook_wait,
                                         retry_interval=retry))  # fmt: skip
    elif args.action == "remove":
        installer.remove(root)
    else:
        for line in status.report(root):
            print(line)
    return 0
