"""Fake `qemu-img` subset for writing raw images onto simulated DRBD devices:
`dd [-f raw] [-O raw] [bs=N] if=SRC of=DST`, `convert [-p] [-n] [-f raw] -O raw SRC DST`, `info [--output=json] FILE`.

Opening a DRBD device for writing promotes it on this node; another Primary without
allow-two-primaries makes the open fail with EMEDIUMTYPE, as DRBD's auto-promote does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import drbd
from ._cli import Context, Fail, run


def _copy(ctx: Context, src_arg: str, dst_arg: str) -> None:
    src = ctx.host_path(src_arg)
    if not src.is_file():
        raise Fail(f"qemu-img: Could not open '{src_arg}': No such file or directory", 1)
    res = drbd.res_of_device(dst_arg)
    dst = ctx.host_path(dst_arg)
    holder = f"qemu-img:{os.getpid()}"
    if res is not None:
        try:
            with ctx.state.locked():
                drbd.open_for_write(ctx.state, ctx.node, res, holder)
        except drbd.DrbdError as err:
            raise Fail(f"qemu-img: {err}", 1) from err
    try:
        if res is not None and src.stat().st_size > dst.stat().st_size:
            raise Fail(f"qemu-img: error while writing at byte {dst.stat().st_size}: No space left on device", 1)
        mode = "r+b" if dst.exists() else "wb"
        with open(src, "rb") as reader, open(dst, mode) as writer:
            while chunk := reader.read(4 * 1024 * 1024):
                writer.write(chunk)
    finally:
        if res is not None:
            with ctx.state.locked():
                drbd.close(ctx.state, ctx.node, res, holder)


def main(ctx: Context, argv: list[str]) -> int:
    if not argv:
        raise Fail("qemu-img: Not enough arguments\nTry 'qemu-img --help' for more information", 1)
    verb, rest = argv[0], argv[1:]
    if verb == "dd":
        kv = dict(arg.split("=", 1) for arg in rest if "=" in arg and not arg.startswith("-"))
        if "if" not in kv or "of" not in kv:
            raise Fail("qemu-img: Must specify both input and output files", 1)
        _copy(ctx, kv["if"], kv["of"])
        return 0
    if verb == "convert":
        files = []
        skip = False
        for arg in rest:
            if skip:
                skip = False
                continue
            if arg in ("-f", "-O", "-o", "-t", "-T", "-m", "-W", "-S", "-l", "-r"):
                skip = True
                continue
            if not arg.startswith("-"):
                files.append(arg)
        if len(files) != 2:
            raise Fail("qemu-img: sim: convert needs exactly one source and one target", 1)
        _copy(ctx, files[0], files[1])
        return 0
    if verb == "info":
        files = [a for a in rest if not a.startswith("-")]
        path = ctx.host_path(files[0]) if files else Path()
        if not path.exists():
            raise Fail(f"qemu-img: Could not open '{files[0] if files else ''}': No such file or directory", 1)
        size = path.stat().st_size
        if "--output=json" in rest:
            print(json.dumps({"virtual-size": size, "filename": files[0], "format": "raw",
                              "actual-size": size, "dirty-flag": False}, indent=4))  # fmt: skip
        else:
            print(f"image: {files[0]}\nfile format: raw\nvirtual size: {size} B ({size} bytes)\ndisk size: {size} B")
        return 0
    raise Fail(f"qemu-img: sim: '{verb}' is not simulated", 1)


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
