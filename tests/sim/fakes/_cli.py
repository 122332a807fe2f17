"""What every fake command shares: who and where it runs, and how it fails."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..state import ENV_NODE, ENV_ROOT, SimState


class Fail(Exception):
    """Print `message` on stderr and exit with `code` (PVE's die in a CLI = exit 255)."""

    def __init__(self, message: str, code: int = 255) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Context:
    state: SimState
    node: str
    root: Path

    @property
    def pve(self) -> Path:
        return self.state.node_pve(self.node)

    def host_path(self, path: str) -> Path:
        """Map a path as a real tool on the node would see it into the simulation.

        Paths already inside the state directory are taken as they are; otherwise the node's
        root is tried first, then the real file system (images built by the tests live there).
        """
        given = Path(path)
        if str(given).startswith(str(self.state.dir)):
            return given
        inside = self.root / str(given).lstrip("/")
        if given.is_absolute() and (inside.exists() or inside.is_symlink() or not given.exists()):
            return inside
        return given


def context() -> Context:
    state = SimState.from_env()
    node = os.environ.get(ENV_NODE) or ""
    if node not in state.nodes():
        raise SystemExit(f"{ENV_NODE}={node!r} is not a node of this simulated cluster")
    root = Path(os.environ.get(ENV_ROOT) or state.node_root(node))
    return Context(state=state, node=node, root=root)


def run(main: Callable[[Context, list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a fake's main with its failures turned into stderr text and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        ctx = context()
        code = main(ctx, args)
    except Fail as failure:
        sys.stdout.flush()
        if failure.message:
            print(failure.message, file=sys.stderr, flush=True)
        return failure.code
    sys.stdout.flush()
    return int(code or 0)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_options(
    argv: list[str], known: dict[str, bool], usage: str, positional_max: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """Getopt::Long as PVE's CLI uses it: `--key value` / `-key value`, booleans may omit the value.

    `known` maps option name -> takes a value. An unknown option prints Getopt's warning and
    PVE's `400 unable to parse option` plus the short usage (proxmox.md section 2, inferred layout).
    """
    positional: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("-") and len(arg) > 1 and not arg.lstrip("-").isdigit():
            name = arg.lstrip("-")
            value: str | None = None
            if "=" in name:
                name, value = name.split("=", 1)
            if name not in known:
                raise Fail(f"Unknown option: {name}\n400 unable to parse option\n{usage}")
            if value is None:
                if known[name]:
                    if index >= len(argv):
                        raise Fail(f"Option {name} requires an argument\n400 unable to parse option\n{usage}")
                    value = argv[index]
                    index += 1
                else:
                    # Boolean flag: an explicit 0/1 may follow.
                    if index < len(argv) and argv[index] in ("0", "1"):
                        value = argv[index]
                        index += 1
                    else:
                        value = "1"
            options[name] = value
        else:
            positional.append(arg)
    if positional_max is not None and len(positional) > positional_max:
        raise Fail(f"400 too many arguments\n{usage}")
    return positional, options
