"""linstor-appliance backup: the appliance's database, exported in the VM and kept on the nodes."""

from __future__ import annotations

import argparse

from builder.backup import options, take


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return take.run(options.from_args(args))
