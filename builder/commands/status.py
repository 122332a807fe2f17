"""linstor-appliance status: one screen on the appliance's health; exit 0 ok, 1 warning, 2 critical."""

from __future__ import annotations

import argparse

from builder import status
from builder.status import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return status.run(options.from_args(args))
