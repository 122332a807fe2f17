"""Step 9: the controller in the VM answers, runs the cluster's version, knows the same nodes, and the
satellites reconnect to it."""

from __future__ import annotations

import time
from typing import Any

from builder import log
from builder.deploy import controller, wait
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step
from builder.errors import die


class Verify(Step):
    key = "verify"
    title = "Verify the controller in the VM"

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        here = f.local.name
        return [
            Action(here, f"wait up to {o.wait_timeout:.0f}s for the LINSTOR REST API at {f.appliance_endpoint}"),
            Action(here, f"check that it runs LINSTOR {f.linstor_version}"),
            Action(here, "check that its node list equals the list recorded before the migration"),
            Action(here, "wait until every satellite is ONLINE with it"),
        ]

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        started = time.monotonic()
        endpoint = f.appliance_endpoint
        version = wait.until(lambda: controller.probe(ctx.directory, endpoint, timeout=3), timeout=o.wait_timeout,
                             what=f"the LINSTOR controller in VM {o.vmid} answering at {endpoint}",
                             hint=f"look at the VM's console (qm terminal {o.vmid}): the deploy check prints why the "
                                  "controller did not start", interval=1.0)  # fmt: skip
        log.info(f"the controller at {endpoint} answers (LINSTOR {version}) after {time.monotonic() - started:.0f}s")
        if version != f.linstor_version:
            die(f"the controller in the VM runs LINSTOR {version}, the cluster {f.linstor_version}",
                hint="LINSTOR has no mixed-version operation; use an image built with --linstor-version "
                     f"{f.linstor_version}")  # fmt: skip
        expected = sorted((n["name"], n["type"]) for n in ctx.j.fact("nodes_before", []))
        with controller.connect(ctx.directory, endpoint) as ctrl:
            found = sorted((n.name, n.type) for n in ctrl.nodes())
            if found != expected:
                die(f"the controller in the VM knows the nodes {_names(found)}, the old one knew {_names(expected)}",
                    hint="the database in the VM is not the one that was backed up")
            satellites = [name for name, kind in expected if kind in controller.SATELLITE_TYPES]

            def all_online() -> bool:
                states = {n.name: n.status for n in ctrl.nodes()}
                return all(states.get(name) == "ONLINE" for name in satellites)

            wait.until(all_online, timeout=o.wait_timeout, what="every satellite reconnecting to the VM's controller",
                       hint="check 'linstor node list' against the VM and the satellites' logs", interval=1.0)
        return {"version": version, "nodes": [name for name, _ in found], "satellites_online": satellites,
                "seconds": round(time.monotonic() - started, 1)}  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        return [f"controller in the VM: LINSTOR {record.get('version')}, nodes {', '.join(record.get('nodes', []))}, "
                f"satellites online: {', '.join(record.get('satellites_online', []))}"]


def _names(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in pairs) or "(none)"
