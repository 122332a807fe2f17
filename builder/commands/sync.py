"""linstor-appliance sync: the appliance follows nodes joining or leaving the Proxmox VE cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from builder import sync
from builder.sync_options import OPTIONS, SyncOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OPTIONS.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    opts: SyncOptions = OPTIONS.build(OPTIONS.parse(args), root=Path("/"))
    return sync.run(opts.root, opts.vmid, opts.ssh_options)
