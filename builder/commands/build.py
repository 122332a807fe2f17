"""linstor-appliance build: the appliance disk image, its compressed copy, manifest and checksums."""

from __future__ import annotations

import argparse

from builder import config as configuration
from builder.build import build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    configuration.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = configuration.from_args(args)
    build(config)
    return 0
