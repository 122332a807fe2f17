"""linstor-appliance status without a cluster: what monitoring sees when there is nothing to check, and which
backup files count."""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest

from builder import cli, status
from builder.status import backups, options


def test_no_recorded_deploy_is_critical_not_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parsed = cli.make_parser().parse_args(["status", "--json"])
    code = status.run(options.from_args(parsed, root=tmp_path))
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and report["exit"] == 2
    assert [(c["check"], c["status"]) for c in report["checks"]] == [("deploy", "CRITICAL")]
    assert "--vmid" in report["checks"][0]["hint"]


def test_only_complete_backups_count() -> None:
    names = ["20261129T010000Z-0123456789ab.json", "20261129T010000Z-0123456789ab.json.sha256",
             "20261130T010000Z-abcdefabcdef.zip", "notes.txt"]  # the newer one has no .sha256 yet
    assert backups.newest(names) == calendar.timegm((2026, 11, 29, 1, 0, 0, 0, 0, 0))
    assert backups.newest(["20261130T010000Z-abcdefabcdef.zip"]) is None
