"""docs/benchmarks.md from results.json: the machine, one table of every figure, details and the method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import targets
from builder import imagepack

# Where the boot time goes, read on a booted appliance with systemd-analyze; measured by hand (it needs a
# login on the guest), so it is kept beside the harness and shown with every page it writes.
BOOT_BREAKDOWN = Path(__file__).with_name("boot-breakdown.md")
# Why the targets a run misses are missed, measured by hand like the boot breakdown.
TARGET_NOTES = Path(__file__).with_name("targets-notes.md")
MIB = 2**20
GIB = 2**30


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def size(value: float) -> str:
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / MIB:.0f} MiB"


def times(value: float) -> str:
    return f"×{value:.2f}"


FORMATS = {"s": seconds, "bytes": size, "ratio": times}


def cell(summary: dict[str, Any] | None) -> str:
    """median (min–max) in the summary's unit; the reason when there is no number."""
    if not summary:
        return "–"
    if summary.get("median") is None:
        return str(summary.get("not_measured", "not measured"))
    fmt = FORMATS.get(summary.get("unit", ""), lambda v: f"{v:g}")
    low, high = fmt(summary["min"]), fmt(summary["max"])
    if low == high:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} ({low}–{high})"


def ratio_of_medians(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not a.get("median") or not b.get("median"):
        return "–"
    return times(a["median"] / b["median"])


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def failed(figure: dict[str, Any] | None) -> str | None:
    status = (figure or {}).get("status", "not run")
    return None if status == "measured" else str(status)


def machine_section(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    memory = f"{m['memory_bytes'] / GIB:.1f} GiB" if m.get("memory_bytes") else "unknown"
    accel = _get(results, "figures", "boot", "acceleration") or "no boots in this run"
    requested = results.get("settings", {}).get("accel_requested")
    if requested and requested != "auto":
        accel += f", as requested with --accel {requested}"
    return [
        "## Machine",
        "",
        f"- CPUs: {m.get('cpus')} ({m.get('cpu_model') or 'unknown model'}), memory: {memory}",
        f"- {m.get('os')}, kernel {m.get('kernel')}{', itself a virtual machine' if m.get('virtualized') else ''}",
        f"- QEMU acceleration used for the boots: {accel} (/dev/kvm {'present' if m.get('kvm_device') else 'absent'})",
        f"- {m.get('mkosi')}, {m.get('qemu')}, Python {m.get('python')}",
        *shared_machine(results),
        "",
    ]


def shared_machine(results: dict[str, Any]) -> list[str]:
    """Whether other people's builds and boots ran at the same time: the figures are only as quiet as the machine."""
    m = results["machine"]
    lines = []
    before, after = m.get("load_average_before"), m.get("load_average_after")
    if before and after:
        lines.append(f"- Load average (1, 5, 15 min) at the start: {', '.join(f'{v:.1f}' for v in before)}; "
                     f"at the end: {', '.join(f'{v:.1f}' for v in after)}")
    shares = [f"{name} {figure['neighbours_busy_share'] * 100:.0f}%" for name, figure in results["figures"].items()
              if (figure or {}).get("neighbours_busy_share") is not None]
    if shares:
        lines.append("- Share of the time other QEMU or mkosi processes (not this run's) were running: "
                     + ", ".join(shares))
    return lines


def summary_rows(results: dict[str, Any]) -> list[str]:
    figures = results["figures"]
    rows: list[tuple[str, str, str, str]] = []

    build = figures.get("build")
    if (reason := failed(build)) is not None:
        rows.append(("Build", reason, "", ""))
    else:
        for kind in ("cold", "warm"):
            label = "Cold build" if kind == "cold" else "Warm build (configuration-only change)"
            rows.append((label, cell(_get(build, "appliance", kind, "total_s")),
                         cell(_get(build, "baseline", kind, "total_s")), cell(_get(build, "ratio", kind))))
            rows.append((f"{label}: mkosi", cell(_get(build, "appliance", kind, "mkosi_s")), "", ""))
            rows.append((f"{label}: pipeline overhead (not mkosi)",
                         cell(_get(build, "appliance", kind, "overhead_s")), "", ""))
            rows.append((f"{label}: overhead before mkosi (checks, mirror probe, rendering)",
                         cell(_get(build, "appliance", kind, "before_mkosi_s")), "", ""))
            rows.append((f"{label}: overhead after mkosi (disk size, zstd, checksums, manifest)",
                         cell(_get(build, "appliance", kind, "after_mkosi_s")), "", ""))

    sizes = figures.get("size")
    if (reason := failed(sizes)) is not None:
        rows.append(("Size", reason, "", ""))
    else:
        for name, label in (("virtual", "Image virtual size"), ("allocated", "Image allocated bytes"),
                            ("compressed", f"Image compressed (zstd -{imagepack.ZSTD_LEVEL})")):
            a, b = _get(sizes, "appliance", f"{name}_bytes"), _get(sizes, "baseline", f"{name}_bytes")
            rows.append((label, cell(a), cell(b), ratio_of_medians(a, b)))

    boot = figures.get("boot")
    if (reason := failed(boot)) is not None:
        rows.append(("Boot", reason, "", ""))
    else:
        accel = boot.get("acceleration", "?")
        rows.append((f"Boot to the login prompt ({accel})", cell(_get(boot, "appliance", "login_prompt_s")),
                     cell(_get(boot, "baseline", "login_prompt_s")), cell(_get(boot, "ratio", "login_prompt"))))
        rows.append((f"Boot to the controller answering on 3370 ({accel})", cell(_get(boot, "appliance", "api_s")),
                     "no controller", ""))
        panics = boot.get("panics", {})
        if any(panics.values()):
            rows.append(("Boots ended by a guest kernel panic, then booted again (see the notes)",
                         str(panics.get("appliance", 0)), str(panics.get("baseline", 0)), ""))

    write = figures.get("write")
    if (reason := failed(write)) is not None:
        rows.append(("Image write", reason, "", ""))
    else:
        for kind, label in (("file", "a file"), ("loop", "a loop device")):
            target = _get(write, "targets", kind) or {}
            if "not_measured" in target:
                rows.append((f"Image write onto {label}", target["not_measured"], "", ""))
                continue
            ours, seed = target.get("write_image", {}), target.get("qemu-img dd", {})
            for key, what in (("seconds", "time"), ("write_bytes", "bytes written"),
                              ("allocated_bytes", "target allocation"), ("data_extent_bytes", "data in the target")):
                rows.append((f"Image write onto {label}: {what}", cell(ours.get(key)), cell(seed.get(key)),
                             ratio_of_medians(ours.get(key), seed.get(key))))
            rows.append((f"Image write onto {label}: identical to the image",
                         yes_no(ours.get("identical")), yes_no(seed.get("identical")), ""))

    downtime = figures.get("downtime") or {}
    rows.append(("Migration downtime (simulated deploy)", cell(downtime.get("downtime_s"))
                 if downtime.get("status") == "measured" else str(downtime.get("status", "not run")), "", ""))

    lines = ["| Figure | Appliance | Baseline | Appliance ÷ baseline |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


def yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "–"


def write_details(results: dict[str, Any]) -> list[str]:
    write = _get(results, "figures", "write")
    if failed(write) is not None:
        return []
    sampled = f" (the first {size(write['image_bytes'])} of {write['sample_of']}: a quick run)" \
        if "sample_of" in write else ""
    lines = ["## Image write in detail", "",
             f"Image: {size(write['image_bytes'])} virtual, {size(write['image_allocated_bytes'])} allocated"
             f"{sampled}.", "",
             "| Target | Method | Time | Bytes written | Target allocation | Data in the target | Identical |",
             "|---|---|---|---|---|---|---|"]
    for kind, methods in write["targets"].items():
        if "not_measured" in methods:
            lines.append(f"| {kind} | – | {methods['not_measured']} | | | | |")
            continue
        for method, m in methods.items():
            lines.append(f"| {kind} | `{method}` | {cell(m['seconds'])} | {cell(m['write_bytes'])} | "
                         f"{cell(m['allocated_bytes'])} | {cell(m['data_extent_bytes'])} | {yes_no(m['identical'])} |")
    lines += ["", *(f"- `{name}`: {text}" for name, text in write["methods"].items()), ""]
    return lines


def package_details(results: dict[str, Any]) -> list[str]:
    sizes = _get(results, "figures", "size")
    if failed(sizes) is not None:
        return []
    appliance = sizes["appliance"].get("largest_packages", [])
    baseline = sizes["baseline"].get("largest_packages", [])
    lines = ["## Largest installed packages", "", "Installed-Size as recorded by dpkg.", "",
             "| # | Appliance | | Bare mkosi image | |", "|---|---|---|---|---|"]
    for index in range(max(len(appliance), len(baseline))):
        a = appliance[index] if index < len(appliance) else None
        b = baseline[index] if index < len(baseline) else None
        lines.append(f"| {index + 1} | {a['name'] if a else ''} | {size(a['installed_kib'] * 1024) if a else ''} "
                     f"| {b['name'] if b else ''} | {size(b['installed_kib'] * 1024) if b else ''} |")
    return [*lines, ""]


def notes(results: dict[str, Any]) -> list[str]:
    collected: list[str] = []
    for name, figure in results["figures"].items():
        for note in (figure or {}).get("notes", []) + (figure or {}).get("errors", []):
            if f"- {name}: {note}" not in collected:
                collected.append(f"- {name}: {note}")
    return ["## Notes from this run", "", *collected, ""] if collected else []


METHOD = """\
## Method

Every figure is measured on this machine in one run of `python -m bench`, the appliance and its baseline
alternating run by run so that a busy spell of the machine or the mirror hits both. Cells show the median
with the minimum and maximum in brackets; the raw values are in `bench/results.json`. These are
measurements, not promises: CI runs the harness once in quick mode (`make bench-quick`) only to prove
it works (writing only the first 128 MiB of the image), and nothing asserts a timing.

- **Build.** The appliance is `linstor-appliance build --distribution debian --linstor-source local:DIR`
  (stand-in LINSTOR packages, built once per run, from `tests/fixtures`). The baseline is a bare mkosi
  build of `bench/baseline/mkosi.conf`: Debian trixie with the cloud kernel, systemd, udev and GRUB for
  SeaBIOS, a serial console on the kernel command line, mkosi's default partitions. *Cold*: a new, empty
  cache (incremental image cache and package cache) for every run of either. *Warm*: the cache of the
  last cold run after a configuration-only change, a new SSH key for the appliance and a new host name
  for the baseline; a warm run in which mkosi did not reuse its cached image is left out and noted. The
  appliance's *pipeline overhead* is its wall time minus the time mkosi ran, measured by a wrapper
  placed first on `PATH` (the product runs unchanged); it covers the host checks, the mirror probe,
  rendering, extending the image to the disk size, zstd compression, checksums and the manifest. The
  wrapper's timestamps split it into the part before mkosi's image build and the part after it.
- **Size.** Virtual size is the raw file's length (the appliance is extended to the 2 GiB VM disk it is
  made for), allocated bytes are its file system blocks, compressed size is `zstd -q -T0 -{level}` of the
  raw file (the level of the appliance build's own `.zst`, which is measured as built). Every image built in the run is
  measured. The largest packages come from each image's dpkg database (Installed-Size).
- **Boot.** Both images boot with the command line of `linstor-appliance boot` (builder/qemu.py:
  SeaBIOS, VirtIO SCSI, VirtIO NIC with loopback port forwards, 2 vCPUs, 2 GiB, `-snapshot`), differing
  only in the image. The clock starts when QEMU starts; *login prompt* is the serial console showing
  `<host> login:`; *controller answering* is `GET /v1/controller/version` on the forwarded 3370
  returning 200 (polled every 0.5 s). The accelerator is KVM only where a probe guest runs well under it
  (builder.qemu.choose_accel), else TCG, as stated above. A boot whose guest kernel panics (under TCG
  with 2 vCPUs this happens now and then for a reason of the emulator) ends at once and the same image
  is booted again, at most twice more per run; the table counts such panics when there were any.
- **Image write.** The appliance image (raw) is written onto a new file and onto a loop device over a
  new sparse file of the image's size (standing in for a DRBD device), by the deploy's writer
  (`builder.imagewrite.write_image`) and by the seed's `qemu-img dd -O raw if=... of=...`, plus
  `qemu-img dd` with 4 MiB blocks as in the Proxmox notes. Each writer runs as its own process; its time
  runs until the target is flushed (`fsync`). *Bytes written* is the writer's count of storage writes
  from the kernel (`wait4` rusage `ru_oublock`, the counter behind `write_bytes` in `/proc/<pid>/io`);
  zero-out requests (`BLKZEROOUT`, hole punching) are not in it. *Target allocation* is the target
  file's allocated blocks, for the loop device those of its backing file; *data in the target* is the
  part of that allocation that holds data (FIEMAP, without unwritten extents: the loop driver turns a
  zero-out request into `fallocate` of unwritten extents, which are allocated but read as zeros and
  cost no data writes). *Identical* means the SHA-256 of the target, read back past the page cache,
  equals the image's. The image is in the page cache for every method.
- **Migration downtime.** `linstor-appliance deploy` of the appliance image onto a simulated three-node
  cluster (`tests/sim`), run as the deploy tests run it (`tests/deploy/harness.py`). Downtime is the time
  from the host's controller no longer answering to the appliance's controller answering, both seen by
  one client polling `GET /v1/controller/version` every 20 ms. The simulation boots no guests: the
  harness's stand-in guest reads the database the deploy injected into the VM disk and starts a
  controller on it as soon as HA runs the VM (it checks every 0.1 s). A real appliance adds its boot
  to the controller answering (see *Boot*), so this figure is the deploy's own share of the downtime.
"""


def render(results: dict[str, Any]) -> str:
    settings = results["settings"]
    mode = "quick mode, " if settings.get("quick") else ""
    header = [
        "# Benchmarks",
        "",
        f"Measured {results['finished_at']} with `python -m bench` ({mode}{settings['runs']} run(s) per figure, "
        f"{settings['build_runs']} per build) in {results['duration_s'] / 60:.0f} minutes. The appliance is set "
        "against a bare mkosi image of the same distribution (build, size, boot) and against the seed's "
        "`qemu-img dd` (image write).",
        "",
    ]
    table = ["## Results", "", *summary_rows(results), ""]
    body = [*machine_section(results), *table, *target_section(results), *write_details(results), *boot_breakdown(),
            *package_details(results), *notes(results)]
    return "\n".join([*header, *body, METHOD.replace("{level}", str(imagepack.ZSTD_LEVEL))])


def target_section(results: dict[str, Any]) -> list[str]:
    """The issue's targets against this run's medians; a run without a figure says so."""
    lines = ["## Targets", "", "Medians of this run against the targets the appliance is held to.", "",
             "| Target | Limit | Measured | Met |", "|---|---|---|---|"]
    table = targets.rows(results["figures"])
    lines += [f"| {label} | {limit} | {measured} | {met} |" for label, limit, measured, met in table]
    if TARGET_NOTES.exists() and any(met == "no" for *_, met in table):
        lines += ["", TARGET_NOTES.read_text().rstrip("\n")]
    return [*lines, ""]


def boot_breakdown() -> list[str]:
    return [BOOT_BREAKDOWN.read_text().rstrip("\n"), ""] if BOOT_BREAKDOWN.exists() else []
