"""Whether two backups hold the same database: what lets the hourly timer skip an unchanged one."""

from __future__ import annotations

import io
import json
import zipfile

from builder.backup import export, store


def _zip(member: bytes, when: tuple[int, int, int, int, int, int]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("linstordb.mv.db", date_time=when), member)
    return buffer.getvalue()


def test_zips_of_the_same_database_made_at_other_times_are_the_same_content() -> None:
    first, second = _zip(b"db", (2026, 1, 1, 0, 0, 0)), _zip(b"db", (2026, 1, 2, 3, 4, 6))
    assert first != second
    assert export.content_hash("zip", first) == export.content_hash("zip", second)
    assert export.content_hash("zip", first) != export.content_hash("zip", _zip(b"dB", (2026, 1, 1, 0, 0, 0)))
    assert export.h2_database("zip", second) == b"db"


def test_json_exports_differ_only_where_the_data_differs() -> None:
    base = {"metadata": {"export_time": "1", "version": "1.34.0"}, "tables": {"NODES": [["pve1"]]}}
    later = {"metadata": {"export_time": "2", "version": "1.34.0"}, "tables": {"NODES": [["pve1"]]}}
    changed = {"metadata": {"export_time": "1", "version": "1.34.0"}, "tables": {"NODES": [["pve1"], ["pve2"]]}}
    key_order = json.dumps(base, indent=1).encode(), json.dumps(later, sort_keys=True).encode()
    assert export.content_hash("json", key_order[0]) == export.content_hash("json", key_order[1])
    assert export.content_hash("json", key_order[0]) != export.content_hash("json", json.dumps(changed).encode())
    # A key of that name inside the data is data.
    deep = {"tables": {"PROPS": {"a": {"b": {"timestamp": "1"}}}}}
    deeper = {"tables": {"PROPS": {"a": {"b": {"timestamp": "2"}}}}}
    digests = [export.content_hash("json", json.dumps(document).encode()) for document in (deep, deeper)]
    assert digests[0] != digests[1]


def test_backup_names_sort_by_time_and_carry_their_hash() -> None:
    name = store.file_name(b"x", "zip", when=0)
    assert name == "19700101T000000Z-2d711642b726.zip"
    assert store.extension_of(name) == "zip" and store.extension_of("20260101T000000Z-0123456789ab.mv.db") == "mv.db"
    assert store.age_seconds(name, now=3600.0) == 3600.0
    assert store.sums_line(name, b"x").startswith("2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  ")
