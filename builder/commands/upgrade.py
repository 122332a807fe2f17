"""linstor-appliance upgrade: the appliance to another LINSTOR release, beside the old disk, with the way back."""

from __future__ import annotations

import argparse

from builder.upgrade import options, runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return runner.run(options.from_args(args))
