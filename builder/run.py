"""The one door to external commands: argv lists, logged, failures turned into ApplianceError."""

from __future__ import annotations

import collections
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from builder import log
from builder.errors import die

# Which package provides a host tool, so a missing binary comes with an install hint.
PROVIDERS: dict[str, str] = {
    "mkosi": "mkosi (from bookworm-backports on Debian 12; run 'make image' to install it)",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "mount": "mount",
    "zstd": "zstd",
    "dpkg-deb": "dpkg",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "netplan": "netplan.io",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "nft": "nftables",
}


# While a deploy runs, its commands get a process group of their own: a dropped SSH session or Ctrl-C signals
# the deploy's group, and the deploy decides (stop cleanly or roll back) instead of its commands dying halfway.
_children = {"own_group": False}


def own_process_group(enabled: bool) -> None:
    _children["own_group"] = enabled


def child_process_group() -> int | None:
    """The process_group argument for every child process (see own_process_group)."""
    return 0 if _children["own_group"] else None


def which(tool: str) -> str | None:
    """The tool's path, also in the sbin folders a non-login PATH may lack; None when it is not installed."""
    return shutil.which(tool) or next(
        (str(p) for p in (Path("/usr/sbin") / tool, Path("/sbin") / tool) if p.exists()), None
    )


def require(tool: str) -> str:
    """Return the tool's path or fail with a line that says which package to install."""
    found = which(tool)
    if not found:
        package = PROVIDERS.get(tool, tool)
        die(f"'{tool}' is not installed on this host", hint=f"install the package {package}")
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    capture: bool = False,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    hint: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; with capture=True its stdout/stderr are returned as text instead of shown.

    Without --verbose, output of commands that are not captured is still collected and only
    replayed when the command fails, so a successful build stays quiet.
    """
    args = [os.fspath(a) for a in argv]
    args[0] = require(args[0])
    log.debug(f"+ {shlex.join(args)}")
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    quiet = capture or not log.is_verbose()
    try:
        result = subprocess.run(
            args,
            input=input if isinstance(input, str) or input is None else input.decode(),
            stdin=subprocess.DEVNULL if input is None else None,
            stdout=subprocess.PIPE if quiet else None,
            stderr=subprocess.PIPE if quiet else None,
            text=True,
            errors="replace",
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            process_group=child_process_group(),
        )
    except subprocess.TimeoutExpired:
        die(f"'{shlex.join(args)}' did not finish within {timeout:.0f}s", hint=hint)
    if check and result.returncode != 0:
        if quiet and not capture:
            # Replay what the command said, so the reason is on screen right above our line.
            for stream in (result.stdout, result.stderr):
                if stream:
                    log.info(stream.rstrip()[-4000:])
        last = _last_line(result.stderr) or _last_line(result.stdout)
        detail = f": {last}" if last else ""
        die(f"'{Path(args[0]).name}' failed with exit code {result.returncode}{detail}", hint=hint)
    return result


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return _shorten(lines[-1]) if lines else ""


def _shorten(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_streamed(
    argv: Sequence[str | os.PathLike[str]],
    *,
    show: Callable[[str], str | None],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    hint: str | None = None,
) -> None:
    """Run a long command, passing each output line through show(); what it returns is printed.

    With --verbose every line is printed. On failure the last lines are replayed, so the reason is
    visible even when show() filtered it out.
    """
    args = [os.fspath(a) for a in argv]
    args[0] = require(args[0])
    log.debug(f"+ {shlex.join(args)}")
    full_env = dict(os.environ)
    full_env.update(env or {})
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", env=full_env, cwd=cwd,
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if log.is_verbose():
                log.info(line)
            elif (shown := show(line)) is not None:
                log.info(shown)
        code = process.wait()
    if code != 0:
        if not log.is_verbose():
            for line in tail:
                log.info(line)
        last = _shorten(next((line.strip() for line in reversed(tail) if line.strip()), ""))
        detail = f": {last}" if last else ""
        die(f"'{Path(args[0]).name}' failed with exit code {code}{detail}", hint=hint)
