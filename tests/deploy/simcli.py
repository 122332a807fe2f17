"""`linstor-appliance` as a separate process on a simulated node: `python -m deploy.simcli deploy|upgrade ...`.

The real entry point (builder.cli.main: argument parsing, signal handling, the one-line errors, exit
codes), with the two things only the simulation knows: the node's root prefix and where its LINSTOR
controllers listen. Run it with the node's environment (SimCluster.env(node)) and PYTHONPATH set to the
project and its tests folder.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from sim import network
from sim.state import SimState

from builder import cli
from builder.deploy import controller, options, runner
from builder.deploy.controller import Endpoint
from builder.upgrade import options as upgrade_options
from builder.upgrade import runner as upgrade_runner


class ProcessDirectory(controller.Directory):
    def __init__(self, state: SimState, node: str) -> None:
        self.state = state
        self.node = node

    def uri(self, endpoint: Endpoint) -> str:
        host = endpoint.host
        if host in ("localhost", "127.0.0.1", "::1", "::", "0.0.0.0"):
            host = str(self.state.nodes()[self.node]["ip"])
        entry = network.endpoints(self.state).get(host)
        # Port 1 refuses at once, like an address where nothing listens.
        return f"linstor://127.0.0.1:{entry['port'] if entry else 1}"


def main() -> None:
    state = SimState.from_env()
    node = os.environ["PVE_SIM_NODE"]
    root = Path(os.environ["PVE_SIM_ROOT"])
    from_args = options.from_args
    run = runner.run

    def from_node_args(args: argparse.Namespace, root_: Path = root) -> options.Options:  # noqa: ARG001
        return from_args(args, root=root)

    def run_on_node(opts: options.Options, directory: controller.Directory | None = None,
                    explicit: Iterable[str] = ()) -> int:  # fmt: skip
        return run(opts, directory or ProcessDirectory(state, node), explicit)

    options.from_args = from_node_args  # type: ignore[assignment]
    runner.run = run_on_node  # type: ignore[assignment]
    upgrade_from_args = upgrade_options.from_args
    upgrade_run = upgrade_runner.run

    def upgrade_from_node_args(args: argparse.Namespace, root_: Path = root) -> upgrade_options.Options:  # noqa: ARG001
        return upgrade_from_args(args, root=root)

    def upgrade_on_node(opts: upgrade_options.Options, directory: controller.Directory | None = None) -> int:
        return upgrade_run(opts, directory or ProcessDirectory(state, node))

    upgrade_options.from_args = upgrade_from_node_args  # type: ignore[assignment]
    upgrade_runner.run = upgrade_on_node  # type: ignore[assignment]
    cli.main()


if __name__ == "__main__":
    main()
