"""linstor-appliance deploy: the appliance as a highly available controller VM on a Proxmox VE cluster."""

from __future__ import annotations

import argparse

from builder.deploy import options, runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return runner.run(options.from_args(args), explicit=options.explicit_options(args))
