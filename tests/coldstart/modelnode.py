"""The runtime's `Node` on the cold-boot model (sim/coldboot.py): the shipped gate, hook and retry, simulated time.

builder/coldstart/runtime.py is the code the nodes run; on a node `LocalNode` answers its questions
from files and commands. Here the cold-boot model answers them, with the costs of the real ones: a
probe of an address where nothing answers takes PROBE_TIMEOUT seconds (curl --connect-timeout), one
that gets an answer ANSWER_COST; `qm start` is the model's start task, hook included. What a node
reads - the guests' configurations, storage.cfg, HA resources, /etc/linstor-coldstart.conf - comes
from what `coldstart install` left on the live simulation (coldboot_spec.spec_from_sim), and where a
guest is from the model as HA moves it. The local-activation fallback never applies in a cold start:
at boot only the controller VM's resource is up.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Generator
from functools import cached_property

from sim.coldboot import Api, Behaviours, ClusterSpec, Process

from builder.coldstart import pveconf, runtime
from builder.coldstart.pveconf import Guest, Storage
from builder.coldstart.runtime import Config

ANSWER_COST = 0.05  # a probe that gets an answer


class ModelNode:
    """One run of an action on `name`: a process of its own, holding its own lock slots."""

    def __init__(self, api: Api, name: str, config: Config, cluster: Cluster) -> None:
        self.api = api
        self.name = name
        self.config = config
        self.cluster = cluster

    def now(self) -> float:
        return self.api.now

    def storages(self) -> dict[str, Storage]:
        return self.cluster.drbd

    def guest(self, vmid: int) -> Guest | None:
        if vmid not in self.cluster.configs:
            return None
        return Guest(vmid, self.api.owner(vmid), self.cluster.configs[vmid])

    def guests_here(self) -> list[Guest]:
        return [Guest(vm.vmid, self.name, self.cluster.configs[vm.vmid]) for vm in self.api.local_vms(self.name)]

    def ha_managed(self, vmid: int) -> bool:
        return self.api.vm(vmid).ha

    def max_workers(self) -> int:
        return self.api.max_workers

    def device_up(self, resource: str) -> bool:
        return self.api.device_up(self.name, resource)

    def probe(self, storage: Storage, address: str) -> Process:
        if self.api.controller_answers(self.name):
            yield ANSWER_COST
            return True
        yield float(self.config.probe_timeout)
        return self.api.controller_answers(self.name)

    def take_slot(self, slot: int) -> bool:
        return self.api.try_lock(self.name, f"slot.{slot}", self)

    def release_slot(self, slot: int) -> None:
        self.api.release(self.name, f"slot.{slot}", self)

    def ha_state(self, vmid: int) -> str:
        return self.api.ha_state(vmid)

    def ha_set(self, vmid: int, state: str) -> bool:
        self.api.ha_set(vmid, state)
        return True

    def running(self, vmid: int) -> bool:
        return self.api.running(vmid)

    def qm_start(self, vmid: int) -> Process:
        return self.api.qm_start(self.name, vmid)

    def _files(self, where: str) -> dict[int, list[str]]:
        files = self.api.run_files(self.name) if where == "run" else self.api.var_files(self.name)
        found: dict[int, list[str]] = files.setdefault(f"{where}-markers", {})
        return found

    def refused(self) -> list[int]:
        return sorted(self._files("run"))

    def add_refusal(self, vmid: int, stores: list[str]) -> None:
        self._files("run")[vmid] = stores
        self.api.log(f"{self.name}: hook refused VM {vmid}")

    def drop_refusal(self, vmid: int) -> None:
        self._files("run").pop(vmid, None)

    def clearing(self) -> list[int]:
        return sorted(self._files("var"))

    def add_clearing(self, vmid: int) -> None:
        self._files("var")[vmid] = []

    def drop_clearing(self, vmid: int) -> None:
        self._files("var").pop(vmid, None)

    def gate_expired(self) -> None:
        self.api.run_files(self.name)["gate-expired"] = True

    def log(self, text: str) -> None:
        self.api.log(f"{self.name}: {text}")


class Cluster:
    """What every node reads the same: storage.cfg and the guests' configurations."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.configs = {vm.vmid: dict(vm.config) for vm in spec.vms}

    @cached_property
    def drbd(self) -> dict[str, Storage]:
        return pveconf.drbd_only(pveconf.storages_in(self.spec.storage_cfg))


def installed(spec: ClusterSpec, config: Config) -> Behaviours:
    """The hookscripts and commands `coldstart install` left in `spec`, run by the shipped runtime."""
    cluster = Cluster(spec)
    actions: dict[str, Callable[[runtime.Node], Generator[float, None, int]]] = {
        "gate": runtime.gate, "retry": runtime.retry}  # fmt: skip

    def hook(api: Api, node: str, vmid: int) -> Generator[float, None, bool]:
        code = yield from runtime.hook(ModelNode(api, node, config, cluster), vmid, "pre-start")
        return code == 0

    def command(action: Callable[[runtime.Node], Generator[float, None, int]]) -> Callable[[Api, str], Process]:
        def run(api: Api, node: str) -> Process:
            yield from action(ModelNode(api, node, config, cluster))

        return run

    commands = {}
    for node in spec.nodes:
        for line in (*node.exec_start_pre, *(t.command for t in node.timers)):
            line = line.lstrip("-@+!:")
            words = shlex.split(line)
            if words[-2:-1] == ["coldstart"] and words[-1] in actions:
                commands[line] = command(actions[words[-1]])
    hooks: dict[str, Callable[[Api, str, int], Generator[float, None, bool]]] = {
        vm.hookscript: hook for vm in spec.vms if vm.hookscript}  # fmt: skip
    return Behaviours(hooks=hooks, commands=commands)
