"""What /usr/local/sbin/linstor-coldstart does, as behaviours for the cold-boot model (sim/coldboot.py).

Each function follows the shell script step by step, with the script's own timings: a probe of an
address where nothing answers costs PROBE_TIMEOUT seconds (curl --connect-timeout), the hook sleeps
1 s between probes, the gate 2 s, the retry polls HA every 2 s. test_scripts.py checks the real
script against the same contract on the live simulation; the settings come from the
/etc/linstor-coldstart.conf that `coldstart install` wrote there. The script's shortcut for guests
whose DRBD devices are already up (LOCAL_FALLBACK) never applies in a cold start: at boot only the
controller VM's resource is brought up without a controller.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from sim.coldboot import Api, Behaviours, Process

ANSWER_COST = 0.05  # a probe that gets an answer
SCRIPT = "/usr/local/sbin/linstor-coldstart"
HOOK = "local:snippets/linstor-coldstart-hook"
HA_BUSY = ("started", "starting", "queued", "relocate", "recovery", "request_start")


@dataclass(frozen=True)
class ScriptSettings:
    controller_vmid: int
    boot_wait: float
    hook_wait: float
    probe_timeout: float
    clear_wait: float

    @classmethod
    def read(cls, root: Path) -> ScriptSettings:
        text = (root / "etc/linstor-coldstart.conf").read_text()
        values = dict(re.findall(r"^([A-Z_]+)=(\S*)$", text, flags=re.M))
        return cls(int(values["CONTROLLER_VMID"]), float(values["BOOT_WAIT"]), float(values["HOOK_WAIT"]),
                   float(values["PROBE_TIMEOUT"]), float(values["CLEAR_WAIT"]))  # fmt: skip


class Script:
    """linstor-coldstart gate | hook | retry."""

    def __init__(self, settings: ScriptSettings) -> None:
        self.s = settings

    def behaviours(self, volid: str = HOOK) -> Behaviours:
        return Behaviours(hooks={volid: self.hook},
                          commands={f"{SCRIPT} gate": self.gate, f"{SCRIPT} retry": self.retry})  # fmt: skip

    def probe(self, api: Api, node: str) -> Generator[float, None, bool]:
        if api.controller_answers(node):
            yield ANSWER_COST
            return True
        yield self.s.probe_timeout
        return api.controller_answers(node)

    def hook(self, api: Api, node: str, vmid: int) -> Generator[float, None, bool]:
        vm = api.vm(vmid)
        if vmid == self.s.controller_vmid or not vm.drbd:
            return True
        if (yield from self.probe(api, node)):
            return True
        slot = self._take_slot(api, node, vmid) if self.s.hook_wait > 0 and vm.ha else None
        if slot is not None:
            try:
                deadline = api.now + self.s.hook_wait
                while api.now < deadline:
                    yield 1.0
                    if (yield from self.probe(api, node)):
                        return True
            finally:
                api.release(node, slot, vmid)
        api.run_files(node).setdefault("refused", set()).add(vmid)
        api.log(f"{node}: hook refused VM {vmid}")
        return False

    def _take_slot(self, api: Api, node: str, vmid: int) -> str | None:
        for index in range(1, api.max_workers):
            if api.try_lock(node, f"slot.{index}", vmid):
                return f"slot.{index}"
        return None

    def gate(self, api: Api, node: str) -> Process:
        boot_guests = [vm for vm in api.local_vms(node)
                       if vm.vmid != self.s.controller_vmid and vm.onboot and not vm.ha and vm.drbd]  # fmt: skip
        if not boot_guests:
            return
        controller = api.vm(self.s.controller_vmid)
        if api.owner(controller.vmid) == node and not controller.ha:
            return
        deadline = api.now + self.s.boot_wait
        while not (yield from self.probe(api, node)):
            if api.now >= deadline:
                api.run_files(node)["gate-expired"] = True
                api.log(f"{node}: gate gave up")
                return
            yield 2.0
        api.log(f"{node}: gate open")

    def retry(self, api: Api, node: str) -> Process:
        yield from self._finish_clearing(api, node)
        refused: set[int] = api.run_files(node).setdefault("refused", set())
        clearing: set[int] = api.var_files(node).setdefault("clearing", set())
        for vmid in sorted(refused):
            if api.owner(vmid) != node:
                refused.discard(vmid)
                continue
            if not (yield from self.probe(api, node)):
                continue
            vm = api.vm(vmid)
            if api.running(vmid):
                refused.discard(vmid)
            elif vm.ha:
                state = api.ha_state(vmid)
                if state == "error":
                    clearing.add(vmid)
                    api.ha_set(vmid, "disabled")
                elif state not in HA_BUSY:
                    refused.discard(vmid)
            else:
                refused.discard(vmid)
                if vm.onboot:
                    yield from api.qm_start(node, vmid)
        yield from self._finish_clearing(api, node)

    def _finish_clearing(self, api: Api, node: str) -> Process:
        clearing: set[int] = api.var_files(node).setdefault("clearing", set())
        refused: set[int] = api.run_files(node).setdefault("refused", set())
        deadline = api.now + self.s.clear_wait
        for vmid in sorted(clearing):
            while api.ha_state(vmid) == "error" and api.now < deadline:
                yield 2.0
            if api.ha_state(vmid) == "error":
                continue
            api.ha_set(vmid, "started")
            clearing.discard(vmid)
            refused.discard(vmid)


def naive_hook(wait: float, probe_timeout: float = 2.0) -> Behaviours:
    """The design the seed warns about: every guest's hook waits for the controller, in any worker slot."""

    def hook(api: Api, node: str, vmid: int) -> Generator[float, None, bool]:
        deadline = api.now + wait
        while not api.controller_answers(node):
            if api.now >= deadline:
                return False
            yield 1.0 + probe_timeout
        return True

    return Behaviours(hooks={HOOK: hook})
