"""Figure 5: migration downtime in the simulated end-to-end deploy.

Downtime is the time from the host's controller no longer answering to the appliance's controller
answering, both seen by one poller asking GET /v1/controller/version every 20 ms while
`linstor-appliance deploy` runs against the simulated cluster (tests/sim) the way the deploy tests
run it (tests/deploy/harness.py). The simulation boots no guests: the harness's Guest plays the
appliance, starting its controller on the database the deploy injected as soon as HA runs the VM.
A real appliance needs its boot on top of this; figure 3 measures that.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.measure import PROJECT_ROOT, BenchError
from builder.errors import ApplianceError
from builder.qemu import controller_answers

POLL_S = 0.02
APPLIANCE_ADDRESS = "10.0.0.100"
VMID = 100
# The resource name of the VM disk with the deploy's default (device-path) strategy.
RESOURCE = f"linstor-appliance-{VMID}"
NOT_PRESENT = "not available (deploy command not present)"


def import_tests() -> None:
    tests = str(PROJECT_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def deploy_missing() -> str | None:
    """Why the deploy cannot be measured here, or None if it can."""
    if importlib.util.find_spec("builder.deploy") is None:
        return NOT_PRESENT
    import_tests()
    try:
        from deploy import harness  # noqa: F401
    except ImportError as error:
        return f"not available (no deploy test harness to run it in the simulated cluster: {error})"
    return None


def answers(url: str | None) -> bool:
    if url is None:
        return False
    host, port = url.removeprefix("http://").split(":")
    return controller_answers(int(port), timeout=1, host=host)


@dataclass
class Watch:
    """The switch-over as an outside client sees it: when the host's controller went, when the appliance's came."""

    url_of: Callable[[str | None], str | None]  # an address (None: the host's) -> its controller's URL, if any
    appliance: str = APPLIANCE_ADDRESS
    host_seen: bool = False
    host_down_at: float | None = None
    appliance_up_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if self.host_down_at is None:
                if answers(self.url_of(None)):
                    self.host_seen = True
                elif self.host_seen:
                    self.host_down_at = now
            elif answers(self.url_of(self.appliance)):
                self.appliance_up_at = now
                return
            self._stop.wait(POLL_S)

    def start(self) -> None:
        threading.Thread(target=self.run, name="bench-downtime-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def downtime_s(self) -> float | None:
        if self.host_down_at is None or self.appliance_up_at is None:
            return None
        return self.appliance_up_at - self.host_down_at


def url_lookup(cluster: Any) -> Callable[[str | None], str | None]:
    def url_of(address: str | None) -> str | None:
        try:
            return str(cluster.controller_url(address))
        except LookupError:
            return None
    return url_of


def linstor_release(image: Path) -> str:
    """The simulated cluster runs the LINSTOR release of the image, as a real one must."""
    from builder import manifest

    version = str(manifest.load(image.with_name(manifest.MANIFEST_NAME))["linstor_controller"]["version"])
    return ".".join(version.split(".")[:2])


def measure_once(image: Path, scratch: Path, log: Path) -> float:
    import_tests()
    from deploy.harness import Guest, deploy_args, environment, run_deploy
    from sim.cluster import SimCluster, remove_tree
    from sim.scenario import Scenario

    directory = scratch / "sim"
    remove_tree(directory)
    cluster = SimCluster(Scenario(nodes=3, linstor_version=linstor_release(image)), directory)
    watch = Watch(url_lookup(cluster))
    try:
        cluster.start()
        watch.start()
        with (Guest(cluster, VMID, APPLIANCE_ADDRESS, RESOURCE, scratch / "guest") as guest,
              environment(cluster, "pve1"), log.open("a") as output, contextlib.redirect_stderr(output),
              contextlib.redirect_stdout(output)):
            try:
                run_deploy(cluster, deploy_args(image, vmid=VMID, ip=f"{APPLIANCE_ADDRESS}/24"))
            except ApplianceError as error:
                raise BenchError(f"the deploy failed: {error}") from None
            if guest.check_failures:
                raise BenchError(f"the appliance refused the deployed files: {guest.check_failures[0][:200]}")
        deadline = time.monotonic() + 30
        while watch.downtime_s is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if watch.downtime_s is None:
            raise BenchError("the deploy finished, but no switch-over from the host's controller to the "
                             "appliance's was seen")
        return watch.downtime_s
    finally:
        watch.stop()
        cluster.close()
        remove_tree(directory)


def figure(image: Path | None, runs: int, scratch: Path, log: Path, report: Callable[[str], None]) -> dict[str, Any]:
    missing = deploy_missing()
    if missing is None and image is None:
        missing = "not available (no appliance image)"
    if missing is not None:
        return {"status": missing, "downtime_s": stats.not_measured("s", missing)}
    assert image is not None
    values: list[float] = []
    errors: list[str] = []
    for index in range(runs):
        report(f"downtime: simulated deploy, run {index + 1} of {runs}")
        try:
            values.append(measure_once(image, scratch, log))
        except BenchError as error:
            errors.append(f"{error} (log: {log})")
    status = "measured" if values else f"not available ({errors[0]})"
    downtime = stats.summary(values, "s") if values else stats.not_measured("s", status)
    return {"status": status, "downtime_s": downtime, "errors": errors}
