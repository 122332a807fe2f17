"""Medians with their spread, the one shape every timing and size in results.json takes."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float | int], unit: str) -> dict[str, Any]:
    """median, min and max of the runs that produced a value; nulls when none did."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "runs": 0, "unit": unit, "values": []}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "runs": len(clean),
        "unit": unit,
        "values": list(clean),
    }


def not_measured(unit: str, reason: str) -> dict[str, Any]:
    """A figure that has no number on this run, with the reason in place of one."""
    return {**summary([], unit), "not_measured": reason}


def ratios(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> dict[str, Any]:
    """Per-run ratios of paired runs (run i of the appliance against run i of the baseline)."""
    pairs = [(n / d) for n, d in zip(numerators, denominators, strict=False) if n is not None and d]
    return summary(pairs, "ratio")
