"""Whole-cluster cold starts, 250 seeded runs each for 3 and 5 nodes, with and without coldstart.

The cluster is built and `coldstart install` is run on the live simulation; sim/coldboot.py then
reads what a power-on would find there (VM configs, HA resources, enabled units, drop-ins, kept
.res files) and replays the boot on a simulated clock, where the installed hookscript, gate and
retry timer run the tool's own runtime (builder/coldstart/runtime.py, through modelnode.py). Every
run draws a boot pattern (all at once, a random order, or one node late), where the
guests are (often more HA guests on the controller VM's node than the LRM has worker slots) and
when the controller inside the controller VM answers.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sim import SimCluster
from sim.cluster import remove_tree
from sim.coldboot import Api, Behaviours, Boot, ClusterSpec, ColdBoot, Result, Timing, spec_from_sim

from builder.coldstart import layout
from builder.coldstart.runtime import Config

from .appliance import Deployment, deploy, install_everywhere
from .modelnode import installed

pytestmark = pytest.mark.sim

HOOK = "local:snippets/linstor-coldstart-hook"
TOOL = layout.tool_command(packaged=False)

RUNS = 250
HORIZON = 3600.0
TIMING = Timing()
# After a controller answers (or the last node joined), the slowest path to running: the retry timer
# fires (interval), probes, asks HA for `disabled`, waits for the CRM round, asks for `started`, the
# CRM round, the LRM round and its worker loop, the start; on-boot guests start one after another.
SETTLE = 15 + 2 + TIMING.crm_round + 2 + TIMING.crm_round + TIMING.lrm_round + 1 + TIMING.qemu_start + 30


@dataclass(frozen=True)
class Layout:
    nodes: int
    before: ClusterSpec  # the deployed cluster, nothing installed
    after: ClusterSpec  # the same after `coldstart install` on every node
    config: Config  # /etc/linstor-coldstart.conf as install wrote it


def build_layout(nodes: int, directory: Path) -> Layout:
    names = [f"pve{i}" for i in range(1, nodes + 1)]
    if nodes == 3:
        controller, ha_ids, boot_ids = 100, range(101, 107), range(201, 205)
    else:
        # 110 sorts after 101..109 in the LRM's queue: the controller VM is the last one forked.
        controller, ha_ids, boot_ids = 110, [*range(101, 110), 111, 112], range(201, 207)
    ha_guests = {vmid: names[i % nodes] for i, vmid in enumerate(ha_ids)}
    boot_guests = {vmid: names[i % nodes] for i, vmid in enumerate(boot_ids)}
    plan = Deployment(ha_guests, boot_guests, {301: names[-1]}, nodes=nodes, controller_vmid=controller)
    started: list[SimCluster] = []
    try:
        cluster = deploy(lambda scenario: started.append(SimCluster(scenario, directory).start()) or started[0],
                         plan).cluster  # fmt: skip
        before = spec_from_sim(cluster, controller)
        install_everywhere(cluster)
        after = spec_from_sim(cluster, controller)
        config = Config.read(cluster.root("pve1"))
    finally:
        for cluster in started:
            cluster.close()
        remove_tree(directory)
    return Layout(nodes, before, after, config)


@pytest.fixture(scope="module", params=[3, 5], ids=["3-nodes", "5-nodes"])
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    yield build_layout(request.param, tmp_path_factory.mktemp(f"layout{request.param}"))


def test_install_left_what_the_model_needs(layout: Layout) -> None:
    """The power-on reads the real install: hooks, gate, timer, and the controller VM's disk at boot."""
    spec = layout.after
    controller = next(vm for vm in spec.vms if vm.vmid == spec.controller_vmid)
    assert controller.hookscript is None and controller.by_path and controller.ha
    for vm in spec.vms:
        if vm.vmid != spec.controller_vmid:
            assert vm.hookscript == (HOOK if vm.drbd else None), vm
    for node in spec.nodes:
        assert controller.by_path[0] in node.boot_resources
        assert node.exec_start_pre == (f"-{TOOL} coldstart gate",)
        assert [(t.unit, t.command, t.on_boot, t.interval) for t in node.timers] == [
            ("linstor-coldstart-retry.timer", f"{TOOL} coldstart retry", 15.0, 15.0)]
    behaviours = installed(spec, layout.config)
    assert set(behaviours.hooks) == {HOOK}
    assert set(behaviours.commands) == {f"{TOOL} coldstart gate", f"{TOOL} coldstart retry"}
    assert all(vm.hookscript is None for vm in layout.before.vms)
    assert all(not n.exec_start_pre and not n.timers for n in layout.before.nodes)


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


