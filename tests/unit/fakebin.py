"""Fake executables first on PATH that record how they were called (argv as JSON lines)."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class FakeBin:
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory / "calls.jsonl"

    def add(self, name: str, body: str = "") -> Path:
        """A Python script named `name`; it logs its argv, then runs `body` (which sees `argv`)."""
        script = self.directory / name
        script.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            "argv = sys.argv[1:]\n"
            f"with open({str(self.log)!r}, 'a') as log:\n"
            f"    log.write(json.dumps([{name!r}, *argv]) + '\\n')\n"
            + body
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return script

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c[1:] for c in calls if name is None or c[0] == name]

    def path_env(self) -> str:
        return f"{self.directory}{os.pathsep}{os.environ['PATH']}"
