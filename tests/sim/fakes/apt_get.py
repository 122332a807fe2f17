"""Fake `apt-get update` and `apt-get install [options] pkg[=version]...` against the node's simulated repository.

Messages are apt 2.6's (Debian 12) where linstor.md section 14 quotes them; the progress lines and the summary
are abridged (`Reading package lists...` etc. without `Done`).
"""

from __future__ import annotations

import sys

from .. import apt
from ._cli import Context, Fail, run

SHORT = {"y": "assume_yes", "s": "simulate", "q": "quiet"}
LONG = {
    "--yes": "assume_yes", "--assume-yes": "assume_yes", "--quiet": "quiet",
    "--simulate": "simulate", "--dry-run": "simulate", "--just-print": "simulate", "--no-act": "simulate",
    "--recon": "simulate", "--only-upgrade": "only_upgrade", "--allow-downgrades": "allow_downgrades",
    "--no-install-recommends": "", "--no-install-suggests": "",
}  # fmt: skip
NOT_UNDERSTOOD = "E: Command line option {option} is not understood in combination with the other options"


def _parse(argv: list[str]) -> tuple[list[str], apt.Request, int]:
    words: list[str] = []
    request = apt.Request()
    quiet = 0
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "-o" or arg.startswith("-o"):
            # -o Key=Value: configuration the fake does not model (Dpkg::Options, ...); accepted and ignored.
            if arg == "-o":
                index += 1
            continue
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            if name not in LONG:
                raise Fail(NOT_UNDERSTOOD.format(option=name), 100)
            flag = LONG[name]
            if flag == "quiet":
                quiet = int(value) if value.isdigit() else quiet + 1
            elif flag:
                setattr(request, flag, True)
            continue
        if arg.startswith("-") and len(arg) > 1:
            for letter in arg[1:]:
                if letter not in SHORT:
                    raise Fail(NOT_UNDERSTOOD.format(option=f"'{letter}' [from {arg}]"), 100)
                if SHORT[letter] == "quiet":
                    quiet += 1
                else:
                    setattr(request, SHORT[letter], True)
            continue
        words.append(arg)
    return words, request, quiet


def _summary(changes: dict[str, tuple[str | None, str]]) -> list[str]:
    upgraded = sorted(n for n, (old, new) in changes.items() if old is not None and n not in apt.downgrades(changes))
    new = sorted(n for n, (old, _) in changes.items() if old is None)
    down = sorted(apt.downgrades(changes))
    lines: list[str] = []
    for title, names in (("The following NEW packages will be installed:", new),
                         ("The following packages will be upgraded:", upgraded),
                         ("The following packages will be DOWNGRADED:", down)):  # fmt: skip
        if names:
            lines += [title, "  " + " ".join(names)]
    counts = f"{len(upgraded)} upgraded, {len(new)} newly installed, "
    counts += f"{len(down)} downgraded, " if down else ""
    return [*lines, counts + "0 to remove and 0 not upgraded."]


def _install(ctx: Context, request: apt.Request, quiet: int) -> int:
    def say(line: str) -> None:
        # -qq: nothing but errors (and the simulation's lines).
        if quiet < 2:
            print(line)

    for line in ("Reading package lists...", "Building dependency tree...", "Reading state information..."):
        say(line)
    try:
        plan = apt.plan(ctx.state, ctx.node, request)
    except apt.AptError as error:
        raise Fail(error.message, error.code) from error
    for name in plan.skipped:
        say(f"Skipping {name}, it is not installed and only upgrades are requested.")
    for line in _summary(plan.changes):
        say(line)
    if request.simulate:
        for line in apt.inst_lines(plan.changes):
            print(line)
        return 0
    if apt.downgrades(plan.changes) and not request.allow_downgrades:
        if request.assume_yes:
            raise Fail("E: Packages were downgraded and -y was used without --allow-downgrades.", 100)
        # Without -y apt asks; standard input is no terminal here, so the answer is no (inferred from apt).
        print("Do you want to continue? [Y/n] Abort.")
        return 1
    failures = apt.apply(ctx.state, ctx.node, plan.changes)
    for name, (_, new) in sorted(plan.changes.items()):
        say(f"Setting up {name} ({new}) ...")
    if failures:
        for package, message in failures:
            print(message, file=sys.stderr)
            print(f"dpkg: error processing package {package} (--configure):\n installed {package} package "
                  "post-installation script subprocess returned error exit status 1", file=sys.stderr)  # fmt: skip
        names = "\n".join(f" {package}" for package, _ in failures)
        raise Fail(f"Errors were encountered while processing:\n{names}\n"
                   "E: Sub-process /usr/bin/dpkg returned an error code (1)", 100)  # fmt: skip
    return 0


def main(ctx: Context, argv: list[str]) -> int:
    words, request, quiet = _parse(argv)
    if not words:
        # apt-get without a command prints its help and exits 1 (abridged).
        print("apt 2.6.1 (amd64)\nUsage: apt-get [options] command")
        return 1
    command, packages = words[0], words[1:]
    if command == "update":
        if quiet < 2:
            print(
                f"Hit:1 {apt.REPOSITORY_URI} {apt.REPOSITORY_DIST.split('/')[0]} InRelease\nReading package lists..."
            )
        return 0
    if command == "install":
        request.packages = packages
        return _install(ctx, request, quiet)
    raise Fail(f"E: Invalid operation {command}", 100)


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
