"""The benchmark harness (bench/) works: a quick run reports every figure. No timing is asserted.

Benchmarks are not tests; this only proves that `make bench` would produce its results on CI's machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CACHE_DIR, PANICKING_KERNEL, PROJECT_ROOT, BuiltImage, require_root

from builder.qemu import Accel

# bench/ is run from the checkout (python -m bench), not installed.
sys.path.insert(0, str(PROJECT_ROOT))
from bench import boot, report, stats  # noqa: E402
from bench.downtime import APPLIANCE_ADDRESS, Watch, url_lookup  # noqa: E402

SUMMARY_KEYS = {"median", "min", "max", "runs"}
FIGURES = ("build", "size", "boot", "write", "downtime")


def summaries(data: Any) -> Iterator[dict[str, Any]]:
    """Every median/min/max record inside a figure."""
    if isinstance(data, dict):
        if SUMMARY_KEYS <= data.keys():
            yield data
            return
        for value in data.values():
            yield from summaries(value)
    elif isinstance(data, list):
        for value in data:
            yield from summaries(value)


def test_summary_of_runs_and_of_none() -> None:
    assert stats.summary([3.0, 1.0, 2.0], "s") == {
        "median": 2.0, "min": 1.0, "max": 3.0, "runs": 3, "unit": "s", "values": [3.0, 1.0, 2.0],
    }
    empty = stats.not_measured("s", "skipped in quick mode")
    assert empty["median"] is None and empty["runs"] == 0 and empty["not_measured"] == "skipped in quick mode"
    assert stats.ratios([4.0, 9.0, None], [2.0, 3.0, 1.0])["values"] == [2.0, 3.0]


def test_page_renders_figures_that_were_not_measured() -> None:
    results = {
        "finished_at": "2026-01-01 00:00 UTC", "duration_s": 60.0,
        "settings": {"runs": 1, "build_runs": 1, "quick": True},
        "machine": {"cpus": 2, "memory_bytes": 2**31},
        "figures": {
            "build": {"status": "failed: mkosi is not installed"},
            "downtime": {"status": "not available (deploy command not present)",
                         "downtime_s": stats.not_measured("s", "not available (deploy command not present)")},
        },
    }
    page = report.render(results)
    assert "| Build | failed: mkosi is not installed |" in page
    assert "not available (deploy command not present)" in page
    assert "## Method" in page


# A "QEMU" whose guest shows the login prompt after the kernel log, and then idles as a booted guest does.
FAKE_QEMU = PANICKING_KERNEL + r"""
sys.stdout.write("[    0.000000] Linux version 6.12\r\n\r\nDebian GNU/Linux 13 bare ttyS0\r\n\r\nbare login: ")
sys.stdout.flush()
time.sleep(600)
"""
PANIC = "the guest kernel panicked before the login prompt: Kernel panic - not syncing: Fatal exception in interrupt"


def boot_bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One run of the bare image's boot with the fake QEMU; the figure it gives."""
    script = tmp_path / "qemu.py"
    script.write_text(FAKE_QEMU)
    monkeypatch.setattr(boot, "qemu_argv", lambda options: [sys.executable, str(script)])
    # The guest hangs after a panic: only the panic line can end a boot before this timeout.
    boots = boot.run_boots({"baseline": tmp_path / "bare.raw"}, 1, Accel.tcg, tmp_path, 60, lambda line: None)
    return boot.figure(boots, Accel.tcg)


def test_page_says_which_targets_a_run_meets() -> None:
    """The targets section reads the run's medians: met, missed, and not measured are told apart."""
    mib = 2**20

    def seconds(value: float) -> dict[str, Any]:
        return stats.summary([value], "s")

    figures = {
        "size": {"appliance": {"allocated_bytes": stats.summary([440 * mib], "bytes"),
                               "compressed_bytes": stats.summary([171 * mib, 170 * mib, 172 * mib], "bytes")}},
        "boot": {"appliance": {"login_prompt_s": stats.summary([50.0], "s"), "api_s": stats.summary([53.0], "s")},
                 "ratio": {"login_prompt": stats.summary([1.05, 1.2, 1.08], "ratio")}},
        "build": {"appliance": {"cold": {"total_s": seconds(100.0), "after_mkosi_s": seconds(6.0)},
                                "warm": {"total_s": seconds(20.0), "after_mkosi_s": seconds(4.0)}},
                  "ratio": {"cold": stats.not_measured("ratio", "skipped in quick mode")}},
    }  # fmt: skip
    page = report.render({"finished_at": "2026-01-01 00:00 UTC", "duration_s": 60.0,
                          "settings": {"runs": 3, "build_runs": 3}, "machine": {"cpus": 2}, "figures": figures})
    expected = [
        "| Image: allocated bytes | ≤ 450 MiB | 440 MiB | yes |",
        "| Image: zstd size | ≤ 160 MiB | 171 MiB | no |",
        "| Boot: login prompt against the bare image (TCG) | ≤ ×1.10 | ×1.08 | yes |",
        "| Controller answering after the login prompt (TCG) | ≤ 5.0 s | +3.0 s | yes |",
        "| Build: work after mkosi, cold | ≤ 5.0 s | 6.0 s | no |",
        "| Build: work after mkosi, warm | ≤ 5.0 s | 4.0 s | yes |",
        "| Build: cold build against a bare mkosi build | ≤ ×1.30 | not measured | – |",
        "| Build: configuration-only rebuild against a cold build | ≤ ×0.30 | ×0.20 | yes |",
    ]
    assert [row for row in expected if row not in page] == []