def draw(layout: Layout, seed: int) -> tuple[dict[int, str], Boot, str]:
    """Where the guests are and how the nodes come back, for one seed."""
    rng = random.Random(f"coldboot:{layout.nodes}:{seed}")
    spec = layout.after
    names = [n.name for n in spec.nodes]
    owners: dict[int, str] = {}
    home = rng.choice(names)
    owners[spec.controller_vmid] = home
    ha = [vm.vmid for vm in spec.vms if vm.ha and vm.vmid != spec.controller_vmid]
    crowd = rng.randint(spec.max_workers, len(ha)) if rng.random() < 0.5 else 0
    for index, vmid in enumerate(rng.sample(ha, len(ha))):
        owners[vmid] = home if index < crowd else rng.choice(names)
    for vm in spec.vms:
        owners.setdefault(vm.vmid, rng.choice(names))
    kind = ("at once", "random order", "one late")[seed % 3]
    if kind == "at once":
        power = {n: 0.0 for n in names}
    elif kind == "random order":
        power = {n: rng.uniform(0, 120) for n in names}
    else:
        power = {n: rng.uniform(0, 20) for n in names}
        power[rng.choice(names)] = rng.uniform(60, 900)
    boot = Boot(power_on=power, os_boot={n: rng.uniform(25, 60) for n in names},
                answer_after=rng.uniform(15, 300), seed=seed)  # fmt: skip
    return owners, boot, kind


def placed(spec: ClusterSpec, owners: dict[int, str]) -> ClusterSpec:
    return dataclasses.replace(spec, vms=tuple(dataclasses.replace(vm, node=owners[vm.vmid]) for vm in spec.vms))


def cold_boot(spec: ClusterSpec, behaviours: Behaviours, boot: Boot) -> Result:
    return ColdBoot(spec, behaviours, boot, TIMING).run(HORIZON)


def long_hooks(result: Result, spec: ClusterSpec, longer_than: float) -> int:
    """The most LRM workers on one node that were at once in a hook that had already run `longer_than` s.

    A refusal takes one probe; a worker still in its hook after that is one that waits.
    """
    most = 0
    for node in spec.nodes:
        spans = [(s.began + longer_than, s.began + s.hook_seconds) for s in result.starts
                 if s.node == node.name and s.via == "lrm" and s.hook_seconds > longer_than]  # fmt: skip
        for start, _ in spans:
            most = max(most, sum(1 for a, b in spans if a <= start < b))
    return most


