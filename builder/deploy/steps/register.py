"""Step 4: the VM registered as a LINSTOR node of type Controller, as the seed does.

The registration is informational (no connection is made to Controller nodes, linstor.md section 8);
it documents where the controller runs. It is made while the controller on this node still runs, so
the node list the VM's controller starts with already contains it.
"""

from __future__ import annotations

from typing import Any

from builder.deploy import controller
from builder.deploy.context import Context
from builder.deploy.steps.base import Action, Step
from builder.errors import die


class Register(Step):
    key = "register"
    title = "Register the VM as a LINSTOR Controller node"

    def applies(self, ctx: Context) -> bool:
        return ctx.options.register_node

    def describe(self, ctx: Context) -> list[Action]:
        o, f = ctx.options, ctx.f
        return [Action(f.local.name, f"LINSTOR API at {f.host_endpoint}: node create {o.name} "
                                     f"{o.address.ip if o.address else '?'} --node-type Controller")]  # fmt: skip

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        verb = "registered" if record.get("created") else "was already registered"
        return [f"LINSTOR node {record.get('node')} (Controller) {verb}"]

    def apply(self, ctx: Context) -> dict[str, Any]:
        o, f = ctx.options, ctx.f
        assert o.address is not None
        address = str(o.address.ip)
        with controller.connect(ctx.directory, f.host_endpoint) as ctrl:
            existing = next((n for n in ctrl.nodes() if n.name.casefold() == o.name.casefold()), None)
            if existing is None:
                ctrl.create_controller_node(o.name, address, f.appliance_endpoint.port)
                return {"node": o.name, "created": True}
        if existing.type != "CONTROLLER" or existing.address != address:
            die(f"LINSTOR already has a node {o.name} ({existing.type.lower()} at {existing.address})",
                hint="choose another --name, or --no-register-node")
        return {"node": o.name, "created": False}
