"""linstor-appliance restore: the appliance back from a backup, or the controller back onto this node."""

from __future__ import annotations

import argparse

from builder.restore import options, runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return runner.run(options.from_args(args))
