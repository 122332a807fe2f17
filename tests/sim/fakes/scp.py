"""Fake `scp [-r] [-p] [-q] [-o opt] src... dst` between simulated nodes (files copied directly)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ._cli import Context, Fail, run
from .remote import path_on, resolve_host, unreachable

WITH_ARG = set("cFiJlOoPS")


def _endpoint(ctx: Context, spec: str) -> Path:
    host, sep, path = spec.partition(":")
    if not sep or "/" in host:
        return ctx.host_path(spec)
    node = resolve_host(ctx.state, host)
    name = host.split("@", 1)[-1]
    if node is None or not ctx.state.node_online(node):
        raise Fail(f"{unreachable(name)}\nscp: Connection closed", 255)
    return path_on(ctx.state, node, path or ".")


def main(ctx: Context, argv: list[str]) -> int:
    recursive = False
    files: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("-") and len(arg) > 1:
            recursive = recursive or "r" in arg[1:]
            index += 2 if arg[-1] in WITH_ARG and len(arg) == 2 else 1
            continue
        files.append(arg)
        index += 1
    if len(files) < 2:
        raise Fail("usage: scp [-346ABCOpqRrsTv] [-c cipher] [-D sftp_server_path] [-F ssh_config]\n"
                   "           [-i identity_file] [-J destination] [-l limit] [-o ssh_option]\n"
                   "           [-P port] [-S program] [-X sftp_option] source ... target", 1)  # fmt: skip
    target = _endpoint(ctx, files[-1])
    sources = [_endpoint(ctx, spec) for spec in files[:-1]]
    for spec, source in zip(files[:-1], sources, strict=True):
        if not source.exists():
            raise Fail(f"scp: {spec.partition(':')[2] or spec}: No such file or directory", 1)
        destination = target / source.name if target.is_dir() else target
        if source.is_dir():
            if not recursive:
                raise Fail(f"scp: {spec}: not a regular file", 1)
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    return 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
