"""linstor-appliance status: the appliance's health on one screen, or as JSON, with a monitoring exit status."""

from __future__ import annotations

from builder.deploy.controller import Directory
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deployment import load
from builder.errors import ApplianceError
from builder.status import checks, report
from builder.status.options import StatusOptions


def run(options: StatusOptions, directory: Directory | None = None) -> int:
    try:
        deployment = load(options.root, options.vmid)
    except ApplianceError as error:
        # Nothing to check is critical too: a monitoring system must not read exit 1 (warning) from it.
        return _print(options, [report.Line("deploy", report.Level.critical, error.message, error.hint)])
    transport = Transport(options.root, (*deployment.options.ssh_options, *options.ssh_options,
                                         f"ConnectTimeout={int(options.timeout)}"))  # fmt: skip
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    status = checks.Status(deployment, pve, transport, directory or Directory(),
                           options.redundancy or deployment.options.redundancy, options.timeout)  # fmt: skip
    return _print(options, checks.run_all(status))


def _print(options: StatusOptions, lines: list[report.Line]) -> int:
    print(report.as_json(lines) if options.json else report.text(lines), flush=True)
    return report.exit_status(lines)