def test_a_boot_that_panicked_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANIC_MARKER", str(tmp_path / "panicked"))
    figure = boot_bare(tmp_path, monkeypatch)
    assert figure["baseline"]["login_prompt_s"]["runs"] == 1
    assert figure["panics"] == {"baseline": 1}
    assert figure["errors"] == [f"baseline: {PANIC} (transcript: {tmp_path / 'boot-baseline-0.txt'})"]
    assert "bare login:" in (tmp_path / "boot-baseline-0-retry1.txt").read_text()
    page = report.render({"finished_at": "2026-01-01 00:00 UTC", "duration_s": 60.0,
                          "settings": {"runs": 1, "build_runs": 1}, "machine": {"cpus": 2, "memory_bytes": 2**31},
                          "figures": {"boot": {**figure, "status": "measured"}}})
    assert "| Boots ended by a guest kernel panic, then booted again (see the notes) | 0 | 1 |  |" in page
    assert f"- boot: baseline: {PANIC}" in page


def test_a_boot_that_always_panics_is_an_error_after_three_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PANIC_MARKER", raising=False)
    figure = boot_bare(tmp_path, monkeypatch)
    assert figure["baseline"]["login_prompt_s"]["runs"] == 0
    assert figure["panics"] == {"baseline": 3}
    transcripts = ("boot-baseline-0.txt", "boot-baseline-0-retry1.txt", "boot-baseline-0-retry2.txt")
    assert figure["errors"] == [f"baseline: {PANIC} (transcript: {tmp_path / name})" for name in transcripts]
    assert not (tmp_path / "boot-baseline-0-retry3.txt").exists()


def wait_for(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


@pytest.mark.sim
def test_downtime_watch_sees_a_switch_over(sim_cluster: Any, tmp_path: Path) -> None:
    """The poller that times the deploy's switch-over, on a switch-over done by hand."""
    watch = Watch(url_lookup(sim_cluster))
    watch.start()
    try:
        assert wait_for(lambda: watch.host_seen)
        sim_cluster.controller_down()
        assert wait_for(lambda: watch.host_down_at is not None)
        root = tmp_path / "appliance"
        (root / "var/lib/linstor").mkdir(parents=True)
        database = sim_cluster.root("pve1") / "var/lib/linstor/linstordb.mv.db"
        (root / "var/lib/linstor/linstordb.mv.db").write_bytes(database.read_bytes())
        sim_cluster.start_controller(APPLIANCE_ADDRESS, root)
        assert wait_for(lambda: watch.downtime_s is not None)
        assert watch.downtime_s is not None and watch.downtime_s > 0
    finally:
        watch.stop()


@pytest.mark.image
@pytest.mark.boot
def test_quick_run_reports_every_figure(appliance_image: BuiltImage, standin_debs: Path, tmp_path: Path) -> None:
    """`python -m bench --quick`, reusing the suite's image and build cache, reports all five figures."""
    require_root()
    output, page = tmp_path / "results.json", tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--image", str(appliance_image.raw), "--debs", str(standin_debs),
         "--appliance-cache", str(CACHE_DIR), "--work-dir", str(CACHE_DIR / "bench-quick"),
         "--output", str(output), "--doc", str(page)],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["settings"]["quick"] is True
    for name in FIGURES:
        figure = results["figures"][name]
        assert not str(figure["status"]).startswith("failed"), f"{name}: {figure['status']}"
        found = list(summaries(figure))
        assert found, f"{name} has no median/min/max record"
        assert all(SUMMARY_KEYS <= s.keys() for s in found)
    # The figures a quick run must have numbers for (cold builds and the downtime may be unavailable);
    # sizes count every image built, the cache-filling builds too.
    figures = results["figures"]
    for path in (("build", "appliance", "warm", "total_s"), ("build", "baseline", "warm", "total_s"),
                 ("size", "appliance", "compressed_bytes"), ("size", "baseline", "compressed_bytes"),
                 ("boot", "appliance", "login_prompt_s"), ("boot", "appliance", "api_s"),
                 ("boot", "baseline", "login_prompt_s"),
                 ("write", "targets", "file", "write_image", "seconds"),
                 ("write", "targets", "file", "qemu-img dd", "seconds")):
        record: Any = figures
        for key in path:
            record = record[key]
        assert record["runs"] >= 1, f"{'.'.join(path)}: {record}"
    # A quick run writes the start of the suite's image (the seed's 512-byte dd would take minutes per GiB).
    assert figures["write"]["sample_of"] == str(appliance_image.raw)
    assert figures["write"]["image_bytes"] < appliance_image.raw.stat().st_size
    assert figures["write"]["targets"]["file"]["write_image"]["identical"] is True
    assert figures["write"]["targets"]["file"]["qemu-img dd"]["identical"] is True
    assert "## Results" in page.read_text()
