"""The performance targets the appliance is held to, as data, and how a run of `make bench` meets them.

Each target reads medians out of results.json. A target whose figures were not measured on a run says
so instead of passing or failing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIB = 2**20


def _median(figures: dict[str, Any], *path: str) -> float | None:
    data: Any = figures
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    value = data.get("median") if isinstance(data, dict) else None
    return float(value) if value is not None else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _difference(later: float | None, earlier: float | None) -> float | None:
    return later - earlier if later is not None and earlier is not None else None


@dataclass(frozen=True)
class Target:
    label: str
    limit: float
    unit: str  # "MiB", "x" (a ratio) or "s"
    measure: Callable[[dict[str, Any]], float | None]

    def show(self, value: float) -> str:
        if self.unit == "x":
            return f"×{value:.2f}"
        if self.unit == "MiB":
            return f"{value:.0f} MiB"
        return f"{value:+.1f} s" if self.label.startswith("Controller") else f"{value:.1f} s"


TARGETS = (
    Target("Image: allocated bytes", 450, "MiB",
           lambda f: _ratio(_median(f, "size", "appliance", "allocated_bytes"), MIB)),
    Target("Image: zstd size", 160, "MiB",
           lambda f: _ratio(_median(f, "size", "appliance", "compressed_bytes"), MIB)),
    Target("Boot: login prompt against the bare image (TCG)", 1.1, "x",
           lambda f: _median(f, "boot", "ratio", "login_prompt")),
    Target("Controller answering after the login prompt (TCG)", 5, "s",
           lambda f: _difference(_median(f, "boot", "appliance", "api_s"),
                                 _median(f, "boot", "appliance", "login_prompt_s"))),
    Target("Build: work after mkosi, cold", 5, "s",
           lambda f: _median(f, "build", "appliance", "cold", "after_mkosi_s")),
    Target("Build: work after mkosi, warm", 5, "s",
           lambda f: _median(f, "build", "appliance", "warm", "after_mkosi_s")),
    Target("Build: cold build against a bare mkosi build", 1.3, "x",
           lambda f: _median(f, "build", "ratio", "cold")),
    Target("Build: configuration-only rebuild against a cold build", 0.3, "x",
           lambda f: _ratio(_median(f, "build", "appliance", "warm", "total_s"),
                            _median(f, "build", "appliance", "cold", "total_s"))),
)


def rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, limit, measured, met) for each target; 'not measured' where the run has no number."""
    table = []
    for target in TARGETS:
        value = target.measure(figures)
        limit = f"≤ {target.show(target.limit)}".replace("+", "")
        if value is None:
            table.append((target.label, limit, "not measured", "–"))
        else:
            table.append((target.label, limit, target.show(value), "yes" if value <= target.limit else "no"))
    return table
