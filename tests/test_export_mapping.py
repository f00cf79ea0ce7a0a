"""A mapping changed between a crashed export and its resume is not recorded as done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from magsync.state import StateStore
from magsync.util.timeutil import to_iso, utcnow


def test_resume_under_another_mapping_leaves_it_to_the_background_sync(
        magsync: Any, config_file: Path, tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        store.set_checkpoint("export-initial", {
            "started_at": to_iso(utcnow()), "restart": False, "ranges": [[0, 0, None]],
            "mapping_hash": "a-mapping-from-before"})
    r = magsync("export-initial")
    assert r.code == 0, r
    assert "resumed the export" in r.out
    status = json.loads(magsync("status", "--json").out)
    assert status["mapping_hash"] is None  # not recorded: some contacts lack new fields
    assert status["watermarks"]  # the export itself completed
    r = magsync("sync-background")
    assert r.code == 0, r
    assert "the mapping changed: every customer was read" in r.out
    assert json.loads(magsync("status", "--json").out)["mapping_hash"]


def test_a_plain_export_records_its_mapping(magsync: Any) -> None:
    assert magsync("export-initial").code == 0
    assert json.loads(magsync("status", "--json").out)["mapping_hash"]
    r = magsync("sync-background")
    assert "the mapping changed" not in r.out
