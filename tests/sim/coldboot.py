"""A whole-cluster cold start as a deterministic discrete-event model on a simulated clock.

The live simulation (cluster.py) runs every command as a real process and HA as one global tick,
which is right for checking commands and files but cannot show a boot race: a hookscript there
blocks the whole simulation, there are no LRM worker slots and no boot timeline. This module
models what a power-on of every node does, in seconds of simulated time, following
`shared/reference/proxmox.md`:

- boot (section 5): a node joins the cluster `os_boot` seconds after power returns; the DRBD units
  bring up the resources whose .res files they keep; pve-ha-crm / pve-ha-lrm start, then
  pve-guests runs its ExecStartPre commands and `startall`, which waits for quorum and starts the
  on-boot guests that are not HA-managed one after the other, each start task including the
  pre-start hook;
- HA (section 6.4, pve-ha-manager 4.0 `Manager.pm` / `LRM.pm`): one CRM master round every 10 s;
  an LRM round every 10 s per node that queues a start for every service the CRM put in `started`
  on that node, then forks at most `max_workers` workers (datacenter.cfg, default 4) in
  `run_workers` order - most start tries first, then service id as a string - once a second for
  up to 8 s; a worker runs the whole start task (hook, then storage activation); a failure is
  retried on the node up to `max_restart` times (ETRY_AGAIN), then reported as ERROR and the CRM
  relocates up to `max_relocate` times, then sets `error`, which only `disabled` clears; a node
  that stays away `fence_after` seconds after the master started is fenced and its services are
  recovered elsewhere (its lock expired during the outage);
- storage: a disk on a `drbd` storage activates only while a LINSTOR controller answers; a disk
  attached by DRBD device path only needs the device up on the node; the controller lives in the
  controller VM and answers `answer_after` seconds after that VM started. linstor-proxmox 8.3.0's
  local-activation fallback is not modelled (a guest's DRBD device is up at boot only if
  drbd.service brings every kept resource up).

What the nodes run besides PVE - a hookscript, extra ExecStartPre commands of pve-guests, timer
units - is not modelled here: `spec_from_sim()` reads which ones a live simulated cluster has
installed, and the caller supplies a behaviour for each (`Behaviours`), written against `Api`,
which offers what a script on a node can see and do (probe a controller, ha-manager, qm, files in
/run, flock). Timer units fire OnBootSec after boot, then OnUnitActiveSec after each activation.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from . import ha
from .coldboot_spec import ClusterSpec, NodeSpec, TimerSpec, VmSpec, spec_from_sim

Process = Generator[float, None, Any]
__all__ = ["Api", "Behaviours", "Boot", "ClusterSpec", "ColdBoot", "Kernel", "NodeSpec", "Process", "Result",
           "TimerSpec", "Timing", "VmSpec", "spec_from_sim"]  # fmt: skip


# --- the clock -------------------------------------------------------------------------------------
class Kernel:
    """Events on a simulated clock; a process is a generator that yields how many seconds it sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), action))

    def spawn(self, process: Process, done: Callable[[Any], None] | None = None) -> None:
        def step() -> None:
            try:
                delay = next(process)
            except StopIteration as stop:
                if done is not None:
                    done(stop.value)
                return
            self.call_at(self.now + max(float(delay), 0.0), step)

        self.call_at(self.now, step)

    def run(self, until: float, stop: Callable[[], bool]) -> None:
        while self._queue and self._queue[0][0] <= until and not stop():
            when, _, action = heapq.heappop(self._queue)
            self.now = when
            action()


@dataclass(frozen=True)
class Timing:
    crm_round: float = 10.0
    lrm_round: float = 10.0
    lrm_work_window: float = 8.0  # run_workers forks for at most 8 s per LRM round
    fence_after: float = 60.0  # node_is_offline_delayed: 60 s after the master first saw it offline
    qemu_start: float = 1.0  # storage activation and QEMU start after the pre-start hook
    units_after_join: float = 2.0  # pve-ha-crm / pve-ha-lrm after pve-cluster
    guests_after_join: float = 5.0  # pve-guests after the HA services and the API daemons


