"""Figure 1: cold and warm build time of the Debian appliance against a bare mkosi build, and the overhead.

Cold: a new, empty cache (images and packages) for every run. Warm: the cache of the last cold run (or
the one given) after a configuration-only change, a new SSH key for the appliance and a new host name for
the bare image; a warm run that did not reuse mkosi's cached image is reported and left out.

The pipeline's overhead is its wall time minus the time mkosi ran. mkosi's time is taken by a
wrapper first on PATH that the build finds instead of mkosi, so the product is measured unchanged; the
wrapper's timestamps also split the overhead into the part before mkosi builds (host checks, mirror
probe, rendering) and the part after (fitting the disk size, compression, checksums, manifest).
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stats
from bench.measure import BenchError, run_timed
from bench.workspace import FLAVORS, Workspace, remove

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
APPLIANCE_IMAGE = "linstor-controller.raw"
BASELINE_IMAGE = "bare.raw"
# mkosi says this (for the image or its initrd) whenever it has to install packages instead of starting
# from its incremental cache; the product shows mkosi's step lines, so it is in both builds' logs.
CACHE_MISSED = "not reusing cached images"
CACHED_TREE = "debian~trixie~x86-64.cache"

SHIM = textwrap.dedent("""\
    #!/bin/sh
    # Records how long each mkosi run of the build under test took, then passes its exit code on.
    started=$(date +%s.%N)
    "$BENCH_REAL_MKOSI" "$@"
    code=$?
    printf '%s %s %s\\n' "$started" "$(date +%s.%N)" "$code" >> "$BENCH_MKOSI_TIMES"
    exit $code
""")


@dataclass(frozen=True)
class BuildRun:
    flavor: str
    kind: str  # cold, warm, or prime (filling the cache for warm runs; not timed)
    index: int
    total_s: float
    mkosi_s: float
    cache_reused: bool
    output: Path
    image: Path
    compressed: Path | None  # the build's own .zst, if it makes one
    before_mkosi_s: float | None = None  # the pipeline's own work before mkosi builds, and after
    after_mkosi_s: float | None = None

    @property
    def overhead_s(self) -> float:
        return self.total_s - self.mkosi_s


def real_mkosi() -> str:
    found = shutil.which("mkosi")
    if not found:
        raise BenchError("mkosi is not installed; run 'make host-deps'")
    return found


def shim_dir(workspace: Workspace) -> Path:
    directory = workspace.scratch("shim")
    shim = directory / "mkosi"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    return directory


def mkosi_runs(times: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of each mkosi run of a build, the image build being the last."""
    if not times.exists():
        raise BenchError(f"the build never ran mkosi (no {times})")
    runs = []
    for line in times.read_text().splitlines():
        started, ended, _code = line.split()
        runs.append((float(started), float(ended)))
    return runs


def build_appliance(workspace: Workspace, cache: Path, kind: str, index: int) -> BuildRun:
    label = f"{kind}-{index}"
    output = workspace.output("appliance", label)
    remove(output)
    key = workspace.ssh_key(f"appliance-{label}")
    log = workspace.log(f"build-appliance-{label}")
    log.unlink(missing_ok=True)
    times = log.with_suffix(".mkosi-times")
    times.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "builder", "build", "--distribution", "debian",
        "--linstor-source", f"local:{workspace.debs}", "--ssh-authorized-keys", f"{key}.pub",
        "--cache-dir", str(cache), "--output-dir", str(output),
    ]
    env = {
        "PATH": f"{shim_dir(workspace)}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}",
        "BENCH_REAL_MKOSI": real_mkosi(),
        "BENCH_MKOSI_TIMES": str(times),
    }
    timed = run_timed(argv, log, env=env)
    runs = mkosi_runs(times)
    build_start, build_end = runs[-1]
    return BuildRun("appliance", kind, index, timed.seconds, sum(end - start for start, end in runs),
                    reused_cache(log), output, output / APPLIANCE_IMAGE, output / f"{APPLIANCE_IMAGE}.zst",
                    before_mkosi_s=build_start - timed.wall_start, after_mkosi_s=timed.wall_end - build_end)


def build_baseline(workspace: Workspace, cache: Path, kind: str, index: int) -> BuildRun:
    label = f"{kind}-{index}"
    output = workspace.output("baseline", label)
    remove(output)
    for directory in ("mkosi", "packages", "workspace"):
        (cache / directory).mkdir(parents=True, exist_ok=True)
    log = workspace.log(f"build-baseline-{label}")
    log.unlink(missing_ok=True)
    argv = [
        real_mkosi(), "--directory", str(BASELINE_DIR), "--force",
        "--cache-dir", str(cache / "mkosi"), "--package-cache-dir", str(cache / "packages"),
        "--workspace-dir", str(cache / "workspace"), "--output-dir", str(output),
        "--hostname", f"bare-{kind}-{index}", "build",
    ]
    timed = run_timed(argv, log)
    return BuildRun("baseline", kind, index, timed.seconds, timed.seconds, reused_cache(log), output,
                    output / BASELINE_IMAGE, None)


