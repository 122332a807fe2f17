"""linstor-appliance boot: run an image in QEMU with the serial console as the terminal."""

from __future__ import annotations

import argparse

from builder.errors import die


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="the raw image to boot")


def run(args: argparse.Namespace) -> int:
    die("booting is not implemented yet", hint="use qemu-system-x86_64 directly")
