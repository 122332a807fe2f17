"""Booted VMs for the boot tests, their serial transcripts as artifacts, and a summary of boot times.

Booting under emulation costs about a minute, so each test module boots its image once and all of its
tests share that VM (module scope); modules run one after another, so only one VM runs at a time.
Transcripts are written to build/test-artifacts/ and kept only for boots that a failing test used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT

from builder.qemu import ACCEL_ENV, Firmware

from .checks import Identity, read_identity
from .machine import DEFAULT_PASSWORD, Booter, BootRecord, Machine

# Tests never probe for KVM: on some CI machines /dev/kvm exists but guests crawl under it. A runner
# with working KVM can opt in with LINSTOR_APPLIANCE_ACCEL=auto (or kvm).
os.environ.setdefault(ACCEL_ENV, "tcg")

ARTIFACTS = Path(os.environ.get("LINSTOR_APPLIANCE_TEST_ARTIFACTS", PROJECT_ROOT / "build" / "test-artifacts"))
BOOTS = pytest.StashKey[list[BootRecord]]()
IDENTITIES = pytest.StashKey[dict[str, Identity]]()


def _boots(config: pytest.Config) -> list[BootRecord]:
    return config.stash.setdefault(BOOTS, [])


@pytest.fixture(scope="session")
def boot_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("boot")


@pytest.fixture(scope="session")
def boot(request: pytest.FixtureRequest, boot_workdir: Path) -> Booter:
    """boot(name, image, firmware, persist=False, password=..., before_login=None): a context manager
    yielding a Machine at a root shell, logged in as linbit (answering a forced password change) and
    switched to root by sudo."""

    @contextmanager
    def booted(name: str, image: Path, firmware: Firmware, *, persist: bool = False,
               password: str = DEFAULT_PASSWORD,
               before_login: Callable[[Machine], None] | None = None) -> Iterator[Machine]:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        transcript = ARTIFACTS / f"{name}.serial.log"
        machine = Machine(name, image, firmware, boot_workdir / name, transcript, persist=persist)
        _boots(request.config).append(machine.record)
        try:
            machine.boot_to_root_shell(password, before_login=before_login)
            yield machine
        except BaseException:
            machine.record.failed = True
            raise
        finally:
            machine.stop()

    return booted


@pytest.fixture(scope="session")
def identities(request: pytest.FixtureRequest) -> dict[str, Identity]:
    """Machine identities read at each boot, by boot name, for the tests that compare boots."""
    return request.config.stash.setdefault(IDENTITIES, {})


@pytest.fixture(scope="session")
def remember_identity(identities: dict[str, Identity]) -> Callable[[Machine], Identity]:
    def remember(machine: Machine) -> Identity:
        identity = read_identity(machine.shell)
        identities[machine.name] = identity
        return identity

    return remember


# -- reporting -------------------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        machines = [value for value in getattr(item, "funcargs", {}).values() if isinstance(value, Machine)]
        records = [m.record for m in machines] or [r for r in _boots(item.config) if r.failed]
        for record in records:
            record.failed = True
        if records:
            paths = "\n".join(f"{r.name}: {r.transcript}" for r in records)
            report.sections.append(("serial transcript (kept)", paths))
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    records = session.config.stash.get(BOOTS, [])
    if not records:
        return
    for record in records:
        if not record.failed and record.transcript.exists():
            record.transcript.unlink()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings = [{**asdict(r), "transcript": str(r.transcript)} for r in records]
    (ARTIFACTS / "boot-timings.json").write_text(json.dumps(timings, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    records = config.stash.get(BOOTS, [])
    if not records:
        return
    write = terminalreporter.write_line
    terminalreporter.section("appliance boots")
    width = max(len(r.name) for r in records)
    write(f"{'boot':<{width}}  {'firmware':<11}  {'accel':<5}  {'login prompt':>12}  {'controller on 3370':>18}  "
          f"{'kernel panics':>13}")
    for r in records:
        write(f"{r.name:<{width}}  {r.firmware.label:<11}  {r.accel:<5}  {_seconds(r.login_prompt_s):>12}  "
              f"{_seconds(r.api_s):>18}  {r.panicked_boots:>13}{'  FAILED' if r.failed else ''}")
    for r in records:
        if r.panicked_boots:
            # Kept whether or not a test failed: an emulator race worth seeing (builder.qemu.KERNEL_PANIC).
            write(f"{r.name}: {r.panicked_boots} boot(s) ended in a guest kernel panic and were tried again "
                  f"(at most once); their transcripts are kept beside {r.transcript}")
    kept = [r for r in records if r.failed and r.transcript.exists()]
    for r in kept:
        write(f"serial transcript of {r.name}: {r.transcript}")
    write(f"timings: {ARTIFACTS / 'boot-timings.json'}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
