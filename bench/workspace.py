"""The benchmark's scratch area: caches, outputs and logs, outside the repository and apart from other caches.

The default build cache (~/.cache/linstor-appliance) is shared by test runs and people's builds; timing
builds against it would measure whatever state they left, and cold runs would wipe it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.measure import PROJECT_ROOT

DEFAULT_ROOT = Path("/var/tmp/linstor-appliance-bench")
FLAVORS = ("appliance", "baseline")


@dataclass(frozen=True)
class Workspace:
    root: Path
    given_debs: Path | None = None

    def cache(self, flavor: str) -> Path:
        return self.root / "cache" / flavor

    def output(self, flavor: str, label: str) -> Path:
        return self.root / "out" / f"{flavor}-{label}"

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def scratch(self, name: str) -> Path:
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def debs(self) -> Path:
        """The stand-in LINSTOR packages, built once and kept: mkosi's cache key includes their mtimes."""
        if self.given_debs is not None:
            return self.given_debs.resolve()
        directory = self.root / "debs"
        if not any(directory.glob("linstor-controller_*.deb")):
            tests = str(PROJECT_ROOT / "tests")
            if tests not in sys.path:
                sys.path.insert(0, tests)
            from fixtures.build_standin import build_debs

            directory.mkdir(parents=True, exist_ok=True)
            build_debs(directory)
        return directory

    def ssh_key(self, name: str) -> Path:
        """A new key pair: adding a key is the configuration-only change of a warm build."""
        key = self.scratch("keys") / name
        for path in (key, key.with_name(key.name + ".pub")):
            path.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"bench-{name}", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL)
        return key

    def clean_scratch(self) -> None:
        shutil.rmtree(self.root / "scratch", ignore_errors=True)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
