"""Status lines, their levels and the exit status (the monitoring-plugin convention: 0 ok, 1 warning, 2 critical)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass


class Level(enum.IntEnum):
    ok = 0
    warning = 1
    critical = 2

    @property
    def label(self) -> str:
        return {Level.ok: "OK", Level.warning: "WARNING", Level.critical: "CRITICAL"}[self]


@dataclass(frozen=True)
class Line:
    """One thing checked: what was found and, when it is not right, what to do."""

    check: str
    level: Level
    text: str
    hint: str | None = None


def exit_status(lines: list[Line]) -> int:
    return int(max((line.level for line in lines), default=Level.ok))


def text(lines: list[Line]) -> str:
    width = max((len(line.check) for line in lines), default=0)
    out = []
    for line in lines:
        row = f"{line.level.label:<8} {line.check:<{width}}  {line.text}"
        if line.hint and line.level is not Level.ok:
            row += f" -> {line.hint}"
        out.append(row)
    return "\n".join(out)


def as_json(lines: list[Line]) -> str:
    worst = Level(exit_status(lines))
    return json.dumps({"status": worst.label, "exit": int(worst), "checks": [
        {"check": line.check, "status": line.level.label, "text": line.text, "hint": line.hint} for line in lines
    ]}, indent=2)  # fmt: skip
