"""A mapped field that does not fit its converter (SPEC section 2): a ``choice`` entry on a
text field stops every sync at start with exit 2 naming the entry and the fix (never exit
3, "unreachable"); ``fields`` exits 2 and ``check`` fails it; ``fields --create-missing``
refuses to create a field for a ``choice`` entry (Emarsys cannot create choice fields over
the API) and creates a ``date`` field for a date converter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magsync.sandbox.pair import DEFAULT_MAPPING, SandboxPair
from tests.helpers.sandbox import request_seq

SEGMENT = {"custom_attributes.segment": {"field": "Segment", "convert": "choice"}}


def config_with(pair: SandboxPair, tmp_path: Path, extra: dict[str, Any]) -> Path:
    return pair.write_config(tmp_path / "magsync.yaml", tmp_path / "state.db",
                             mapping={**DEFAULT_MAPPING, **extra})


def created_fields(pair: SandboxPair) -> list[dict[str, Any]]:
    return [r.json() for r in pair.emarsys.requests("POST", r"/field/?$")]


def test_create_missing_refuses_a_choice_field(magsync: Any, pair: SandboxPair,
                                               tmp_path: Path) -> None:
    config = config_with(pair, tmp_path, SEGMENT)
    r = magsync("fields", "--create-missing", config=config)
    assert r.code == 2
    row = next(ln for ln in r.out.splitlines() if "custom_attributes.segment" in ln)
    assert "Emarsys cannot create over the API; create it in the Emarsys UI" in row
    assert created_fields(pair) == []


def test_create_missing_makes_a_date_field_for_a_date_converter(
        magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    config = config_with(pair, tmp_path, {
        "custom_attributes.member_since": {"field": "Member since", "convert": "date"}})
    r = magsync("fields", "--create-missing", config=config)
    assert r.code == 0, r
    assert created_fields(pair) == [{"name": "Member since", "application_type": "date"}]
    assert magsync("fields", config=config).code == 0


def test_a_choice_entry_on_a_text_field_stops_the_syncs_with_exit_2(
        magsync: Any, pair: SandboxPair, tmp_path: Path) -> None:
    pair.emarsys.account.create_field("Segment", "shorttext")  # as a text field by mistake
    config = config_with(pair, tmp_path, SEGMENT)
    r = magsync("export-initial", config=config)
    assert r.code == 2 and "convert: choice needs a single-choice field" in r.err, r
    # the syncs run only after a complete export: made with the mapping before the entry
    assert magsync("export-initial", config=config_with(pair, tmp_path, {})).code == 0
    config = config_with(pair, tmp_path, SEGMENT)
    seq = request_seq(pair)
    for command in ("sync-realtime", "sync-background", "pull-optin"):
        r = magsync(command, config=config)
        assert r.code == 2, r
        assert "contacts.customers.fields.custom_attributes.segment: convert: choice needs a " \
               "single-choice field, but 'Segment'" in r.err
        assert "is a shorttext field" in r.err and "Emarsys UI" in r.err
        assert "Not a single-choice field" not in r.err
    written = [r for r in pair.emarsys.requests() if r.seq > seq and r.method != "GET"]
    assert written == []  # the syncs wrote nothing
    fields = magsync("fields", config=config)
    assert fields.code == 2
    assert "1 mapped Emarsys field(s) do not fit their converter" in fields.err
    check = magsync("check", config=config)
    assert check.code == 2
    assert "FAIL Emarsys field for custom_attributes.segment" in check.out
