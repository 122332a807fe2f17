"""`linstor-appliance coldstart gate|hook|retry|probe`: the entry points the node's units and hookscript call.

Dispatched by builder.cli before its full parser is built, so a guest's start pays only for what
the runtime imports.
"""

from __future__ import annotations

import sys

from builder.coldstart import layout, runtime
from builder.coldstart.localnode import LocalNode
from builder.errors import ApplianceError

ACTIONS = ("gate", "hook", "retry", "probe")
USAGE = "usage: linstor-appliance coldstart gate | hook VMID PHASE | retry | probe [STORAGE...]"


def main(argv: list[str]) -> int:
    action, args = (argv[0], argv[1:]) if argv else ("", [])
    if action not in ACTIONS or (action == "hook" and (len(args) != 2 or not args[0].isdigit())) or (
            action in ("gate", "retry") and args):  # fmt: skip
        print(USAGE, file=sys.stderr)
        return 2
    node = LocalNode(layout.root_of(sys.argv[0]))
    try:
        if action == "hook":
            return runtime.drive(runtime.hook(node, int(args[0]), args[1]))
        if action == "gate":
            return runtime.drive(runtime.gate(node))
        if action == "retry":
            return runtime.drive(runtime.retry(node))
        return runtime.drive(runtime.probe(node, args))
    except ApplianceError as error:
        print(f"linstor-coldstart: {error}", file=sys.stderr)
        return 1
