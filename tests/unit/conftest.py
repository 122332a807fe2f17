from __future__ import annotations

from pathlib import Path

import pytest
from unit.fakebin import FakeBin


@pytest.fixture
def fakebin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    directory = tmp_path / "fakebin"
    directory.mkdir()
    fake = FakeBin(directory)
    monkeypatch.setenv("PATH", fake.path_env())
    return fake
