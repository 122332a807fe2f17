"""Fake `apt-cache madison <pkg>...` and `apt-cache policy <pkg>...` for the node's simulated repository."""

from __future__ import annotations

import sys

from .. import apt, debversion
from ._cli import Context, Fail, run

INDEX = f"{apt.REPOSITORY_URI} {apt.REPOSITORY_DIST} {apt.ARCH} Packages"


def _versions(ctx: Context, package: str) -> list[str]:
    return sorted(apt.repository(ctx.state, ctx.node).get(package, []), key=debversion.sort_key, reverse=True)


def _unknown(ctx: Context, package: str) -> bool:
    if _versions(ctx, package) or package in apt.installed(ctx.state, ctx.node):
        return False
    print(f"N: Unable to locate package {package}", file=sys.stderr)
    return True


def madison(ctx: Context, packages: list[str]) -> int:
    # apt-cache prints name and version right-aligned in 10 columns; the dpkg status file is not listed.
    for package in packages:
        if _unknown(ctx, package):
            continue
        for version in _versions(ctx, package):
            print(f"{package:>10} | {version:>10} | {INDEX}")
    return 0


def policy(ctx: Context, packages: list[str]) -> int:
    for package in packages:
        if _unknown(ctx, package):
            continue
        current = apt.installed(ctx.state, ctx.node).get(package)
        versions = _versions(ctx, package)
        if current is not None and current not in versions:
            versions = sorted([*versions, current], key=debversion.sort_key, reverse=True)
        print(f"{package}:\n  Installed: {current or '(none)'}\n"
              f"  Candidate: {apt.candidate(ctx.state, ctx.node, package) or '(none)'}\n  Version table:")  # fmt: skip
        for version in versions:
            mark = " ***" if version == current else "    "
            print(f"{mark} {version} 500")
            if version in _versions(ctx, package):
                print(f"        500 {INDEX}")
            if version == current:
                print("        100 /var/lib/dpkg/status")
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    words = [arg for arg in argv if not arg.startswith("-")]
    if not words:
        raise (
            Fail("E: No packages found", 100)
            if argv
            else Fail("apt 2.6.1 (amd64)\nUsage: apt-cache [options] command", 1)
        )
    command, packages = words[0], words[1:]
    if command == "madison":
        return madison(ctx, packages)
    if command == "policy":
        return policy(ctx, packages)
    raise Fail(f"E: Invalid operation {command}", 100)


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