@dataclass(frozen=True)
class Boot:
    """One power-on: when power returns to each node, how long it takes to join, the controller's start time."""

    power_on: dict[str, float]
    os_boot: dict[str, float]
    answer_after: float
    seed: int = 0

    def joined(self, node: str) -> float:
        return self.power_on[node] + self.os_boot[node]


# --- what behaviours may use ----------------------------------------------------------------------
class Api:
    """What a script on a node sees and can do, with the cost of each step in simulated seconds."""

    def __init__(self, model: ColdBoot) -> None:
        self._m = model

    @property
    def now(self) -> float:
        return self._m.kernel.now

    @property
    def max_workers(self) -> int:
        return self._m.spec.max_workers

    def controller_answers(self, node: str) -> bool:
        """GET /health on the controllers in storage.cfg, from `node`."""
        return self._m.node_up(node) and self._m.controller_answers()

    def device_up(self, node: str, resource: str) -> bool:
        """/dev/drbd/by-res/<resource>/0 exists on the node."""
        return resource in self._m.devices.get(node, set())

    def controller_vm_running(self) -> bool:
        return self._m.running_on(self._m.spec.controller_vmid) is not None

    def vm(self, vmid: int) -> VmSpec:
        return self._m.vms[vmid]

    def owner(self, vmid: int) -> str:
        return self._m.owner[vmid]

    def local_vms(self, node: str) -> list[VmSpec]:
        return [self._m.vms[v] for v in sorted(self._m.owner) if self._m.owner[v] == node]

    def running(self, vmid: int) -> bool:
        return self._m.running_on(vmid) is not None

    def ha_state(self, vmid: int) -> str:
        """The CRM's state as `ha-manager status` shows it."""
        svc = self._m.services.get(f"vm:{vmid}")
        return svc.state if svc else "none"

    def ha_set(self, vmid: int, state: str) -> None:
        """`ha-manager set vm:<id> --state <state>`: the CRM sees it in its next round."""
        self._m.services[f"vm:{vmid}"].requested = state
        self._m.log(f"ha-manager set vm:{vmid} --state {state}")

    def qm_start(self, node: str, vmid: int) -> Process:
        """`qm start <vmid>` of a guest that is not HA-managed: the start task, hook included."""
        return self._m.start_task(node, vmid, "qm")

    def run_files(self, node: str) -> dict[str, Any]:
        """The node's /run (tmpfs): gone when the node powers off."""
        return self._m.run_files.setdefault(node, {})

    def var_files(self, node: str) -> dict[str, Any]:
        """The node's /var/lib: survives a power cycle."""
        return self._m.var_files.setdefault(node, {})

    def try_lock(self, node: str, name: str, owner: object) -> bool:
        """flock -n; the lock is dropped with release() when the holding process exits."""
        locks = self._m.locks.setdefault(node, {})
        if locks.get(name) is None:
            locks[name] = owner
            return True
        return False

    def release(self, node: str, name: str, owner: object) -> None:
        locks = self._m.locks.setdefault(node, {})
        if locks.get(name) is owner:
            del locks[name]

    def log(self, text: str) -> None:
        self._m.log(text)


HookFn = Callable[[Api, str, int], Generator[float, None, bool]]
CommandFn = Callable[[Api, str], Process]


@dataclass
class Behaviours:
    """What the installed scripts do: by hookscript volume id, and by command line."""

    hooks: dict[str, HookFn] = field(default_factory=dict)
    commands: dict[str, CommandFn] = field(default_factory=dict)

    def hook(self, volid: str) -> HookFn:
        if volid not in self.hooks:
            raise KeyError(f"no behaviour for hookscript {volid}")
        return self.hooks[volid]

    def command(self, command: str) -> CommandFn:
        key = command.lstrip("-@+!:")
        if key not in self.commands:
            raise KeyError(f"no behaviour for command {key}")
        return self.commands[key]