def test_every_guest_runs_after_a_cold_start(layout: Layout) -> None:
    behaviours = installed(layout.after, layout.config)
    failures: list[str] = []
    finish: list[float] = []
    later_than_without: list[float] = []
    for seed in range(RUNS):
        owners, boot, kind = draw(layout, seed)
        spec = placed(layout.after, owners)
        result = cold_boot(spec, behaviours, boot)
        where = f"seed {seed} ({kind}, controller answers {boot.answer_after:.0f}s after its VM started)"
        controller = spec.controller_vmid
        guests = [vm.vmid for vm in spec.vms if vm.drbd]
        if result.not_running():
            failures.append(f"{where}: not running {result.not_running()}; HA {result.ha_states}")
            continue
        assert result.answer_time is not None
        first = result.started[controller]
        if not all(result.started[v] > first and result.started[v] >= result.answer_time for v in guests):
            failures.append(f"{where}: a guest started before the controller VM or its controller")
        # Bounded: once a controller answers (and every node is up), everything runs within SETTLE.
        ready = max(result.answer_time, max(result.joined.values()) + TIMING.guests_after_join)
        last = max(result.started[v] for v in guests)
        finish.append(last - ready)
        if last > ready + SETTLE:
            failures.append(f"{where}: last guest {last - ready:.0f}s after the controller answered")
        # Never held up: only fast refusals can stand between the controller VM and a worker slot ...
        node = result.running[controller]
        crowd = sum(1 for vm in spec.vms if vm.ha and owners[vm.vmid] == node)
        slack = crowd * (layout.config.probe_timeout + 0.1) + 1.0
        for queued, forked in result.controller_queued:
            if forked is None or forked - queued > slack:
                failures.append(f"{where}: controller VM queued at {queued:.0f}s, forked at {forked}")
        if long_hooks(result, spec, layout.config.probe_timeout + 0.5) > spec.max_workers - 1:
            failures.append(f"{where}: every worker slot of a node held by a waiting hook")
        if not all(s.ok for s in result.starts if s.vmid == controller):
            failures.append(f"{where}: a start of the controller VM failed")
        # ... so it starts (almost) when it would without coldstart, where HA put it on the same node (HA
        # recovers a late node's services to the least loaded node, and load differs with refusals).
        without = cold_boot(placed(layout.before, owners), Behaviours(), boot)
        if without.running.get(controller) == node:
            later_than_without.append(first - without.started[controller])
            if first - without.started[controller] > slack:
                failures.append(f"{where}: controller VM {first - without.started[controller]:.0f}s later than "
                                "without coldstart")
    assert not failures, "\n".join(failures[:20])
    print(f"\n{layout.nodes} nodes, {RUNS} runs: every guest running; last guest after the controller answered: "
          f"median {statistics.median(finish):.0f}s, max {max(finish):.0f}s (bound {SETTLE:.0f}s); "
          f"controller VM later than without coldstart by at most {max(later_than_without):.1f}s "
          f"({len(later_than_without)} runs on the same node)")


def test_without_coldstart_guests_stay_down(layout: Layout) -> None:
    """The seed's failure in every run: what tried to start before the controller answered stays down."""
    down_guests: list[int] = []
    in_error: list[int] = []
    for seed in range(RUNS):
        owners, boot, kind = draw(layout, seed)
        spec = placed(layout.before, owners)
        result = cold_boot(spec, Behaviours(), boot)
        down = [vm.vmid for vm in spec.vms if vm.drbd and vm.vmid not in result.running]
        assert spec.controller_vmid in result.running, seed
        assert down, f"seed {seed} ({kind}): every guest started without coldstart"
        down_guests.append(len(down))
        in_error.append(sum(1 for state in result.ha_states.values() if state == "error"))
    guests = sum(1 for vm in layout.before.vms if vm.drbd)
    print(f"\n{layout.nodes} nodes without coldstart, {RUNS} runs: guests down in every run, "
          f"{statistics.mean(down_guests):.1f} of {guests} on average, {statistics.mean(in_error):.1f} in HA error")


def test_a_hook_that_just_waits_deadlocks(layout: Layout) -> None:
    """The seed's deadlock, reproduced: hooks that wait in every worker slot keep the controller VM from starting."""
    deadlocked = 0
    for seed in range(RUNS):
        owners, boot, _ = draw(layout, seed)
        spec = placed(layout.after, owners)
        spec = dataclasses.replace(spec, nodes=tuple(dataclasses.replace(n, exec_start_pre=(), timers=())
                                                     for n in spec.nodes))  # fmt: skip
        result = cold_boot(spec, naive_hook(wait=float("inf")), boot)
        deadlocked += spec.controller_vmid not in result.running
    print(f"\n{layout.nodes} nodes, hooks waiting in any slot: controller VM never started in {deadlocked} of {RUNS}")
    # The LRM forks by service id as a string: guests sorted before the controller VM take the slots.
    ahead = [vm for vm in layout.after.vms if vm.ha and vm.sid < f"vm:{layout.after.controller_vmid}"]
    if len(ahead) >= layout.after.max_workers:
        assert deadlocked > 0
