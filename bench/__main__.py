"""Measure the benchmark figures, then write results.json and the benchmarks page.

Needs root (image builds, loop devices, mounting images read-only). Exit code 1 if a figure could not
be measured; its entry in results.json then says why.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import boot, build, downtime, machine, report, size, write
from bench.measure import PROJECT_ROOT, BenchError
from bench.workspace import DEFAULT_ROOT, FLAVORS, Workspace
from builder.errors import ApplianceError
from builder.qemu import Accel, choose_accel

FIGURES = ("build", "size", "boot", "write", "downtime")
IMAGE_FILES = {"appliance": build.APPLIANCE_IMAGE, "baseline": build.BASELINE_IMAGE}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--build-runs", type=int, help="runs per build kind, if fewer than --runs (builds are slow)")
    parser.add_argument("--quick", action="store_true",
                        help="smallest settings, to prove the harness works: 1 run, no cold builds")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated figures ({','.join(FIGURES)})")
    parser.add_argument("--image", type=Path,
                        help="appliance image (.raw) for size, boot, write and downtime instead of the one built")
    parser.add_argument("--debs", type=Path,
                        help="stand-in LINSTOR packages to build with (default: built once in the work folder)")
    parser.add_argument("--appliance-cache", type=Path,
                        help="an existing build cache for the appliance's warm builds (quick mode only: "
                             "cold runs empty the cache they use)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_ROOT,
                        help=f"caches, outputs and logs (default {DEFAULT_ROOT})")
    parser.add_argument("--accel", type=Accel, choices=list(Accel), default=Accel.auto,
                        help="QEMU accelerator for the boots (default auto, as linstor-appliance boot)")
    parser.add_argument("--boot-timeout", type=float, default=900, help="seconds per boot (default 900)")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json; quick: under out/)")
    parser.add_argument("--doc", type=Path, help="benchmarks page (default docs/benchmarks.md; quick: under out/)")
    parser.add_argument("--page-only", action="store_true",
                        help="measure nothing: write the page again from the results file")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    if args.quick:
        args.runs = 1
    elif args.appliance_cache is not None:
        parser.error("--appliance-cache is for --quick runs: cold builds would empty it")
    args.build_runs = min(args.build_runs or args.runs, args.runs)
    if args.runs < 1 or args.build_runs < 1:
        parser.error("--runs must be at least 1")
    # Quick runs prove the harness; they must not overwrite the measured results that are committed.
    default_dir = PROJECT_ROOT / "out" / "bench-quick" if args.quick else None
    args.output = args.output or (default_dir / "results.json" if default_dir else PROJECT_ROOT / "bench/results.json")
    args.doc = args.doc or (default_dir / "benchmarks.md" if default_dir else PROJECT_ROOT / "docs/benchmarks.md")
    if args.image is not None and not args.image.is_file():
        parser.error(f"{args.image} does not exist")
    return args


def say(message: str) -> None:
    print(f"‣ {message}", file=sys.stderr, flush=True)


class Session:
    """What one run collects: the images to use, the sizes of every image built, and the figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace = Workspace(args.work_dir, args.debs)
        self.caches = {"appliance": args.appliance_cache or self.workspace.cache("appliance"),
                       "baseline": self.workspace.cache("baseline")}
        self.images: dict[str, Path] = {}
        self.sizes: dict[str, list[dict[str, int]]] = {flavor: [] for flavor in FLAVORS}
        self.figures: dict[str, Any] = {}
        self.neighbours = machine.Neighbours()

    def image_sizes(self, run: build.BuildRun) -> dict[str, int]:
        measured = size.sizes(run.image, run.compressed, self.workspace.scratch("size"))
        if not (run.flavor == "appliance" and self.args.image):
            self.sizes[run.flavor].append(measured)
        return measured

    def image(self, flavor: str) -> Path:
        """The image of a flavour for the figures after the build: given, built in this run, or built now."""
        if flavor == "appliance" and self.args.image:
            return Path(self.args.image).resolve()
        if flavor not in self.images:
            say(f"building the {flavor} image the figures need (not timed)")
            run = build.BUILDERS[flavor](self.workspace, self.caches[flavor], "prime", 0)
            self.image_sizes(run)
            self.images[flavor] = run.image
        return self.images[flavor]

    def measure(self, name: str, take: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            figure = take()
            figure.setdefault("status", "measured")
        except (BenchError, ApplianceError, OSError, subprocess.CalledProcessError) as error:
            figure = {"status": f"failed: {error}"}
            say(f"{name}: {figure['status']}")
        ended = time.monotonic()
        figure["duration_s"] = ended - started
        figure["neighbours_busy_share"] = self.neighbours.busy_share(started, ended)
        self.figures[name] = figure

    # -- the figures -------------------------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        cold = not self.args.quick
        builds = build.run_builds(self.workspace, self.args.build_runs, cold, self.caches, self.image_sizes, say)
        for flavor in FLAVORS:
            latest = builds.latest(flavor)
            if latest is not None:
                self.images[flavor] = latest.image
        return build.figure(builds, cold)

    def size(self) -> dict[str, Any]:
        latest = {flavor: self.image(flavor) for flavor in FLAVORS}
        scratch = self.workspace.scratch("size")
        if self.args.image:
            self.sizes["appliance"] = [size.sizes(latest["appliance"], zst_beside(latest["appliance"]), scratch)]
        return size.figure(self.sizes, latest)

    def boot(self) -> dict[str, Any]:
        accel = choose_accel(self.args.accel)
        images = {flavor: self.image(flavor) for flavor in FLAVORS}
        transcripts = self.workspace.log("boot").with_suffix("")
        transcripts.mkdir(parents=True, exist_ok=True)
        boots = boot.run_boots(images, self.args.runs, accel, transcripts, self.args.boot_timeout, say)
        figure = boot.figure(boots, accel)
        if not any(figure[f]["login_prompt_s"]["runs"] for f in FLAVORS):
            raise BenchError("no boot reached the login prompt: " + "; ".join(figure["errors"]))
        return figure

    def write(self) -> dict[str, Any]:
        scratch = self.workspace.scratch("write")
        writes = write.run_writes(self.image("appliance"), self.args.runs, scratch, self.workspace.log("write"), say,
                                  sample_bytes=write.QUICK_SAMPLE_BYTES if self.args.quick else None)
        return write.figure(writes)

    def downtime(self) -> dict[str, Any]:
        image = self.image("appliance") if downtime.deploy_missing() is None else None
        return downtime.figure(image, self.args.runs, self.workspace.scratch("downtime"),
                               self.workspace.log("downtime"), say)


def zst_beside(image: Path) -> Path | None:
    candidate = image.with_name(image.name + ".zst")
    return candidate if candidate.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.page_only:
        args.doc.write_text(report.render(json.loads(args.output.read_text())))
        return 0
    if os.geteuid() != 0:
        print("error: the benchmarks build images and use loop devices; run them as root", file=sys.stderr)
        return 1
    started = time.monotonic()
    load_before = os.getloadavg()
    session = Session(args)
    session.neighbours.start()
    for name in FIGURES:
        if name in args.only:
            say(f"measuring: {name}")
            session.measure(name, getattr(session, name))
    session.neighbours.stop()
    duration = time.monotonic() - started
    results = {
        "format": 1,
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration_s": duration,
        "settings": {"runs": args.runs, "build_runs": args.build_runs, "quick": args.quick, "only": args.only,
                     "image": str(args.image) if args.image else None, "accel_requested": str(args.accel)},
        "machine": {**machine.describe(), "load_average_before": load_before,
                    "neighbours_busy_share": session.neighbours.busy_share(started, time.monotonic())},
        "figures": session.figures,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(report.render(results))
    session.workspace.clean_scratch()
    say(f"results: {args.output}, page: {args.doc} ({duration / 60:.0f} minutes)")
    print("\n".join(report.summary_rows(results)))
    return 1 if any(str(f.get("status", "")).startswith("failed") for f in session.figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
