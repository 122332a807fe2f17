"""The cold-boot model (coldboot.py): boot, startall, LRM worker slots, HA failure policy, fencing, timers."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .cluster import SimCluster
from .coldboot import Api, Behaviours, Boot, ClusterSpec, ColdBoot, NodeSpec, Process, TimerSpec, VmSpec, spec_from_sim

pytestmark = pytest.mark.sim

NODES = ("pve1", "pve2", "pve3")
CTRL = VmSpec(100, "pve1", drbd=False, by_path=("ctrl",), ha=True, max_restart=3, max_relocate=3)


def spec(*vms: VmSpec, nodes: tuple[NodeSpec, ...] | None = None, workers: int = 4) -> ClusterSpec:
    nodes = nodes or tuple(NodeSpec(n, boot_resources=("ctrl",)) for n in NODES)
    return ClusterSpec(nodes=nodes, vms=(CTRL, *vms), controller_vmid=100, max_workers=workers)


def boot(answer_after: float = 30.0, **power: float) -> Boot:
    on = {n: power.get(n, 0.0) for n in NODES}
    return Boot(power_on=on, os_boot={n: 30.0 for n in NODES}, answer_after=answer_after)


def waits(seconds: float) -> Behaviours:
    """A hookscript that sleeps, then lets the start go on."""

    def hook(api: Api, node: str, vmid: int) -> Generator[float, None, bool]:
        yield seconds
        return True

    return Behaviours(hooks={"local:snippets/h": hook})


def test_startall_starts_on_boot_guests_one_after_another_and_skips_ha() -> None:
    guests = [VmSpec(v, "pve2", drbd=False, onboot=True, hookscript="local:snippets/h", order=o)
              for v, o in ((201, 2), (202, 1), (203, 1 << 30))]  # fmt: skip
    ha_onboot = VmSpec(204, "pve2", drbd=False, onboot=True, ha=True)
    result = ColdBoot(spec(*guests, ha_onboot), waits(5), boot()).run(600)
    startall = [(s.vmid, s.began, s.ended) for s in result.starts if s.via == "startall"]
    # startup order, then VMID; each start task (5 s hook + 1 s QEMU) is waited for.
    assert [v for v, _, _ in startall] == [202, 201, 203]
    assert [round(b - startall[0][1]) for _, b, _ in startall] == [0, 6, 12]
    assert all(s.via == "lrm" for s in result.starts if s.vmid == 204)


def test_startall_waits_for_quorum() -> None:
    guest = VmSpec(201, "pve1", drbd=False, onboot=True)
    result = ColdBoot(spec(guest), Behaviours(), boot(pve2=100, pve3=200)).run(600)
    assert result.quorum_time == 130
    assert result.started[201] >= 130


def test_lrm_forks_at_most_max_workers_in_start_tries_then_sid_order() -> None:
    # vm:1000 sorts before vm:101 as a string; all are queued in the same LRM round.
    guests = [VmSpec(v, "pve1", drbd=False, ha=True, hookscript="local:snippets/h")
              for v in (101, 102, 1000, 103, 104)]  # fmt: skip
    result = ColdBoot(spec(*guests), waits(20), boot()).run(600)
    lrm = [(s.began, s.vmid) for s in result.starts if s.via == "lrm"]
    first_round = [v for b, v in lrm if b == lrm[0][0]]
    assert first_round == [100, 1000, 101, 102]
    # The controller VM (no hook) frees its slot after its 1 s start, for vm:103; vm:104 waits for a hook.
    forked = {v: b - lrm[0][0] for b, v in lrm}
    assert 1 <= forked[103] <= 3
    assert forked[104] >= 20


def test_hooks_holding_every_slot_keep_the_controller_vm_waiting() -> None:
    """With guests sorted before it (vm:1001.. < vm:110), the controller VM waits for a free worker."""
    ctrl = VmSpec(110, "pve1", drbd=False, by_path=("ctrl",), ha=True)
    guests = [VmSpec(v, "pve1", drbd=False, ha=True, hookscript="local:snippets/h") for v in (1001, 1002, 1003, 1004)]
    model = ClusterSpec(nodes=tuple(NodeSpec(n, ("ctrl",)) for n in NODES), vms=(ctrl, *guests), controller_vmid=110)
    result = ColdBoot(model, waits(300), boot()).run(900)
    queued, forked = result.controller_queued[0]
    assert forked is not None and forked - queued >= 300


def test_failed_starts_restart_relocate_then_error() -> None:
    guest = VmSpec(101, "pve1", drbd=True, ha=True, max_restart=1, max_relocate=1)
    result = ColdBoot(spec(guest), Behaviours(), boot(answer_after=10_000)).run(600)
    tries = [(s.node, s.ok) for s in result.starts if s.vmid == 101]
    assert tries == [("pve1", False), ("pve1", False), (tries[2][0], False), (tries[2][0], False)]
    assert tries[2][0] != "pve1"
    assert result.ha_states["vm:101"] == "error"


def test_error_is_left_only_through_disabled() -> None:
    guest = VmSpec(101, "pve1", drbd=True, ha=True, max_restart=0, max_relocate=0)

    def clear(api: Api, node: str) -> Process:
        if api.ha_state(101) == "error" and api.controller_answers(node):
            api.ha_set(101, "started")  # not enough: error stays
            yield 30.0
            assert api.ha_state(101) == "error"
            api.ha_set(101, "disabled")
            while api.ha_state(101) == "error":
                yield 1.0
            api.ha_set(101, "started")

    timer = TimerSpec("clear.timer", "/clear", on_boot=60, interval=120)
    nodes = tuple(NodeSpec(n, ("ctrl",), timers=(timer,) if n == "pve1" else ()) for n in NODES)
    result = ColdBoot(spec(guest, nodes=nodes), Behaviours(commands={"/clear": clear}), boot(answer_after=60)).run(900)
    assert result.running.get(101) == "pve1"
    assert result.started[101] > result.answer_time  # type: ignore[operator]


def test_a_late_node_is_fenced_and_its_services_recovered() -> None:
    result = ColdBoot(spec(), Behaviours(), boot(pve1=500)).run(900)
    # pve2 and pve3 join at 30 s; the master fences pve1 60 s after it first missed it.
    assert result.running[100] in ("pve2", "pve3")
    assert 90 <= result.started[100] < 120
    early = ColdBoot(spec(), Behaviours(), boot(pve1=40)).run(900)
    assert early.running[100] == "pve1"


def test_disks_need_their_device_or_an_answering_controller() -> None:
    guest = VmSpec(201, "pve2", drbd=True, onboot=True)
    no_device = spec(guest, nodes=tuple(NodeSpec(n) for n in NODES))
    stuck = ColdBoot(no_device, Behaviours(), boot()).run(300)
    assert 100 not in stuck.running and not any(s.ok for s in stuck.starts if s.vmid == 100)
    ran = ColdBoot(spec(guest), Behaviours(), boot(answer_after=5)).run(300)
    # pve-guests tried 201 before the controller answered; nothing retries it.
    assert 201 not in ran.running and ran.answer_time is not None


def test_timers_fire_after_boot_then_every_interval() -> None:
    fired: list[float] = []

    def command(api: Api, node: str) -> Process:
        fired.append(api.now)
        yield 50.0  # longer than the interval: the next activation waits for it

    timer = TimerSpec("t.timer", "/t", on_boot=15, interval=20)
    nodes = tuple(NodeSpec(n, ("ctrl",), timers=(timer,) if n == "pve3" else ()) for n in NODES)
    never = VmSpec(201, "pve2", drbd=True)  # keeps the run going
    ColdBoot(spec(never, nodes=nodes), Behaviours(commands={"/t": command}), boot(answer_after=10_000)).run(120)
    # Joined at 30 s; elapsing while the service runs starts it again right after it finished.
    assert fired == [45.0, 95.0, 145.0]


@pytest.mark.sim_scenario(nodes=3, existing_vms={101: "pve2", 102: "pve3"})
def test_spec_from_sim_reads_what_a_power_on_finds(sim_cluster: SimCluster) -> None:
    run = sim_cluster.run
    assert run("pve2", "qm", "set", "101", "--onboot", "1", "--startup", "order=3").returncode == 0
    assert run("pve3", "ha-manager", "add", "vm:102", "--max_restart", "2").returncode == 0
    res = sim_cluster.res_files("pve2")[0]
    assert run("pve2", "systemctl", "enable", f"drbd@{res}.target").returncode == 0
    dropin = sim_cluster.root("pve2") / "etc/systemd/system/pve-guests.service.d/x.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nExecStartPre=-/usr/local/bin/wait-for-it\n")
    unit = sim_cluster.root("pve2") / "etc/systemd/system"
    (unit / "x.service").write_text("[Service]\nType=oneshot\nExecStart=/usr/local/bin/x run\n")
    (unit / "x.timer").write_text("[Timer]\nOnBootSec=1min\nOnUnitActiveSec=30s\n\n"
                                  "[Install]\nWantedBy=timers.target\n")
    assert run("pve2", "systemctl", "enable", "x.timer").returncode == 0
    model = spec_from_sim(sim_cluster, controller_vmid=102)
    vms = {vm.vmid: vm for vm in model.vms}
    assert (vms[101].node, vms[101].drbd, vms[101].onboot, vms[101].order, vms[101].ha) == ("pve2", True, True, 3,
                                                                                          False)  # fmt: skip
    assert (vms[102].ha, vms[102].max_restart, vms[102].max_relocate) == (True, 2, 1)
    pve2 = model.node("pve2")
    assert pve2.boot_resources == (res,)
    assert pve2.exec_start_pre == ("-/usr/local/bin/wait-for-it",)
    assert pve2.timers == (TimerSpec("x.timer", "/usr/local/bin/x run", 60.0, 30.0),)
    assert model.node("pve1") == NodeSpec("pve1")
    assert model.max_workers == 4