BUILDERS: dict[str, Callable[[Workspace, Path, str, int], BuildRun]] = {
    "appliance": build_appliance,
    "baseline": build_baseline,
}


def reused_cache(log: Path) -> bool:
    return CACHE_MISSED not in log.read_text(errors="replace")


def has_cached_image(cache: Path) -> bool:
    return (cache / "mkosi" / CACHED_TREE).exists()


@dataclass
class Builds:
    """Every build of this run, in order."""

    runs: list[BuildRun]

    def of(self, flavor: str, kind: str) -> list[BuildRun]:
        return [r for r in self.runs if r.flavor == flavor and r.kind == kind]

    def latest(self, flavor: str) -> BuildRun | None:
        mine = [r for r in self.runs if r.flavor == flavor]
        return mine[-1] if mine else None


def run_builds(workspace: Workspace, runs: int, cold: bool, caches: dict[str, Path],
               on_built: Callable[[BuildRun], object], report: Callable[[str], None]) -> Builds:
    """Cold runs first (each on an emptied cache), then warm runs on the cache the last one left.

    Appliance and baseline alternate, so a slow spell of the machine or the mirror hits both. on_built
    sees each image right after its build (the size figure measures it), as only the newest is kept.
    """
    builds = Builds([])

    def build(flavor: str, kind: str, index: int) -> None:
        run = BUILDERS[flavor](workspace, caches[flavor], kind, index)
        on_built(run)
        for earlier in builds.runs:
            if earlier.flavor == flavor:
                remove(earlier.output)
        builds.runs.append(run)

    for index in range(runs if cold else 0):
        for flavor in FLAVORS:
            remove(caches[flavor])
            report(f"build: {flavor}, cold run {index + 1} of {runs}")
            build(flavor, "cold", index)
    for flavor in FLAVORS:
        if not has_cached_image(caches[flavor]):
            report(f"build: {flavor}, filling the cache for the warm runs (not timed)")
            build(flavor, "prime", 0)
    for index in range(runs):
        for flavor in FLAVORS:
            report(f"build: {flavor}, warm run {index + 1} of {runs}")
            build(flavor, "warm", index)
    return builds


def figure(builds: Builds, cold: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"appliance": {}, "baseline": {}, "ratio": {}, "notes": []}
    primed = sorted({r.flavor for r in builds.runs if r.kind == "prime"})
    if primed:
        result["notes"].append(f"the warm runs' cache ({', '.join(primed)}) was filled first by an untimed build")
    for kind in ("cold", "warm"):
        if kind == "cold" and not cold:
            reason = "skipped in quick mode"
            result["appliance"][kind] = {name: stats.not_measured("s", reason) for name in
                                         ("total_s", "mkosi_s", "overhead_s", "before_mkosi_s", "after_mkosi_s")}
            result["baseline"][kind] = {"total_s": stats.not_measured("s", reason)}
            result["ratio"][kind] = stats.not_measured("ratio", reason)
            continue
        appliance, baseline = valid(builds.of("appliance", kind)), valid(builds.of("baseline", kind))
        for flavor, kept in (("appliance", appliance), ("baseline", baseline)):
            missed = len(builds.of(flavor, kind)) - len(kept)
            if missed:
                result["notes"].append(f"{missed} warm {flavor} run(s) did not reuse mkosi's cached image "
                                       "and are left out")
        result["appliance"][kind] = {
            "total_s": stats.summary([r.total_s for r in appliance], "s"),
            "mkosi_s": stats.summary([r.mkosi_s for r in appliance], "s"),
            "overhead_s": stats.summary([r.overhead_s for r in appliance], "s"),
            "before_mkosi_s": stats.summary([r.before_mkosi_s for r in appliance if r.before_mkosi_s], "s"),
            "after_mkosi_s": stats.summary([r.after_mkosi_s for r in appliance if r.after_mkosi_s], "s"),
        }
        result["baseline"][kind] = {"total_s": stats.summary([r.total_s for r in baseline], "s")}
        paired = {r.index: r.total_s for r in baseline}
        both = [r for r in appliance if r.index in paired]
        result["ratio"][kind] = stats.ratios([r.total_s for r in both], [paired[r.index] for r in both])
    result["runs"] = [{"flavor": r.flavor, "kind": r.kind, "index": r.index, "total_s": r.total_s,
                       "mkosi_s": r.mkosi_s, "before_mkosi_s": r.before_mkosi_s, "after_mkosi_s": r.after_mkosi_s,
                       "cache_reused": r.cache_reused} for r in builds.runs]
    return result


def valid(runs: list[BuildRun]) -> list[BuildRun]:
    return [r for r in runs if r.kind == "cold" or r.cache_reused]
