"""`linstor-appliance` on a simulated node: not a fake, the tool itself (this source tree) where the node has it.

A node has the command once its Debian package is there, i.e. `/usr/bin/linstor-appliance` exists in the
node's root; without it the shell does not find the command (bash's message, exit 127), as on a node where only
`coldstart install` copied its zipapp. Only `coldstart install|remove|status` run, and with `--root` set to the
node's root: an `ssh` session overlays the node's /etc, /var/lib and /dev but not /usr (where install may put its
zipapp), and without root nothing is overlaid, so the tool is told where the node's files are instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ._cli import Context, Fail, run

PACKAGED = "usr/bin/linstor-appliance"
ROOTED = ("install", "remove", "status")
PROJECT = Path(__file__).resolve().parents[3]


def main(ctx: Context, argv: list[str]) -> int:
    if not (ctx.root / PACKAGED).is_file():
        raise Fail("bash: line 1: linstor-appliance: command not found", 127)
    if len(argv) < 2 or argv[0] != "coldstart" or argv[1] not in ROOTED:
        raise Fail("sim: only 'linstor-appliance coldstart install|remove|status' run on a simulated node", 2)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "builder", *argv, "--root", str(ctx.root)]
    return subprocess.run(argv, env=env, check=False).returncode


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