# --- the model ---------------------------------------------------------------------------------------
@dataclass
class Service:
    sid: str
    vmid: int
    requested: str = "started"
    state: str = "started"  # the state before the outage
    uid: int = 0
    relocate_trial: int = 0
    failed_nodes: set[str] = field(default_factory=set)
    target: str | None = None


@dataclass
class Worker:
    sid: str
    uid: int
    queued: float
    start_tries: int = 0
    forked: float | None = None
    result: bool | None = None
    finished: float | None = None


@dataclass
class StartRecord:
    vmid: int
    node: str
    via: str  # lrm, startall, qm
    began: float
    hook_seconds: float = 0.0
    ended: float | None = None
    ok: bool | None = None


@dataclass
class Result:
    started: dict[int, float]  # vmid -> time it began running (the last start)
    running: dict[int, str]  # vmid -> node at the end
    ha_states: dict[str, str]
    starts: list[StartRecord]
    controller_queued: list[tuple[float, float | None]]  # (queued, forked) of the controller VM's LRM starts
    answer_time: float | None
    joined: dict[str, float]
    quorum_time: float | None
    end: float
    log: list[str]

    def not_running(self) -> list[int]:
        return sorted(v for v in self.started if v not in self.running)


class ColdBoot:
    """One cold start of the cluster in `spec`, with `behaviours` for the scripts it has installed."""

    def __init__(self, spec: ClusterSpec, behaviours: Behaviours, boot: Boot, timing: Timing | None = None,
                 trace: bool = False) -> None:  # fmt: skip
        self.spec = spec
        self.behaviours = behaviours
        self.boot = boot
        self.timing = timing or Timing()
        self.trace = trace
        self.kernel = Kernel()
        self.api = Api(self)
        self.rng = random.Random(f"{boot.seed}:phases")
        self.vms = {vm.vmid: vm for vm in spec.vms}
        self.owner = {vm.vmid: vm.node for vm in spec.vms}
        self.online: set[str] = set()
        self.devices: dict[str, set[str]] = {}
        self.running: dict[int, tuple[str, float]] = {}
        self.services = {vm.sid: Service(vm.sid, vm.vmid) for vm in spec.vms if vm.ha}
        self.lrm_active: set[str] = set()
        self.workers: dict[str, dict[str, Worker]] = {n.name: {} for n in spec.nodes}
        self.lrm_tries: dict[str, dict[str, int]] = {n.name: {} for n in spec.nodes}
        self.lrm_results: dict[str, dict[tuple[str, int], bool]] = {n.name: {} for n in spec.nodes}
        self.lrm_looping: set[str] = set()
        self.master: str | None = None
        self.offline_seen: dict[str, float] = {}
        self.fenced: set[str] = set()
        self.run_files: dict[str, dict[str, Any]] = {}
        self.var_files: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, dict[str, object]] = {}
        self.timer_busy: set[tuple[str, str]] = set()
        self.timer_pending: set[tuple[str, str]] = set()
        self.timer_token: dict[tuple[str, str], int] = {}
        self.timer_tokens = itertools.count()
        self.starts: list[StartRecord] = []
        self.controller_starts: list[Worker] = []
        self.answer_time: float | None = None
        self.quorum_time: float | None = None
        self.lines: list[str] = []

    # --- state queries ----------------------------------------------------------------------------
    def log(self, text: str) -> None:
        if self.trace:
            self.lines.append(f"{self.kernel.now:8.1f} {text}")

    def node_up(self, node: str) -> bool:
        return node in self.online

    def quorate(self, node: str) -> bool:
        return node in self.online and len(self.online) * 2 > len(self.spec.nodes)

    def running_on(self, vmid: int) -> str | None:
        entry = self.running.get(vmid)
        return entry[0] if entry else None

    def controller_answers(self) -> bool:
        entry = self.running.get(self.spec.controller_vmid)
        return entry is not None and self.kernel.now >= entry[1] + self.boot.answer_after

    # --- boot ---------------------------------------------------------------------------------------
    def run(self, horizon: float) -> Result:
        for node in self.spec.nodes:
            self.kernel.call_at(self.boot.joined(node.name), lambda n=node: self._join(n))
        last = max(self.boot.joined(n.name) for n in self.spec.nodes)

        def done() -> bool:
            return len(self.running) == len(self.vms) and self.kernel.now >= last

        self.kernel.run(last + horizon, done)
        return Result(
            started={v: self.running[v][1] if v in self.running else float("nan") for v in self.vms},
            running={v: e[0] for v, e in self.running.items()},
            ha_states={sid: s.state for sid, s in self.services.items()},
            starts=self.starts,
            controller_queued=[(w.queued, w.forked) for w in self.controller_starts],
            answer_time=self.answer_time,
            joined={n.name: self.boot.joined(n.name) for n in self.spec.nodes},
            quorum_time=self.quorum_time,
            end=self.kernel.now,
            log=self.lines,
        )

    def _join(self, node: NodeSpec) -> None:
        """pve-cluster is up: the node is a member; its DRBD units bring up what their .res files describe."""
        self.online.add(node.name)
        self.devices[node.name] = set(node.boot_resources)
        self.run_files[node.name] = {}
        self.log(f"{node.name} joined ({len(self.online)} of {len(self.spec.nodes)} nodes)")
        if self.quorum_time is None and self.quorate(node.name):
            self.quorum_time = self.kernel.now
        t = self.timing
        self.kernel.call_at(self.kernel.now + t.units_after_join, lambda: self._ha_units(node.name))
        self.kernel.call_at(self.kernel.now + t.guests_after_join, lambda: self.kernel.spawn(self._pve_guests(node)))
        for timer in node.timers:
            self.kernel.call_at(self.kernel.now + timer.on_boot, lambda tm=timer: self._timer_activate(node.name, tm))

    def _ha_units(self, node: str) -> None:
        self.lrm_active.add(node)
        phase = self.rng.uniform(0, self.timing.lrm_round)
        self.kernel.call_at(self.kernel.now + phase, lambda: self._lrm_round(node))
        if self.master is None:
            self.kernel.spawn(self._wait_for_master(node))

    def _wait_for_master(self, node: str) -> Process:
        # The first CRM with quorum takes the manager lock (expired during the outage).
        while not self.quorate(node):
            yield 1.0
        if self.master is None:
            self.master = node
            self.log(f"{node} is the HA master")
            self.kernel.call_at(self.kernel.now, self._crm_round)

    def _timer_elapsed(self, node: str, timer: TimerSpec, token: int) -> None:
        key = (node, timer.unit)
        if self.timer_token.get(key) != token:
            return
        if key in self.timer_busy:
            # The service still runs: systemd starts it again as soon as it finished.
            self.timer_pending.add(key)
            return
        self._timer_activate(node, timer)

    def _timer_activate(self, node: str, timer: TimerSpec) -> None:
        """OnUnitActiveSec counts from this activation."""
        key = (node, timer.unit)
        token = next(self.timer_tokens)
        self.timer_token[key] = token
        self.timer_busy.add(key)
        self.kernel.call_at(self.kernel.now + timer.interval, lambda: self._timer_elapsed(node, timer, token))

        def activation() -> Process:
            self.log(f"{node}: {timer.unit} runs {timer.command}")
            yield from self.behaviours.command(timer.command)(self.api, node)

        def finished(_: object) -> None:
            self.timer_busy.discard(key)
            if key in self.timer_pending:
                self.timer_pending.discard(key)
                self._timer_activate(node, timer)

        self.kernel.spawn(activation(), finished)

    # --- pve-guests ---------------------------------------------------------------------------------
    def _pve_guests(self, node: NodeSpec) -> Process:
        for command in node.exec_start_pre:
            yield from self.behaviours.command(command)(self.api, node.name)
        while not self.quorate(node.name):  # startall: "waiting for quorum ..."
            yield 1.0
        candidates = sorted((vm.order, vm.vmid) for vm in self.api.local_vms(node.name)
                            if vm.onboot and not vm.ha)  # fmt: skip
        self.log(f"{node.name}: startall {[v for _, v in candidates]}")
        for _, vmid in candidates:
            if self.running_on(vmid) is None:
                yield from self.start_task(node.name, vmid, "startall")

    # --- one start task (vm_start) ---------------------------------------------------------------
    def start_task(self, node: str, vmid: int, via: str) -> Generator[float, None, bool]:
        vm = self.vms[vmid]
        record = StartRecord(vmid, node, via, self.kernel.now)
        self.starts.append(record)
        if self.running_on(vmid) is not None:
            record.ok, record.ended = True, self.kernel.now
            return True
        ok = True
        if vm.hookscript:
            ok = yield from self.behaviours.hook(vm.hookscript)(self.api, node, vmid)
            record.hook_seconds = self.kernel.now - record.began
        if ok:
            yield self.timing.qemu_start
            if vm.by_path and not set(vm.by_path) <= self.devices.get(node, set()):
                ok = False
            if vm.drbd and not self.controller_answers():
                ok = False  # could not connect to any LINSTOR controller
            if self.owner[vmid] != node or self.running_on(vmid) is not None or node not in self.online:
                ok = False
        if ok:
            self.running[vmid] = (node, self.kernel.now)
            self.log(f"{node}: VM {vmid} running ({via})")
            if vmid == self.spec.controller_vmid:
                self.kernel.call_at(self.kernel.now + self.boot.answer_after, self._controller_up)
        else:
            self.log(f"{node}: VM {vmid} failed to start ({via})")
        record.ok, record.ended = ok, self.kernel.now
        return ok

    def _controller_up(self) -> None:
        if self.controller_answers() and self.answer_time is None:
            self.answer_time = self.kernel.now
            self.log("the LINSTOR controller answers")

    # --- LRM ----------------------------------------------------------------------------------------
    def _lrm_round(self, node: str) -> None:
        self.kernel.call_at(self.kernel.now + self.timing.lrm_round, lambda: self._lrm_round(node))
        if node not in self.lrm_active or not self.quorate(node):
            return
        workers = self.workers[node]
        for svc in self.services.values():
            if self.owner[svc.vmid] != node or svc.state != "started" or svc.sid in workers:
                continue
            if self.running_on(svc.vmid) is not None or (svc.sid, svc.uid) in self.lrm_results[node]:
                continue  # running, or this command already failed and the CRM has not answered yet
            worker = Worker(svc.sid, svc.uid, self.kernel.now)
            workers[svc.sid] = worker
            if svc.vmid == self.spec.controller_vmid:
                self.controller_starts.append(worker)
        if workers and node not in self.lrm_looping:
            self.lrm_looping.add(node)
            self.kernel.spawn(self._run_workers(node), lambda _: self.lrm_looping.discard(node))

    def _run_workers(self, node: str) -> Process:
        started = self.kernel.now
        workers = self.workers[node]
        while self.kernel.now - started <= self.timing.lrm_work_window:
            for sid, worker in list(workers.items()):
                if worker.finished is not None:
                    self._worker_done(node, worker)
                    del workers[sid]
            count = sum(1 for w in workers.values() if w.forked is not None)
            waiting = sorted((w for w in workers.values() if w.forked is None),
                             key=lambda w: (-w.start_tries, w.sid))  # fmt: skip
            for worker in waiting:
                worker.start_tries += 1
                if count >= self.spec.max_workers:
                    continue
                self._fork(node, worker)
                count += 1
            if not workers:
                return
            yield 1.0

    def _fork(self, node: str, worker: Worker) -> None:
        worker.forked = self.kernel.now
        vmid = ha.parse_sid(worker.sid)[1]

        def finished(ok: bool) -> None:
            worker.result, worker.finished = ok, self.kernel.now

        self.kernel.spawn(self.start_task(node, vmid, "lrm"), finished)

    def _worker_done(self, node: str, worker: Worker) -> None:
        """handle_service_exitcode: local restarts first, then ERROR to the CRM."""
        svc = self.services[worker.sid]
        tries = self.lrm_tries[node]
        if worker.result:
            tries[worker.sid] = 0
            self.lrm_results[node][(worker.sid, worker.uid)] = True
            return
        vm = self.vms[svc.vmid]
        if tries.get(worker.sid, 0) >= vm.max_restart:
            tries[worker.sid] = 0
            self.lrm_results[node][(worker.sid, worker.uid)] = False
            self.log(f"{node}: unable to start {worker.sid} after {vm.max_restart} retries")
        else:
            tries[worker.sid] = tries.get(worker.sid, 0) + 1
            self.log(f"{node}: restart policy: retry number {tries[worker.sid]} for {worker.sid}")

    # --- CRM ----------------------------------------------------------------------------------------
    def _crm_round(self) -> None:
        self.kernel.call_at(self.kernel.now + self.timing.crm_round, self._crm_round)
        if self.master is None or not self.quorate(self.master):
            return
        now = self.kernel.now
        for node in self.spec.nodes:
            if node.name in self.online:
                self.offline_seen.pop(node.name, None)
            else:
                since = self.offline_seen.setdefault(node.name, now)
                if now - since >= self.timing.fence_after and node.name not in self.fenced:
                    self.fenced.add(node.name)
                    self.log(f"fencing {node.name}; its lock expired during the outage")
        for sid in sorted(self.services):
            self._crm_service(self.services[sid])

    def _new_uid(self, svc: Service) -> None:
        svc.uid += 1

    def _crm_service(self, svc: Service) -> None:
        owner = self.owner[svc.vmid]
        vm = self.vms[svc.vmid]
        if svc.state == "error":
            if svc.requested == "disabled":
                svc.state, svc.relocate_trial, svc.failed_nodes = "stopped", 0, set()
                self._new_uid(svc)
            return
        if svc.requested in ("disabled", "stopped"):
            if svc.state != "stopped":
                svc.state = "stopped"
                self._new_uid(svc)
            return
        if svc.state == "stopped":
            svc.state, svc.relocate_trial, svc.failed_nodes = "started", 0, set()
            self._new_uid(svc)
            return
        if owner in self.fenced and owner not in self.online:
            target = self._choose_node(svc, exclude={owner})
            if target is not None:
                self.log(f"recover {svc.sid} from fenced {owner} to {target}")
                self.owner[svc.vmid] = target
                svc.state = "started"
                self._new_uid(svc)
            return
        if svc.state == "relocate" and svc.target is not None:
            self.owner[svc.vmid], svc.target, svc.state = svc.target, None, "started"
            self._new_uid(svc)
            return
        result = self.lrm_results[owner].pop((svc.sid, svc.uid), None)
        if result is True or self.running_on(svc.vmid) is not None:
            svc.relocate_trial, svc.failed_nodes = 0, set()
            return
        if result is False:
            svc.failed_nodes.add(owner)
            target = None
            if svc.relocate_trial < vm.max_relocate:
                target = self._choose_node(svc, exclude=svc.failed_nodes)
            if target is None:
                svc.state = "error"
                self.log(f"recovery policy for {svc.sid} failed, entering error state")
            else:
                svc.relocate_trial += 1
                svc.state, svc.target = "relocate", target
                self.log(f"relocate {svc.sid} from {owner} to {target}")
            self._new_uid(svc)

    def _choose_node(self, svc: Service, exclude: set[str]) -> str | None:
        candidates = [n.name for n in self.spec.nodes if self.quorate(n.name) and n.name not in exclude]
        if not candidates:
            return None
        load = {n: sum(1 for s in self.services.values() if self.owner[s.vmid] == n and s.state == "started")
                for n in candidates}  # fmt: skip
        return min(candidates, key=lambda n: (load[n], n))
